"""Where the agent answers and how to reach it: target URLs, parsed, and the dial options.

Stage: the first step of a call.  A target URL comes in (``webrtc[s]://``,
``twilio-ws[s]://``, ``tel:+E164``, ``sip:USER@HOST``); out goes a ``Target``
naming its channel, host, port and path, which ``open_call`` (``dial.py``) hands
to the channel's ``Call``.  ``DialOptions`` carries what else a stored agent says
about reaching it (headers, request data, credentials).  A bad URL is a
``TargetError`` saying what is wrong.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from telephony.credentials import SipCredentials, TwilioOverrides
from telephony.errors import TargetError

__all__ = [
    "E164_PATTERN",
    "SIP_DEFAULT_PORT",
    "TARGET_PATTERN",
    "DialOptions",
    "Target",
    "parse_target",
]

# Target schemes and the channel each one names; "webrtcs" signals over HTTPS and
# "twilio-wss" streams over TLS.  ``tel:`` names a phone number, not a host.
SCHEMES = {
    "webrtc": "webrtc",
    "webrtcs": "webrtc",
    "twilio-ws": "twilio-ws",
    "twilio-wss": "twilio-ws",
}
DEFAULT_PATHS = {"webrtc": "/api/offer", "twilio-ws": "/ws"}
E164_PATTERN = r"\+[1-9][0-9]{6,14}"
SIP_DEFAULT_PORT = 5060
SIP_TRANSPORTS = ("udp", "tcp")
# What a target URL looks like, for API schemas (``parse_target`` has the final word).
TARGET_PATTERN = r"^((" + "|".join(SCHEMES) + r")://[^/\s]+|tel:" + E164_PATTERN + r"|sips?:[^\s]+)"


@dataclass(frozen=True)
class DialOptions:
    """How to reach one agent beyond its address: what the controller's agent record says.

    ``headers`` go on the connection request (the WebRTC offer's HTTP POST; a SIP
    INVITE); they may hold secrets, so they are kept out of ``repr``.
    """

    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    request_data: Mapping[str, Any] = field(default_factory=dict)
    # Phone calls: this agent's own Twilio account fields, over the configured ones.
    phone: TwilioOverrides = field(default_factory=TwilioOverrides)
    # SIP calls: digest credentials and the caller's user part, over the configured ones.
    sip: SipCredentials = field(default_factory=SipCredentials)


@dataclass(frozen=True)
class Target:
    """Where the agent under test answers, parsed from a target URL."""

    url: str
    channel: str
    host: str
    port: int
    path: str
    secure: bool = False
    user: str = ""  # sip: the user part of sip:USER@HOST
    transport: str = ""  # sip: "udp" or "tcp"

    @property
    def is_loopback(self) -> bool:
        """True when the agent is on this machine's loopback interface."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    @property
    def ws_url(self) -> str:
        """The media-stream websocket URL (``twilio-ws``), ``wss`` for ``twilio-wss://``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'wss' if self.secure else 'ws'}://{host}:{self.port}{self.path}"

    @property
    def number(self) -> str:
        """The E.164 number of a ``tel:`` target."""
        return self.path

    @property
    def sip_uri(self) -> str:
        """The Request-URI of a ``sip:`` target: ``sip:USER@HOST:PORT[;transport=tcp]``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = f"{self.user}@" if self.user else ""
        suffix = ";transport=tcp" if self.transport == "tcp" else ""
        return f"sip:{user}{host}:{self.port}{suffix}"

    @property
    def http_url(self) -> str:
        """The signalling URL (SmallWebRTC's offer endpoint), HTTPS for ``webrtcs://``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.secure else 'http'}://{host}:{self.port}{self.path}"


def parse_target(url: str) -> Target:
    """Parse a target: ``webrtc[s]://HOST:PORT/PATH``, ``twilio-ws[s]://HOST:PORT/PATH``,
    ``tel:+E164`` or ``sip:USER@HOST[:PORT][;transport=udp|tcp]``."""
    text = url.strip()
    if text.lower().startswith("tel:"):
        number = text[4:].replace("-", "").replace(" ", "")
        if not re.fullmatch(E164_PATTERN, number):
            raise TargetError(f"target {url!r} is not a phone number in E.164 (tel:+14155550100)")
        return Target(url=f"tel:{number}", channel="tel", host="", port=0, path=number)
    if text.lower().startswith(("sip:", "sips:")):
        return _parse_sip(url, text)
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        known = ", ".join([*(f"{c}://" for c in SCHEMES), "tel:", "sip:"])
        raise TargetError(f"unknown channel in target {url!r}: expected one of {known}")
    channel = SCHEMES[scheme]
    example = f"{scheme}://HOST:PORT{DEFAULT_PATHS[channel]}"
    if not parts.hostname:
        raise TargetError(f"target {url!r} has no host (expected {example})")
    try:
        port = parts.port
    except ValueError as exc:
        raise TargetError(f"target {url!r} has an invalid port") from exc
    secure = scheme in ("webrtcs", "twilio-wss")
    if port is None:
        if not secure:
            raise TargetError(f"target {url!r} has no port (expected {example})")
        port = 443
    path = parts.path or DEFAULT_PATHS[channel]
    if parts.query:
        path += f"?{parts.query}"
    return Target(
        url=url, channel=channel, host=parts.hostname, port=port, path=path, secure=secure
    )


_SIP_URI = re.compile(
    r"^sip:(?:(?P<user>[^@;\s]+)@)?(?P<host>\[[0-9a-fA-F:.]+\]|[^:;\s\[\]]+)"
    r"(?::(?P<port>[0-9]+))?(?P<params>(?:;[^;\s]*)*)$",
    re.IGNORECASE,
)


def _parse_sip(url: str, text: str) -> Target:
    """``sip:USER@HOST[:PORT][;transport=udp|tcp]`` (RFC 3261 section 19.1)."""
    example = "sip:USER@HOST[:PORT][;transport=udp|tcp]"
    if text.lower().startswith("sips:"):
        raise TargetError(f"target {url!r}: sips: (SIP over TLS) is not supported; use {example}")
    match = _SIP_URI.match(text)
    if match is None:
        raise TargetError(f"target {url!r} is not a SIP URI ({example})")
    port = int(match.group("port") or SIP_DEFAULT_PORT)
    if not 0 < port < 65536:
        raise TargetError(f"target {url!r} has an invalid port")
    transport = "udp"
    for param in (match.group("params") or "").split(";"):
        name, _, value = param.partition("=")
        if name.lower() == "transport":
            transport = value.lower()
            if transport not in SIP_TRANSPORTS:
                raise TargetError(
                    f"target {url!r}: transport={value} is not supported (udp or tcp)"
                )
    return Target(
        url=url,
        channel="sip",
        host=match.group("host").strip("[]"),
        port=port,
        path="",
        user=match.group("user") or "",
        transport=transport,
    )
