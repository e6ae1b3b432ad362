"""``/agents``: the agents under test, where they answer and how to reach them.

An agent is a target URL (its channel follows from the scheme) with a name and
options: headers to send when connecting (HTTP headers on a WebRTC offer; SIP
headers on an INVITE), SmallWebRTC ``request_data``, phone numbers.  Its
credentials (secret headers, SIP password, Twilio secrets, an LLM key) are
write-only: they are sealed into their own table, used when a run dials the
agent, and never returned, logged or copied into a run; reads list only which
ones are set (``credentials_set``).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, HTTPException, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from harness.api.bodies import found, merged, patch_model
from harness.api.deps import CatalogueDep, SecretBoxDep, SettingsDep
from harness.api.egress import check_urls
from harness.api.pages import Page, PageDep, page_of
from harness.db.resources import KEEP, Keep
from harness.db.tables import AgentRow
from harness.models import utcnow
from telephony import TARGET_PATTERN, TargetError, parse_target

__all__ = ["AgentCredentials", "AgentIn", "AgentOptions", "AgentOut", "router"]

router = APIRouter(tags=["agents"])

HeaderName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$")]
HeaderValue = Annotated[str, StringConstraints(max_length=4096, pattern=r"^[^\r\n\x00]*$")]
E164 = Annotated[str, StringConstraints(pattern=r"^\+[1-9][0-9]{6,14}$")]
Secret = Annotated[str, StringConstraints(min_length=1, max_length=4096)]
# Headers the transport itself writes; an agent's configuration may not replace them.
RESERVED_HEADERS = frozenset({"content-type", "content-length", "host", "transfer-encoding"})


def _no_reserved(headers: dict[str, str]) -> dict[str, str]:
    clash = sorted(name for name in headers if name.lower() in RESERVED_HEADERS)
    if clash:
        raise ValueError(f"loopcall sets {', '.join(clash)} itself")
    return headers


class AgentOptions(BaseModel):
    """How to reach the agent, beyond its address (nothing secret here)."""

    model_config = ConfigDict(extra="forbid")

    headers: dict[HeaderName, HeaderValue] = Field(
        default_factory=dict,
        max_length=50,
        description="sent when connecting: HTTP headers on a WebRTC offer, SIP headers on INVITE",
    )
    request_data: dict[str, Any] = Field(
        default_factory=dict,
        description="SmallWebRTC request_data sent with the offer (loopcall adds loopcall_run_id)",
    )
    from_number: E164 | None = Field(default=None, description="caller id for phone calls")
    twilio_account_sid: str | None = Field(
        default=None,
        pattern=r"^AC[0-9a-fA-F]{32}$",
        description="phone calls: this agent's Twilio account (default: the controller's)",
    )
    twilio_api_key_sid: str | None = Field(
        default=None, pattern=r"^SK[0-9a-fA-F]{32}$", description="phone calls: a Twilio API key"
    )
    sip_username: str | None = Field(default=None, max_length=256, description="SIP digest user")

    _headers_allowed = field_validator("headers")(_no_reserved)


class AgentCredentials(BaseModel):
    """Secrets needed to reach the agent: write-only, sealed, never returned."""

    model_config = ConfigDict(extra="forbid")

    secret_headers: dict[HeaderName, HeaderValue] = Field(
        default_factory=dict,
        max_length=50,
        description="headers whose values are secret, e.g. Authorization",
    )
    sip_password: Secret | None = None
    twilio_auth_token: Secret | None = None
    twilio_api_key_secret: Secret | None = None
    llm_api_key: Secret | None = None

    _headers_allowed = field_validator("secret_headers")(_no_reserved)

    def names(self) -> list[str]:
        """Which credentials are set, by name (what reads show instead of the values)."""
        names = [f"secret_headers.{name}" for name in sorted(self.secret_headers)]
        names += [
            name
            for name in (
                "sip_password",
                "twilio_auth_token",
                "twilio_api_key_secret",
                "llm_api_key",
            )
            if getattr(self, name) is not None
        ]
        return names

    def values(self) -> list[str]:
        """Every secret value, for scrubbing them out of anything stored or shown."""
        found_values = list(self.secret_headers.values())
        found_values += [
            value
            for value in (
                self.sip_password,
                self.twilio_auth_token,
                self.twilio_api_key_secret,
                self.llm_api_key,
            )
            if value is not None
        ]
        return [value for value in found_values if value]


class AgentIn(BaseModel):
    """``POST /agents``: a name and an address, with options and credentials."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    address: str = Field(
        min_length=1,
        max_length=2048,
        pattern=TARGET_PATTERN,
        description="the agent's target URL, e.g. webrtc://127.0.0.1:7860/api/offer",
    )
    description: str | None = Field(default=None, max_length=10_000)
    options: AgentOptions = Field(default_factory=AgentOptions)
    credentials: AgentCredentials | None = Field(
        default=None, description="write-only; on PATCH, replaces all stored credentials"
    )

    @field_validator("address")
    @classmethod
    def _address_parses(cls, value: str) -> str:
        try:
            parse_target(value)
        except TargetError as exc:
            raise ValueError(str(exc)) from exc
        return value


if TYPE_CHECKING:
    AgentPatch = AgentIn
else:
    AgentPatch = patch_model(
        "AgentPatch",
        AgentIn,
        "``PATCH /agents/{id}``: the fields to change (credentials: replace; null: remove).",
    )


class AgentOut(BaseModel):
    id: str
    name: str
    address: str
    channel: str
    description: str | None
    options: AgentOptions
    credentials_set: list[str] = Field(description="names of the stored credentials (not values)")
    created_at: datetime
    updated_at: datetime


def _out(row: AgentRow) -> AgentOut:
    return AgentOut(
        id=row.id,
        channel=row.channel,
        created_at=row.created_at,
        updated_at=row.updated_at,
        **row.data,
    )


def _record(body: AgentIn, credentials_set: list[str]) -> dict[str, Any]:
    return {
        **body.model_dump(mode="json", exclude={"credentials"}),
        "credentials_set": credentials_set,
    }


@router.post("/agents", status_code=201, response_model=AgentOut)
async def create_agent(
    body: AgentIn, catalogue: CatalogueDep, box: SecretBoxDep, settings: SettingsDep
) -> AgentOut:
    await check_urls(settings.egress_policy(), [("address", body.address)])
    now = utcnow()
    credentials = body.credentials
    row = AgentRow(
        id=str(uuid.uuid4()),
        name=body.name,
        channel=parse_target(body.address).channel,
        created_at=now,
        updated_at=now,
        data=_record(body, credentials.names() if credentials else []),
    )
    sealed = box.seal(credentials.model_dump()) if credentials and credentials.names() else None
    await catalogue.agents.add(row, credentials=sealed)
    return _out(row)


@router.get("/agents", response_model=Page[AgentOut])
async def list_agents(
    catalogue: CatalogueDep,
    page: PageDep,
    name: str | None = None,
    channel: str | None = None,
) -> Page[AgentOut]:
    found_page = await catalogue.agents.page(
        {"name": name, "channel": channel}, limit=page.limit, offset=page.offset
    )
    return page_of([_out(row) for row in found_page.rows], found_page.total, page)


@router.get("/agents/{agent_id}", response_model=AgentOut)
async def get_agent(agent_id: str, catalogue: CatalogueDep) -> AgentOut:
    return _out(await found(catalogue.agents.get(agent_id)))


@router.patch("/agents/{agent_id}", response_model=AgentOut)
async def update_agent(
    agent_id: str,
    body: AgentPatch,
    catalogue: CatalogueDep,
    box: SecretBoxDep,
    settings: SettingsDep,
) -> AgentOut:
    row = await found(catalogue.agents.get(agent_id))
    stored = {k: v for k, v in row.data.items() if k != "credentials_set"}
    new = merged(AgentIn, stored, body)
    if "address" in body.model_fields_set:
        await check_urls(settings.egress_policy(), [("address", new.address)])
    credentials_set: list[str] = row.data.get("credentials_set", [])
    sealed: str | None | Keep = KEEP
    if "credentials" in body.model_fields_set:
        credentials = new.credentials
        credentials_set = credentials.names() if credentials else []
        sealed = box.seal(credentials.model_dump()) if credentials_set and credentials else None
    row.name = new.name
    row.channel = parse_target(new.address).channel
    row.data = _record(new, credentials_set)
    await found(catalogue.agents.replace(row, credentials=sealed))
    return _out(row)


@router.delete("/agents/{agent_id}", status_code=204)
async def delete_agent(agent_id: str, catalogue: CatalogueDep) -> Response:
    await found(catalogue.agents.get(agent_id))
    users = await catalogue.cases.count("agent_id", agent_id) + await catalogue.suites.count(
        "agent_id", agent_id
    )
    if users:
        raise HTTPException(
            409, f"agent {agent_id!r} is the default agent of {users} case(s)/suite(s)"
        )
    await found(catalogue.agents.delete(agent_id))
    return Response(status_code=204)
