"""loopcall's settings: one class, read from ``LOOPCALL_*`` environment variables.

Stage: the entry points (CLI now, the controller later) build one ``Settings`` and
pass what each stage needs down; nothing reads the environment elsewhere.  Cloud
providers are configuration: an OpenAI-compatible endpoint for the persona's LLM
brain is a URL, a key and a model name here, not code.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from personas.llm_brain import LLMConfig
from telephony.credentials import SipCredentials
from telephony.egress import EgressPolicy, parse_networks
from telephony.twilio_phone import TwilioAccount

__all__ = ["JudgeConfig", "Settings"]


@dataclass(frozen=True)
class JudgeConfig:
    """Where the ``rubric`` criterion's LLM judge answers (any OpenAI-compatible endpoint)."""

    base_url: str | None
    api_key: SecretStr | None
    model: str
    timeout_s: float = 30.0
    max_retries: int = 1


class Settings(BaseSettings):
    """``LOOPCALL_LLM_BASE_URL``, ``LOOPCALL_LLM_API_KEY``, ``LOOPCALL_LLM_MODEL``, ..."""

    model_config = SettingsConfigDict(env_prefix="LOOPCALL_", extra="ignore")

    api_key: SecretStr | None = Field(
        default=None, description="the key `loopcall run --server` sends to a controller"
    )
    db_url: str = Field(
        default="sqlite:///loopcall-data/loopcall.db",
        description="sqlite:///PATH (default) or postgresql://USER@HOST/DB",
    )
    data_dir: Path = Field(default=Path("loopcall-data"), description="recordings live here")
    concurrency: int = Field(
        default=2, ge=1, le=500, description="calls the controller runs at once"
    )
    bench_max_concurrency: int = Field(
        default=200, ge=1, le=5000, description="the highest level a POST /benches may ask for"
    )

    # What the controller may connect to (docs/security.md): targets and webhooks.
    allowed_hosts: str | None = Field(
        default=None,
        description=(
            "comma-separated hosts the controller may call (targets, webhooks); unset: any "
            "host outside the refused ranges. A host named here is exempt from those ranges."
        ),
    )
    allowed_networks: str | None = Field(
        default=None,
        description=(
            "comma-separated networks exempt from the refused ranges (link-local, cloud "
            "metadata, ...), e.g. fe80::/10 for a link-local agent"
        ),
    )
    refused_networks: str | None = Field(
        default=None,
        description="comma-separated networks refused besides the built-in ranges, e.g. 10.0.0.0/8",
    )
    webhook_secret: SecretStr | None = Field(
        default=None,
        description="HMAC key for webhook signatures (default: DATA_DIR/webhook-secret)",
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description=(
            "key that encrypts agents' credentials at rest (default: DATA_DIR/secret-key); "
            "controllers sharing one database must share it"
        ),
    )
    webhook_attempts: int = Field(default=5, ge=1, le=20)
    webhook_backoff_s: float = Field(default=1.0, gt=0, le=60)

    llm_base_url: str | None = None
    llm_api_key: SecretStr | None = None
    llm_model: str = "gpt-4o-mini"
    llm_temperature: float = 0.6
    llm_timeout_s: float = 15.0

    # The `rubric` criterion's judge; each unset field falls back to the persona's LLM
    # (llm_*), the key only with the URL it belongs to (docs/criteria.md).
    judge_base_url: str | None = None
    judge_api_key: SecretStr | None = None
    judge_model: str | None = None
    judge_timeout_s: float = Field(default=30.0, gt=0, le=600)

    # Phone calls through Twilio (tel: targets). Twilio reaches loopcall at
    # public_base_url (a tunnel in front of the controller, or of the CLI's gateway).
    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    twilio_api_key_sid: str | None = None
    twilio_api_key_secret: SecretStr | None = None
    twilio_from_number: str | None = None
    twilio_api_base_url: str | None = Field(
        default=None, description="another Twilio API, e.g. loopcall twilio-emulator's URL"
    )
    twilio_record: bool = Field(default=False, description="ask Twilio to record each call")
    twilio_ring_timeout_s: int = Field(default=30, ge=5, le=600)
    # SIP calls (sip: targets): digest credentials when the agent's peer asks (401/407),
    # unless the stored agent carries its own (sip_username, sip_password).
    sip_username: str | None = None
    sip_password: SecretStr | None = None
    sip_from_user: str = Field(default="loopcall", pattern=r"^[A-Za-z0-9._~+-]{1,64}$")
    public_base_url: str | None = Field(
        default=None, description="https://... where Twilio reaches this process's /twilio/*"
    )
    gateway_port: int = Field(
        default=8088, description="loopcall run: port of the Twilio gateway for tel: targets"
    )
    # What a run's tokens and minutes cost (docs/costs.md); loopcall ships no prices.
    prices: Path | None = Field(
        default=None, description="a price table (YAML): models' token prices, lines' minutes"
    )
    # Where agents reach loopcall during a run: their mock tools and event webhook.
    ingest_host: str = Field(
        default="127.0.0.1", description="loopcall run: address its agent-facing server binds"
    )
    ingest_port: int = Field(
        default=0, ge=0, le=65535, description="loopcall run: its port (0: a free one)"
    )
    ingest_public_url: str | None = Field(
        default=None,
        description=(
            "the base URL agents are given for their tools URL and event webhook (a tunnel "
            "in front of loopcall, for an agent on another machine); default: the CLI's "
            "server's own address, or the controller's public_base_url / listening address"
        ),
    )

    def sip_credentials(self) -> SipCredentials:
        """Default SIP digest credentials and caller user, for ``RunOptions.sip``."""
        if not self.sip_username:
            return SipCredentials(from_user=self.sip_from_user)
        return SipCredentials(
            username=self.sip_username, password=self.sip_password, from_user=self.sip_from_user
        )

    def secret_values(self) -> list[str]:
        """Every secret set here (not the ones kept in the data dir), to keep out of logs."""
        found = [
            self.api_key,
            self.webhook_secret,
            self.secret_key,
            self.llm_api_key,
            self.judge_api_key,
            self.twilio_auth_token,
            self.twilio_api_key_secret,
            self.sip_password,
        ]
        return [s.get_secret_value() for s in found if s is not None and s.get_secret_value()]

    def twilio_account(self) -> TwilioAccount | None:
        """The Twilio account for tel: targets, or None when it is not configured."""
        if not (
            self.twilio_account_sid
            and self.twilio_auth_token
            and self.twilio_from_number
            and self.public_base_url
        ):
            return None
        return TwilioAccount(
            account_sid=self.twilio_account_sid,
            auth_token=self.twilio_auth_token,
            from_number=self.twilio_from_number,
            public_base_url=self.public_base_url,
            api_key_sid=self.twilio_api_key_sid,
            api_key_secret=self.twilio_api_key_secret,
            api_base_url=self.twilio_api_base_url,
            record=self.twilio_record,
            ring_timeout_s=self.twilio_ring_timeout_s,
        )

    @field_validator("allowed_networks", "refused_networks")
    @classmethod
    def _networks_parse(cls, value: str | None) -> str | None:
        parse_networks(value, "a network list")
        return value

    def egress_policy(self) -> EgressPolicy:
        """What a controller may connect to: the built-in refusals and these settings."""
        return EgressPolicy.of(
            allowed_hosts=self.allowed_hosts.split(",") if self.allowed_hosts else None,
            allowed_networks=parse_networks(self.allowed_networks, "LOOPCALL_ALLOWED_NETWORKS"),
            refused_networks=parse_networks(self.refused_networks, "LOOPCALL_REFUSED_NETWORKS"),
        )

    def webhook_key(self) -> str:
        """The webhook signing secret: configured, or made once and kept in the data dir."""
        if self.webhook_secret is not None:
            return self.webhook_secret.get_secret_value()
        return self._kept_secret("webhook-secret")

    def credentials_key(self) -> str:
        """The key agents' credentials are encrypted with: configured, or kept in the data dir."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value()
        return self._kept_secret("secret-key")

    def _kept_secret(self, name: str) -> str:
        """A random secret made once in the data dir, readable by its owner only."""
        path = self.data_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_text().strip()
        with os.fdopen(fd, "w") as file:
            file.write(secrets.token_urlsafe(32))
        return path.read_text().strip()

    def llm_config(self) -> LLMConfig | None:
        """The persona LLM's endpoint, or None when none is configured."""
        if self.llm_base_url is None and self.llm_api_key is None:
            return None
        return LLMConfig(
            base_url=self.llm_base_url,
            api_key=self.llm_api_key.get_secret_value() if self.llm_api_key else None,
            model=self.llm_model,
            temperature=self.llm_temperature,
            timeout_s=self.llm_timeout_s,
        )

    def judge_config(self) -> JudgeConfig | None:
        """The rubric judge's endpoint, or None when neither it nor the persona's LLM is set.

        An unset judge field takes the persona LLM's.  The persona's key goes along only
        when the judge's URL is the persona's too: a key is never sent to another host.
        """
        judge_set = any((self.judge_base_url, self.judge_api_key, self.judge_model))
        if not judge_set and self.llm_base_url is None and self.llm_api_key is None:
            return None
        base_url = self.judge_base_url or self.llm_base_url
        api_key = self.judge_api_key
        if api_key is None and base_url == self.llm_base_url:
            api_key = self.llm_api_key
        return JudgeConfig(
            base_url=base_url,
            api_key=api_key,
            model=self.judge_model or self.llm_model,
            timeout_s=self.judge_timeout_s,
        )
