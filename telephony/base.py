"""The call interface every channel implements, target parsing, and the error tree.

Stage: between the orchestrator and the agent under test.  A ``Call`` carries
16-bit mono PCM at ``sample_rate`` both ways (16 kHz; phone channels also offer
their line's own 8 kHz, which spares resampling when many calls run at once): the
persona bot writes what it says with ``send_audio`` and reads what the agent says
from ``recv_audio`` (or, cheaper, gets each chunk inline through ``listen``).  Every chunk
that crosses the harness's side of the wire is also handed, with the monotonic
time it crossed, to the call's taps (the recorder), so measurements come from the
wire and not from the bot.  ``open_call`` in ``telephony/__init__`` is the only
place that picks a channel.

Errors (``raise ... from exc`` at the edge; nothing from aiortc escapes)::

    TelephonyError
    +-- TargetError        the target URL is malformed or names an unknown channel
    +-- ConnectError       the agent could not be reached, refused, or never answered
    |   +-- AddressRefused     the egress policy forbids its host (``egress.py``)
    +-- ConnectionLost     the call dropped without a hang-up (no media for too long)
    +-- CallStateError     an operation the call's current state does not allow
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

from telephony.credentials import SipCredentials, TwilioOverrides

__all__ = [
    "Call",
    "CallStateError",
    "CallTap",
    "ConnectError",
    "ConnectionLost",
    "DialOptions",
    "EndCause",
    "OutgoingAudio",
    "Target",
    "TargetError",
    "TelephonyError",
    "parse_target",
]

EndCause = Literal["local_hangup", "remote_hangup", "media_timeout", "transport_failed"]
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


class TelephonyError(Exception):
    """Base of every error the telephony layer raises."""


class TargetError(TelephonyError, ValueError):
    """The target URL cannot be used."""


class ConnectError(TelephonyError):
    """The call could not be set up."""


class ConnectionLost(TelephonyError):
    """The call went silent at the transport level: no media, no hang-up."""


class CallStateError(TelephonyError):
    """The call is not in a state that allows the operation."""


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


class CallTap(Protocol):
    """Receives every chunk that crosses the wire, with the monotonic time it crossed."""

    def on_sent(self, t: float, pcm: bytes) -> None: ...

    def on_received(self, t: float, pcm: bytes) -> None: ...


@dataclass
class OutgoingAudio:
    """The persona's outgoing audio, drained one frame at a time by the channel's clock.

    Channels call ``next_frame`` on their own 20 ms clock; an empty buffer yields
    silence, as a phone line does.  ``write`` returns at once; ``drain`` waits
    until what was written has been sent, which paces writers in real time.
    """

    frame_bytes: int
    high_water_frames: int = 3
    _chunks: deque[bytes] = field(default_factory=deque)
    _buffered: int = 0
    _drained: asyncio.Event = field(default_factory=asyncio.Event)
    _room: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self._drained.set()
        self._room.set()

    @property
    def has_room(self) -> bool:
        return self._buffered <= self.high_water_frames * self.frame_bytes

    @property
    def buffered_bytes(self) -> int:
        """Bytes written and not yet sent."""
        return self._buffered

    def write(self, pcm: bytes) -> None:
        if not pcm:
            return
        self._chunks.append(pcm)
        self._buffered += len(pcm)
        self._drained.clear()
        if not self.has_room:
            self._room.clear()

    def clear(self) -> None:
        """Drop everything not yet sent (barge-in)."""
        self._chunks.clear()
        self._buffered = 0
        self._drained.set()
        self._room.set()

    def trim(self, keep_bytes: int) -> None:
        """Drop the oldest audio until at most ``keep_bytes`` wait (a bridge that lags)."""
        while self._chunks and self._buffered > keep_bytes:
            excess = self._buffered - keep_bytes
            chunk = self._chunks[0]
            if len(chunk) <= excess:
                self._chunks.popleft()
                self._buffered -= len(chunk)
            else:
                self._chunks[0] = chunk[excess:]
                self._buffered -= excess
        if not self._chunks:
            self._buffered = 0
            self._drained.set()
        if self.has_room:
            self._room.set()

    async def drain(self) -> None:
        await self._drained.wait()

    async def room(self) -> None:
        await self._room.wait()

    def next_frame(self) -> bytes:
        """Return exactly ``frame_bytes`` of audio, padded with silence."""
        out = bytearray()
        while self._chunks and len(out) < self.frame_bytes:
            chunk = self._chunks[0]
            need = self.frame_bytes - len(out)
            if len(chunk) <= need:
                out += self._chunks.popleft()
            else:
                out += chunk[:need]
                self._chunks[0] = chunk[need:]
        self._buffered -= len(out)
        if not self._chunks:
            self._buffered = 0
            self._drained.set()
        if self.has_room:
            self._room.set()
        if len(out) < self.frame_bytes:
            out += bytes(self.frame_bytes - len(out))
        return bytes(out)


class Call(ABC):
    """One call to the agent under test, from dialling to hang-up.

    States: ``new`` -> ``connecting`` -> ``connected`` -> ``ended``.
    """

    sample_rate: int = 16_000
    frame_ms: int = 20

    def __init__(
        self,
        target: Target,
        *,
        media_timeout_s: float | None = 10.0,
        sample_rate: int | None = None,
    ) -> None:
        if sample_rate is not None:
            self.sample_rate = sample_rate
        self.target = target
        self.media_timeout_s = media_timeout_s
        self.state: Literal["new", "connecting", "connected", "ended"] = "new"
        self.connected_at: float | None = None
        self.last_media_at: float | None = None
        self.end_cause: EndCause | None = None
        self.end_detail: str = ""
        self.ended = asyncio.Event()
        self._taps: list[CallTap] = []
        # Told about what happens on the line (carrier statuses, SIDs): (kind, detail).
        self.on_event: Callable[[str, str], None] | None = None
        self._incoming: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._on_chunk: Callable[[bytes, float], None] | None = None
        self._outgoing = OutgoingAudio(frame_bytes=self.frame_samples * 2)

    @property
    def frame_samples(self) -> int:
        return self.sample_rate * self.frame_ms // 1000

    def add_tap(self, tap: CallTap) -> None:
        self._taps.append(tap)

    # Whether the agent's audio is stamped with its arrival by the kernel (so a busy
    # event loop does not move it) or when the event loop reads it.
    kernel_stamped: bool = False

    @property
    def audio_drops(self) -> list[tuple[float, float]]:
        """(when, seconds) of agent audio the playout dropped as stale: missing from the
        recording there."""
        return []

    # ----------------------------------------------------------------- lifecycle

    @abstractmethod
    async def connect(self, timeout: float) -> None:
        """Place the call; return once media flows. Raises ``ConnectError``."""

    @abstractmethod
    async def _close_transport(self) -> None:
        """Tear the channel down (idempotent)."""

    async def hangup(self) -> None:
        """End the call from our side."""
        self._mark_ended("local_hangup")
        await self._close_transport()

    # --------------------------------------------------------------------- audio

    async def recv_audio(self) -> bytes | None:
        """Next chunk of agent audio, or None once the call has ended."""
        if self.state == "ended" and self._incoming.empty():
            return None
        return await self._incoming.get()

    def listen(self, callback: Callable[[bytes, float], None]) -> None:
        """Hand every chunk of agent audio to ``callback(pcm, arrival)`` as it arrives.

        Instead of queueing it for ``recv_audio``: no task wakes per chunk, which
        matters when hundreds of calls share one process.  The callback runs inside
        the transport's receive path, so it must be quick and must not raise.
        """
        self._on_chunk = callback
        while not self._incoming.empty():
            pcm = self._incoming.get_nowait()
            if pcm is not None:
                callback(pcm, time.monotonic())

    async def send_audio(self, pcm: bytes) -> None:
        """Queue persona audio and wait until the line has room (real-time pacing)."""
        if self.state == "ended":
            raise CallStateError(f'Cannot send audio in call state "{self.state}"')
        self._outgoing.write(pcm)
        # Keep at most a few frames queued, so a writer runs in real time.
        if not self._outgoing.has_room:
            await self._until_ended_or(self._outgoing.room())

    async def _until_ended_or(self, aw: Awaitable[None]) -> None:
        waiter = asyncio.ensure_future(aw)
        ender = asyncio.ensure_future(self.ended.wait())
        try:
            await asyncio.wait({waiter, ender}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (waiter, ender):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def send_dtmf(self, digit: str) -> None:
        """Press a key on the caller's phone (channels that carry DTMF override this)."""
        raise CallStateError(f"channel {self.target.channel!r} carries no DTMF")

    def clear_audio(self) -> None:
        self._outgoing.clear()

    async def wait_sent(self) -> None:
        """Wait until every queued byte of persona audio has gone out."""
        if self.state != "ended":
            await self._until_ended_or(self._outgoing.drain())

    # ------------------------------------------------ for the channel implementations

    def _next_outgoing_frame(self) -> bytes:
        frame = self._outgoing.next_frame()
        self._tap_sent(frame)
        return frame

    def _take_outgoing_frame(self) -> bytes:
        """The next frame to send, for channels that tap what their codec made of it."""
        return self._outgoing.next_frame()

    def _tap_sent(self, pcm: bytes, t: float | None = None) -> None:
        now = time.monotonic() if t is None else t
        for tap in self._taps:
            tap.on_sent(now, pcm)

    def _deliver(self, pcm: bytes, t: float | None = None) -> None:
        now = time.monotonic() if t is None else t
        self.last_media_at = now
        for tap in self._taps:
            tap.on_received(now, pcm)
        if self._on_chunk is not None:
            self._on_chunk(pcm, now)
        else:
            self._incoming.put_nowait(pcm)

    def _mark_connected(self) -> None:
        self.state = "connected"
        self.connected_at = self.last_media_at = time.monotonic()

    async def _watch_media(self) -> None:
        """End the call as ``media_timeout`` when the agent sends nothing for too long.

        A live line carries audio all the time (silence included), so a long gap
        means the far end is gone without a hang-up (crashed, network lost).
        """
        timeout = self.media_timeout_s
        if timeout is None:
            return
        while self.state == "connected":
            last = self.last_media_at or time.monotonic()
            remaining = last + timeout - time.monotonic()
            if remaining <= 0:
                self._mark_ended("media_timeout", f"no audio from the agent for {timeout:g} s")
                await self._close_transport()
                return
            await asyncio.sleep(min(remaining, 1.0))

    def _mark_ended(self, cause: EndCause, detail: str = "") -> None:
        if self.state == "ended":
            return
        self.state = "ended"
        self.end_cause = cause
        self.end_detail = detail
        self.ended.set()
        self._incoming.put_nowait(None)
        self._outgoing.clear()
