"""The call interface every channel implements: ``Call``, its taps, and how a call ends.

Stage: between the orchestrator and the agent under test.  A ``Call`` carries
16-bit mono PCM at ``sample_rate`` both ways (16 kHz; phone channels also offer
their line's own 8 kHz, which spares resampling when many calls run at once): the
persona bot writes what it says with ``send_audio`` and reads what the agent says
from ``recv_audio`` (or, cheaper, gets each chunk inline through ``listen``).  Every chunk
that crosses the harness's side of the wire is also handed, with the monotonic
time it crossed, to the call's taps (the recorder), so measurements come from the
wire and not from the bot.  ``open_call`` (``dial.py``) is the only place that
picks a channel.

The target (``target.py``), the error tree (``errors.py``) and the outgoing audio
buffer (``outgoing.py``) have their own modules; their names are also importable
from here.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Literal, Protocol

from telephony.errors import (
    CallStateError,
    ConnectError,
    ConnectionLost,
    TargetError,
    TelephonyError,
)
from telephony.outgoing import OutgoingAudio
from telephony.target import DialOptions, Target, parse_target

__all__ = [
    "DTMF_DIGITS",
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
# The keys a caller can press (RFC 4733 events 0-15), on channels that carry DTMF.
DTMF_DIGITS = frozenset("0123456789*#ABCD")


class CallTap(Protocol):
    """Receives every chunk that crosses the wire, with the monotonic time it crossed."""

    def on_sent(self, t: float, pcm: bytes) -> None: ...

    def on_received(self, t: float, pcm: bytes) -> None: ...


class Call(ABC):
    """One call to the agent under test, from dialling to hang-up.

    States: ``new`` -> ``connecting`` -> ``connected`` -> ``ended``.
    """

    sample_rate: int = 16_000
    frame_ms: int = 20
    # How long ``hangup`` may wait on the far end (a SIP BYE's answer, a websocket's
    # closing handshake, Twilio's final status) before it releases the call anyway.
    # Whoever bounds a hang-up allows at least this (the orchestrator adds a margin).
    hangup_timeout_s: float = 0.0

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

    @property
    def kernel_stamped(self) -> bool:
        """Whether the agent's audio is stamped with its arrival by the kernel (so a busy
        event loop does not move it) rather than when the event loop reads it."""
        return False

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
        """End the call from our side.

        On return everything the call opened is released (sockets, the media pump's
        handler, registrations), whatever the far end did; also when the caller
        stops waiting first: a cancelled hang-up releases before it ends.
        """
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
