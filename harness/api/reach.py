"""How a queued run reaches its agent: the stored agent's dial options and secrets.

Stage: between the dispatcher and the orchestrator.  A run keeps only its
agent's id and address; when it starts, ``reach`` reads the agent's options and
opens its sealed credentials, so a rotated token applies to queued runs and
the secrets never sit in a run record.  Secret headers become headers; the
secret values come back too, for ``harness.redact`` to mask.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.db.resources import Catalogue
from harness.db.secrets import SecretBox
from harness.errors import LoopcallError, ResourceNotFound
from harness.logs import SECRETS
from harness.models import Run
from telephony import DialOptions
from telephony.credentials import SipCredentials, TwilioOverrides

__all__ = ["AgentUnavailable", "Reach", "reach", "reach_agent"]


class AgentUnavailable(LoopcallError):
    """The run's stored agent is gone, or its credentials cannot be opened."""


@dataclass(frozen=True)
class Reach:
    dial: DialOptions = field(default_factory=DialOptions)
    secrets: list[str] = field(default_factory=list, repr=False)


async def reach(run: Run, catalogue: Catalogue, box: SecretBox) -> Reach:
    """The dial options and secrets for ``run`` (none when it names no stored agent)."""
    if run.agent_id is None:
        return Reach()
    return await reach_agent(run.agent_id, catalogue, box, "run")


async def reach_agent(
    agent_id: str, catalogue: Catalogue, box: SecretBox, what: str = "run"
) -> Reach:
    """The dial options and secrets of the stored agent ``agent_id``."""
    try:
        agent = await catalogue.agents.get(agent_id)
    except ResourceNotFound as exc:
        raise AgentUnavailable(
            f"agent {agent_id!r} was deleted before this {what} started"
        ) from exc
    options = agent.data.get("options", {})
    headers = dict(options.get("headers", {}))
    secrets: list[str] = []
    credentials: dict[str, Any] = {}
    sealed = await catalogue.credentials(agent.id)
    if sealed is not None:
        try:
            credentials = box.open(sealed)
        except LoopcallError as exc:
            raise AgentUnavailable(f"agent {agent.name!r}: {exc}") from exc
        secret_headers = credentials.get("secret_headers") or {}
        headers.update(secret_headers)
        secrets = [str(v) for v in secret_headers.values()]
        secrets += [str(v) for k, v in credentials.items() if k != "secret_headers" and v]
    SECRETS.hold(f"agent {agent.id}", secrets)  # from now on, masked in the logs too
    phone = {
        "account_sid": options.get("twilio_account_sid"),
        "api_key_sid": options.get("twilio_api_key_sid"),
        "from_number": options.get("from_number"),
        "auth_token": credentials.get("twilio_auth_token"),
        "api_key_secret": credentials.get("twilio_api_key_secret"),
    }
    sip = {
        "username": options.get("sip_username"),
        "password": credentials.get("sip_password"),
    }
    return Reach(
        dial=DialOptions(
            headers=headers,
            request_data=dict(options.get("request_data", {})),
            phone=TwilioOverrides.of({k: str(v) for k, v in phone.items() if v}),
            sip=SipCredentials.of({k: str(v) for k, v in sip.items() if v}),
        ),
        secrets=secrets,
    )
