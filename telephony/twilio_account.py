"""A Twilio account as loopcall uses it: credentials, numbers, where Twilio reaches us.

Stage: configuration for phone calls (``tel:`` targets).  The controller's and the
CLI's settings come in (with a stored agent's own fields over them); out go the
official SDK's ``Client`` (pointed at the local emulator with ``api_base_url``),
the public URLs of loopcall's webhooks and media stream, and the
``<Connect><Stream>`` TwiML that sends a call's audio there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from xml.sax.saxutils import quoteattr

from pydantic import SecretStr
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from telephony.credentials import TwilioOverrides

__all__ = ["TwilioAccount", "connect_twiml"]


@dataclass(frozen=True)
class TwilioAccount:
    """What loopcall needs to place and receive Twilio calls.

    ``auth_token`` signs Twilio's webhooks, so it is needed even when calls are
    placed with an API key.  ``public_base_url`` is where Twilio reaches loopcall
    (a tunnel such as ngrok or cloudflared in front of the controller).
    """

    account_sid: str
    auth_token: SecretStr
    from_number: str
    public_base_url: str
    api_key_sid: str | None = None
    api_key_secret: SecretStr | None = None
    api_base_url: str | None = None  # None: Twilio itself
    record: bool = False
    ring_timeout_s: int = 30

    def __post_init__(self) -> None:
        # A token given as a plain string (a test, a script) is wrapped at once.
        for name in ("auth_token", "api_key_secret"):
            value = getattr(self, name)
            if isinstance(value, str):
                object.__setattr__(self, name, SecretStr(value))

    def with_overrides(self, overrides: TwilioOverrides) -> TwilioAccount:
        """This account with an agent's own ``account_sid``, ``auth_token``, ``from_number``..."""
        changes = {
            name: getattr(overrides, name)
            for name in overrides.__dataclass_fields__
            if getattr(overrides, name)
        }
        return replace(self, **changes)

    def client(self) -> Client:
        if self.api_key_sid and self.api_key_secret:
            username, password = self.api_key_sid, self.api_key_secret.get_secret_value()
        else:
            username, password = self.account_sid, self.auth_token.get_secret_value()
        client = Client(username, password, self.account_sid, http_client=AsyncTwilioHttpClient())
        if self.api_base_url:
            client.api.base_url = self.api_base_url.rstrip("/")
        return client

    def validator(self) -> RequestValidator:
        """Checks Twilio's signatures (``X-Twilio-Signature``) with the auth token."""
        return RequestValidator(self.auth_token.get_secret_value())

    def url(self, path: str) -> str:
        return self.public_base_url.rstrip("/") + path

    @property
    def stream_url(self) -> str:
        base = self.public_base_url.rstrip("/")
        scheme, rest = base.split("://", 1)
        return f"{'wss' if scheme == 'https' else 'ws'}://{rest}/twilio/stream"


def connect_twiml(stream_url: str, parameters: Mapping[str, str]) -> str:
    """``<Connect><Stream>`` TwiML that sends the call's audio to ``stream_url``."""
    params = "".join(
        f"<Parameter name={quoteattr(k)} value={quoteattr(v)}/>" for k, v in parameters.items()
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><Response><Connect>'
        f"<Stream url={quoteattr(stream_url)}>{params}</Stream></Connect></Response>"
    )
