"""Credentials on their way to the wire, in types that never print what they hold.

Stage: from the settings and a stored agent's sealed credentials down to the
SIP digest and Twilio's API.  A password travels as pydantic's ``SecretStr``
(its ``repr`` and ``str`` are ``**********``) inside frozen records, so a
traceback that shows a frame's variables, a ``repr`` in a log line or an
exception's message cannot carry it; it is unwrapped only where it is used.
``mask`` hides secrets (and the forms they take on the way: a header's token,
a quoted or escaped copy) in text a peer may have echoed them into.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import quote

from pydantic import SecretStr

__all__ = [
    "MASK",
    "MIN_SECRET_CHARS",
    "SipCredentials",
    "TwilioOverrides",
    "mask",
    "masking",
    "variants",
]

MASK = "[redacted]"
MIN_SECRET_CHARS = 4  # shorter values would mask ordinary words; credentials are longer
_AUTH_SCHEMES = ("bearer", "basic", "token", "digest", "apikey", "api-key", "key")


def _secret(value: str | SecretStr | None) -> SecretStr | None:
    if value is None or isinstance(value, SecretStr):
        return value
    return SecretStr(value)


@dataclass(frozen=True)
class SipCredentials:
    """SIP digest credentials and the caller's user part; the password never prints."""

    username: str | None = None
    password: SecretStr | None = None
    from_user: str | None = None

    @classmethod
    def of(cls, fields: Mapping[str, str | SecretStr | None]) -> SipCredentials:
        """From ``{"username", "password", "from_user"}`` (a plain password is wrapped)."""
        unknown = set(fields) - {"username", "password", "from_user"}
        if unknown:
            raise ValueError(f"unknown SIP credential fields: {sorted(unknown)}")
        return cls(
            username=_plain(fields.get("username")),
            password=_secret(fields.get("password")),
            from_user=_plain(fields.get("from_user")),
        )

    def over(self, defaults: SipCredentials) -> SipCredentials:
        """These credentials, falling back to ``defaults`` field by field."""
        return SipCredentials(
            username=self.username or defaults.username,
            password=self.password or defaults.password,
            from_user=self.from_user or defaults.from_user,
        )

    def secrets(self) -> list[str]:
        return [self.password.get_secret_value()] if self.password else []


@dataclass(frozen=True)
class TwilioOverrides:
    """A stored agent's own Twilio account fields, over the configured account's."""

    account_sid: str | None = None
    auth_token: SecretStr | None = None
    api_key_sid: str | None = None
    api_key_secret: SecretStr | None = None
    from_number: str | None = None

    @classmethod
    def of(cls, fields: Mapping[str, str | SecretStr | None]) -> TwilioOverrides:
        known = {"account_sid", "auth_token", "api_key_sid", "api_key_secret", "from_number"}
        unknown = set(fields) - known
        if unknown:
            raise ValueError(f"unknown Twilio account fields: {sorted(unknown)}")
        return cls(
            account_sid=_plain(fields.get("account_sid")),
            auth_token=_secret(fields.get("auth_token")),
            api_key_sid=_plain(fields.get("api_key_sid")),
            api_key_secret=_secret(fields.get("api_key_secret")),
            from_number=_plain(fields.get("from_number")),
        )

    def __bool__(self) -> bool:
        return any(getattr(self, name) for name in self.__dataclass_fields__)

    def secrets(self) -> list[str]:
        return [s.get_secret_value() for s in (self.auth_token, self.api_key_secret) if s]


def _plain(value: str | SecretStr | None) -> str | None:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return value or None


def variants(secret: str) -> list[str]:
    """``secret`` and the forms it takes on its way back: the token of an
    ``Authorization`` value, a Basic credential's decoded parts, and the copies
    ``repr``, JSON and URLs make of it.  Only those long enough to be secrets."""
    found = [secret]
    scheme, _, token = secret.strip().partition(" ")
    if token and scheme.lower() in _AUTH_SCHEMES:
        found.append(token.strip())
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(token.strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                decoded = ""
            found += [decoded, decoded.partition(":")[2]] if decoded else []
    for value in list(found):
        found += [repr(value)[1:-1], json.dumps(value)[1:-1], quote(value, safe="")]
    return [v for v in dict.fromkeys(found) if len(v) >= MIN_SECRET_CHARS]


def masking(secrets: Iterable[str]) -> Callable[[str], str]:
    """A function that replaces every secret, in each of its ``variants``, by ``[redacted]``."""
    forms = {form for secret in secrets if secret for form in variants(secret)}
    ordered = sorted(forms, key=len, reverse=True)  # longest first: no partial masks

    def apply(text: str) -> str:
        for form in ordered:
            if form in text:
                text = text.replace(form, MASK)
        return text

    return apply


def mask(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret (in each of its ``variants``) replaced by ``[redacted]``."""
    return masking(secrets)(text)
