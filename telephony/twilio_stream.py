"""Twilio Media Streams, carrier side: loopcall plays Twilio's part toward an agent's websocket.

Stage: the channel for ``twilio-ws://HOST:PORT/PATH`` targets, and the media legs
of the local Twilio emulator.  ``MediaStreamLeg`` connects to an agent's media
websocket exactly as Twilio does for ``<Connect><Stream>``: ``connected``, then
``start`` (account, call and stream SIDs, ``tracks: ["inbound"]``, 8 kHz mu-law
mono, ``customParameters``), then ``media`` every 20 ms on its own clock, silence
included, ``dtmf`` when asked, and ``stop`` at hang-up.  What the agent sends back
is played out as a phone would: ``media`` in arrival order at real-time pace
(``Playout``), its ``mark`` echoed once the audio before it has played, ``clear``
dropping what is queued and echoing the pending marks.

``TwilioStreamCall`` is that leg as a ``Call``: 16 kHz PCM in and out, taps at the
websocket.  The persona's side is tapped as the line carries it (band-limited to
4 kHz, mu-law quantized), so an utterance ends in the recording where it ends
for the agent: a final "s" above 4 kHz does not reach a phone line.  The agent
ends the call by closing the websocket, or through the REST hang-up
(``POST .../Calls/{CallSid}.json Status=completed``) when its Twilio base URL
points at a loopcall controller, which finds the call in ``LIVE_CALLS``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
import time
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from loguru import logger

from audio.g711 import ulaw_decode, ulaw_encode
from audio.resample import Downsampler, Upsampler
from telephony.base import Call, CallStateError, ConnectError, Target
from telephony.pump import media_pump
from telephony.ws_client import WsClient, WsHandshakeError, connect_ws

__all__ = [
    "LIVE_CALLS",
    "MediaStreamLeg",
    "FrameClock",
    "Playout",
    "StreamIds",
    "TwilioStreamCall",
    "new_sid",
]

FRAME_MS = 20
ULAW_FRAME_BYTES = 8000 * FRAME_MS // 1000  # 160 bytes of 8 kHz mu-law
SILENT_8K = bytes(2 * ULAW_FRAME_BYTES)
ULAW_SILENCE = ulaw_encode(SILENT_8K)
ULAW_SILENCE_B64 = base64.b64encode(ULAW_SILENCE).decode("ascii")
DTMF_DIGITS = set("0123456789*#ABCD")
# A chunk arriving at most this much before the previous one has played is on time
# (sender jitter), not a burst ahead of real time.
ON_TIME_S = 0.010
# A carrier leg that wakes later than this re-anchors its clock instead of catching up.
CATCH_UP_S = 0.200
# A gap in the sender's audio shorter than this is a hiccup mid-stream (the audio
# is late), not a pause between utterances.
ACTIVE_GAP_S = 0.060
# Every live twilio-ws call by its call SID, for the agent's REST hang-up.
LIVE_CALLS: weakref.WeakValueDictionary[str, TwilioStreamCall] = weakref.WeakValueDictionary()


class FrameClock:
    """A 20 ms sending clock that does not burst after a late wake-up of more than ``max_late_s``.

    Up to ``max_late_s`` late, the missed frames go out back to back (the stream
    keeps its timeline).  Later than that, the sender sends the frame at once and
    keeps 20 ms spacing from there (the clock re-anchors): toward a carrier, which
    plays what it receives at real-time pace, a catch-up burst would sit in its
    buffer and delay everything after it for the rest of the call.  Nothing is
    lost: the audio not yet sent leaves a little later, and the taps record when
    it really left.
    """

    def __init__(self, frame_s: float = FRAME_MS / 1000.0, max_late_s: float = 0.03) -> None:
        self._frame_s = frame_s
        self._max_late_s = max_late_s
        self._next: float | None = None

    async def tick(self) -> float:
        """Wait for the next frame's time; return the time it is sent at."""
        now = time.monotonic()
        if self._next is None:
            self._next = now
        wait = self._next - now
        if wait > 0:
            await asyncio.sleep(wait)
        elif -wait > self._max_late_s:
            self._next = now  # late: re-anchor rather than burst
        due = self._next
        self._next += self._frame_s
        return due


def new_sid(prefix: str) -> str:
    """A Twilio-shaped SID: two letters and 32 hex digits."""
    return prefix + secrets.token_hex(16)


@dataclass(frozen=True)
class StreamIds:
    """The identifiers Twilio puts in ``start``."""

    account_sid: str = field(default_factory=lambda: new_sid("AC"))
    call_sid: str = field(default_factory=lambda: new_sid("CA"))
    stream_sid: str = field(default_factory=lambda: new_sid("MZ"))


class Playout:
    """Plays received audio in arrival order at real-time pace, as a phone's speaker does.

    ``deliver(pcm, t)`` gets every chunk with the time it starts to play.  A chunk
    that arrives while nothing is playing, or within ``ON_TIME_S`` of the end of
    what plays, plays at once (no jitter buffer: its time is its arrival); one that
    arrives further ahead (an agent sending faster than real time) waits its turn.
    When a stream that was flowing comes a frame or more late, silence plays in its
    stead, and the same length of audio is cut from what then arrives ahead of time
    (a jitter buffer's rule): otherwise every hiccup would delay the rest of the
    stream.  A frame late by less than that is jitter: it plays at its arrival with
    no silence put in, so the delivered stream keeps the sender's sample count,
    which the recorder's placement relies on.
    Between the agent's utterances the line plays silence, delivered in 20 ms
    frames so that listeners (the persona's VAD) see time pass.
    """

    def __init__(
        self,
        sample_rate: int,
        deliver: Callable[[bytes, float], None],
        on_mark: Callable[[str], None] | None = None,
        *,
        drop_stale: bool = False,
    ) -> None:
        self._rate = sample_rate
        # A real-time sender's burst (an RTP peer catching up after a stall) is stale:
        # with ``drop_stale`` what waits is dropped when newer audio comes, as a jitter
        # buffer drops late packets, instead of delaying everything after it.  Off for
        # Twilio agents, which legitimately send faster than real time.
        self._drop_stale = drop_stale
        self._played_until: float | None = None  # end of the audio already delivered
        self._sink = deliver
        self._on_mark = on_mark
        self._queue: deque[tuple[float, bytes]] = deque()
        self._marks: deque[tuple[float, str]] = deque()
        self._cursor: float | None = None  # end of everything delivered or queued
        self._last_voice: float | None = None  # end of the sender's latest audio
        self._late_debt = 0.0  # silence played in the sender's stead, mid-stream
        self.dropped_s = 0.0
        # (when, seconds) of every drop: a recording misses that audio there.
        self.drops: list[tuple[float, float]] = []
        self._wake = asyncio.Event()
        self._frame_s = FRAME_MS / 1000.0

    def begin(self, now: float | None = None) -> None:
        """The line is open: from ``now`` on, time passes on it (as silence until audio comes)."""
        if self._cursor is None:
            self._cursor = time.monotonic() if now is None else now

    def _seconds(self, pcm: bytes) -> float:
        return len(pcm) / 2 / self._rate

    def _deliver(self, pcm: bytes, t: float) -> None:
        self._played_until = t + self._seconds(pcm)
        self._sink(pcm, t)

    def _fill_silence(self, until: float) -> None:
        """Deliver silence from the cursor up to ``until`` (nothing queued in between)."""
        if self._cursor is None:
            self._cursor = until
            return
        gap = int(round((until - self._cursor) * self._rate))
        if gap > 0:
            self._deliver(bytes(2 * gap), self._cursor)
            self._cursor += gap / self._rate

    def push(self, pcm: bytes, now: float | None = None) -> None:
        """Audio from the agent, split into 20 ms frames that play one after another."""
        now = time.monotonic() if now is None else now
        step = 2 * self._rate * FRAME_MS // 1000
        for i in range(0, len(pcm), step):
            self._push_frame(pcm[i : i + step], now)

    def _push_frame(self, pcm: bytes, now: float) -> None:
        jitter = False
        if not self._queue and self._last_voice is not None and now > self._last_voice:
            # The sender resumes after a gap: a short one was a hiccup mid-stream, whose
            # silence stood in for audio now late; a longer one was a pause.
            gap = now - self._last_voice
            if gap >= ACTIVE_GAP_S:
                self._late_debt = 0.0
            elif self._cursor is not None and self._cursor <= self._last_voice:
                # Later than the audio before it, but before the line played a frame of
                # silence (``step``): sender jitter.  It plays at its arrival with no
                # silence put in front, so the stream keeps the sender's sample count.
                # (Silence put in here and never taken back made every later chunk look
                # that much less delayed than it was, and the recorder, which anchors a
                # stream on its least-delayed chunks, laid the earlier ones, a reply's
                # onset among them, early: twilio-ws oracle turns read up to 7 ms short.)
                jitter = True
            else:
                self._late_debt += gap
        cursor = self._cursor
        early = cursor is not None and now < cursor - ON_TIME_S
        if early and self._drop_stale:
            # What waits is older than this frame: drop it and play from now on.
            stale = sum(self._seconds(queued) for _, queued in self._queue)
            if stale:
                self.dropped_s += stale
                self.drops.append((now, stale))
            self._queue.clear()
            cursor = self._cursor = max(now, self._played_until or now)
            early = now < cursor - ON_TIME_S
        if early and self._late_debt > 0:
            # Silence already stood in for this much of the stream: as much audio is
            # cut (as a jitter buffer drops late packets), so a hiccup does not delay
            # the rest of a continuous stream.
            cut = min(len(pcm) // 2, int(round(self._late_debt * self._rate)))
            self._late_debt = max(0.0, self._late_debt - cut / self._rate)
            self.dropped_s += cut / self._rate
            if cut:
                self.drops.append((now, cut / self._rate))
            pcm = pcm[2 * cut :]
            if not pcm:
                return
        if not self._queue and not early:
            # On time (within the sender's jitter): it plays as it arrives, stamped with
            # its arrival, so the recorder can take jitter out of the stream's timing.
            if not jitter:
                self._fill_silence(now)
            self._deliver(pcm, now)
            self._cursor = max(cursor if cursor is not None else now, now) + self._seconds(pcm)
            self._last_voice = self._cursor
            return
        # The agent is ahead of real time (a burst): this frame waits its turn.
        start = cursor if cursor is not None else now
        self._queue.append((start, pcm))
        self._cursor = start + self._seconds(pcm)
        self._last_voice = self._cursor
        self._wake.set()

    def mark(self, name: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if self._cursor is None or self._cursor <= now:
            self._echo(name)
        else:
            self._marks.append((self._cursor, name))
            self._wake.set()

    def clear(self, now: float | None = None) -> None:
        """Drop what has not played yet and echo every pending mark."""
        now = time.monotonic() if now is None else now
        self._queue.clear()
        if self._cursor is not None and self._cursor > now:
            self._cursor = now
        while self._marks:
            self._echo(self._marks.popleft()[1])

    def _echo(self, name: str) -> None:
        if self._on_mark is not None:
            self._on_mark(name)

    def step(self, now: float) -> float:
        """Deliver what is due at ``now``; return when something next falls due."""
        while self._queue and self._queue[0][0] <= now:
            start, pcm = self._queue.popleft()
            self._deliver(pcm, start)
        while self._marks and self._marks[0][0] <= now:
            self._echo(self._marks.popleft()[1])
        if not self._queue and self._cursor is not None:
            while self._cursor + self._frame_s <= now:
                self._fill_silence(self._cursor + self._frame_s)
        due = [now + self._frame_s]
        if self._queue:
            due.append(self._queue[0][0])
        if self._marks:
            due.append(self._marks[0][0])
        if self._cursor is not None and not self._queue:
            due.append(self._cursor + self._frame_s)
        return max(now, min(due))

    async def run(self) -> None:
        """Keep the line playing until cancelled."""
        while True:
            self._wake.clear()
            wake_at = self.step(time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, wake_at - time.monotonic()))


class MediaStreamLeg:
    """One Twilio media stream, carrier side: a websocket client toward the agent.

    ``next_frame()`` is called on the leg's 20 ms clock for the PCM to send (16 kHz,
    or the line's own 8 kHz with ``sample_rate=8000``)
    (or, without ``next_frame``, the leg sends what it is ``feed``-ed as it comes:
    a bridge whose other side's playout already runs in real time);
    ``on_audio(pcm, t)`` receives the agent's audio as it plays; ``on_end(detail,
    abnormal)`` is called once when the agent closes the stream.
    """

    def __init__(
        self,
        url: str,
        *,
        ids: StreamIds,
        next_frame: Callable[[], bytes] | None,
        on_audio: Callable[[bytes, float], None],
        on_end: Callable[[str, bool], None],
        on_sent: Callable[[bytes, float], None] | None = None,
        custom_parameters: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        sample_rate: int = 16_000,
    ) -> None:
        if sample_rate not in (8000, 16_000):
            raise ValueError(f"a media stream leg carries 8000 or 16000 Hz, not {sample_rate}")
        # At 8 kHz the PCM is the line's own: nothing to resample either way.
        self._narrowband = sample_rate == 8000
        self.sample_rate = sample_rate
        self.url = url
        self.ids = ids
        self._next_frame = next_frame
        self._on_sent = on_sent
        self._wire_up = Upsampler()
        self._fed = bytearray()
        self._fed_ready = asyncio.Event()
        self._on_end = on_end
        self._custom = {k: str(v) for k, v in (custom_parameters or {}).items()}
        self._headers = dict(headers or {})
        self._ws: WsClient | None = None
        self._pump_handle: int | None = None
        self._sequence = 0
        self._chunk = 0
        self._down = Downsampler()
        self._up = Upsampler()
        self._tasks: set[asyncio.Task[None]] = set()
        self._ended = False
        self.marks_echoed: list[str] = []
        self.clears = 0
        self.playout = Playout(sample_rate, on_audio, self._echo_mark)

    # ------------------------------------------------------------------ messages

    def _message(self, event: str, **body: Any) -> str:
        self._sequence += 1
        message: dict[str, Any] = {"event": event, "sequenceNumber": str(self._sequence)}
        if event != "connected":
            message["streamSid"] = self.ids.stream_sid
        message.update(body)
        return json.dumps(message)

    def _start_message(self) -> str:
        return self._message(
            "start",
            start={
                "accountSid": self.ids.account_sid,
                "streamSid": self.ids.stream_sid,
                "callSid": self.ids.call_sid,
                "tracks": ["inbound"],
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                "customParameters": self._custom,
            },
        )

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        """Connect and send ``connected`` and ``start``; raises ``ConnectError``."""
        try:
            self._ws = await connect_ws(self.url, self._handle, headers=self._headers)
        except WsHandshakeError as exc:
            if exc.status is not None:
                raise ConnectError(
                    f"agent at {self.url} refused the media stream: HTTP {exc.status}"
                ) from exc
            raise ConnectError(f"could not reach agent at {self.url}: {exc}") from exc
        except (OSError, ValueError) as exc:
            raise ConnectError(f"could not reach agent at {self.url}: {exc}") from exc
        self._ws.closed.add_done_callback(self._on_closed)
        connected = {"event": "connected", "protocol": "Call", "version": "1.0.0"}
        self._sequence = 0
        self._ws.send_text(json.dumps(connected))
        self._ws.send_text(self._start_message())
        self.playout.begin()
        if self._next_frame is None:
            self._spawn(self._feed_loop())
        # As the carrier, loopcall's own hiccups are caught up at once (the pump runs
        # missed ticks back to back, up to a real gap): the agent's stream clock then
        # stays true, and the taps record when each frame really left.
        self._pump_handle = media_pump().add(self._on_tick)

    async def close(self, *, send_stop: bool = True) -> None:
        """Send ``stop`` (the caller hung up) and close the websocket."""
        self._ended = True
        self._stop_pump()
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
        ws, self._ws = self._ws, None
        if ws is None:
            return
        if send_stop:
            stop = {"accountSid": self.ids.account_sid, "callSid": self.ids.call_sid}
            ws.send_text(self._message("stop", stop=stop))
        await ws.close()

    async def send_dtmf(self, digit: str) -> None:
        if digit not in DTMF_DIGITS:
            raise ValueError(f"not a DTMF digit: {digit!r}")
        if self._ws is None:
            raise CallStateError("Cannot send DTMF: the media stream is closed")
        self._ws.send_text(self._message("dtmf", dtmf={"track": "inbound_track", "digit": digit}))

    # ---------------------------------------------------------------------- media

    def feed(self, pcm16: bytes) -> None:
        """Send ``pcm16`` now, in 20 ms frames (a leg without a clock of its own: a bridge)."""
        self._fed.extend(pcm16)
        self._fed_ready.set()

    def _on_tick(self, _due: float) -> None:
        """Each tick of the media pump: play what is due, send one frame (with a clock)."""
        self.playout.step(time.monotonic())
        if self._next_frame is not None and not self._send_frame(self._next_frame()):
            self._stop_pump()

    def _stop_pump(self) -> None:
        if self._pump_handle is not None:
            media_pump().remove(self._pump_handle)
            self._pump_handle = None

    async def _feed_loop(self) -> None:
        """Send fed audio as soon as a whole frame of it is there."""
        step = 2 * self.sample_rate * FRAME_MS // 1000
        while True:
            await self._fed_ready.wait()
            self._fed_ready.clear()
            while len(self._fed) >= step:
                frame = bytes(self._fed[:step])
                del self._fed[:step]
                if not self._send_frame(frame):
                    return

    def _send_frame(self, pcm16: bytes) -> bool:
        ws = self._ws
        if ws is None or not ws.open:
            return False
        if self._narrowband and pcm16 == SILENT_8K:
            # The persona is quiet most of the call: silence needs no coding.
            ulaw, line, payload = ULAW_SILENCE, SILENT_8K, ULAW_SILENCE_B64
        else:
            ulaw = ulaw_encode(pcm16 if self._narrowband else self._down.process(pcm16))
            line = ulaw_decode(ulaw)
            payload = base64.b64encode(ulaw).decode("ascii")
        if self._on_sent is not None:
            # What the line carries: band-limited to 4 kHz and mu-law quantized.
            line = line if self._narrowband else self._wire_up.process(line)
            self._on_sent(line, time.monotonic())
        self._sequence += 1
        chunk, self._chunk = self._chunk, self._chunk + 1
        # Twilio's media message, written out (json.dumps per frame is a cost at load);
        # every value is a decimal number, a SID or base64, none needs escaping.
        text = (
            f'{{"event":"media","sequenceNumber":"{self._sequence}",'
            f'"streamSid":"{self.ids.stream_sid}","media":{{"track":"inbound",'
            f'"chunk":"{chunk + 1}","timestamp":"{chunk * FRAME_MS}","payload":"{payload}"}}}}'
        )
        return ws.send_text(text)

    def _on_closed(self, closed: asyncio.Future[tuple[int | None, str]]) -> None:
        """The websocket is gone: report it once, unless we closed it ourselves."""
        self._stop_pump()
        if self._ended or closed.cancelled():
            return
        self._ended = True
        code, reason = closed.result()
        abnormal = code is None or code not in (1000, 1001)
        why = f" ({reason})" if reason else ""
        if code is None or code == 1006:  # 1006: no close frame came (RFC 6455)
            detail = "the agent dropped the media stream without a websocket close"
        else:
            detail = f"the agent closed the media stream (websocket close {code}{why})"
        self._on_end(detail, abnormal)

    def _handle(self, raw: str | bytes) -> None:
        try:
            message = json.loads(raw)
            event = message["event"]
        except (ValueError, KeyError, TypeError):
            logger.warning(
                f"twilio stream: ignoring a message that is not Twilio JSON: {raw!r:.80}"
            )
            return
        if event == "media":
            try:
                ulaw = base64.b64decode(message["media"]["payload"])
            except (KeyError, TypeError, ValueError):
                logger.warning("twilio stream: media message without a base64 payload")
                return
            if ulaw:
                pcm = ulaw_decode(ulaw)
                self.playout.push(pcm if self._narrowband else self._up.process(pcm))
        elif event == "mark":
            name = str((message.get("mark") or {}).get("name", ""))
            self.playout.mark(name)
        elif event == "clear":
            self.clears += 1
            self.playout.clear()
        else:
            logger.debug(f"twilio stream: ignoring {event!r} from the agent")

    def _echo_mark(self, name: str) -> None:
        self.marks_echoed.append(name)
        if self._ws is not None:
            self._ws.send_text(self._message("mark", mark={"name": name}))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class TwilioStreamCall(Call):
    """A call to an agent's Twilio media-stream websocket, loopcall playing the carrier."""

    def __init__(
        self,
        target: Target,
        *,
        request_data: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        media_timeout_s: float | None = None,
        account_sid: str | None = None,
        sample_rate: int = 16_000,
    ) -> None:
        # A media stream carries silence only from the carrier: an agent is quiet
        # between utterances, so silence from it says nothing. The websocket's own
        # keepalive (ping/pong) detects a dead peer instead of a media timeout.
        super().__init__(target, media_timeout_s=None, sample_rate=sample_rate)
        self._closing: asyncio.Task[None] | None = None  # the close a REST hang-up starts
        self.ids = StreamIds(account_sid=account_sid) if account_sid else StreamIds()
        custom = {
            k: v if isinstance(v, str) else json.dumps(v) for k, v in (request_data or {}).items()
        }
        self.leg = MediaStreamLeg(
            target.ws_url,
            ids=self.ids,
            next_frame=self._take_outgoing_frame,
            on_audio=self._deliver,
            on_end=self._on_leg_end,
            on_sent=lambda pcm, t: self._tap_sent(pcm, t),
            custom_parameters=custom,
            headers=headers,
            sample_rate=sample_rate,
        )

    @property
    def call_sid(self) -> str:
        return self.ids.call_sid

    @property
    def audio_drops(self) -> list[tuple[float, float]]:
        return self.leg.playout.drops

    async def connect(self, timeout: float = 15.0) -> None:
        if self.state != "new":
            raise CallStateError(f'Cannot connect in call state "{self.state}"')
        self.state = "connecting"
        try:
            await asyncio.wait_for(self.leg.open(), timeout)
        except TimeoutError as exc:
            await self._fail_connect()
            raise ConnectError(
                f"no media stream to {self.target.ws_url} within {timeout:g} s"
            ) from exc
        except ConnectError:
            await self._fail_connect()
            raise
        LIVE_CALLS[self.call_sid] = self
        self._mark_connected()

    async def _fail_connect(self) -> None:
        self._mark_ended("transport_failed", "connect failed")
        await self.leg.close(send_stop=False)

    async def send_dtmf(self, digit: str) -> None:
        if self.state != "connected":
            raise CallStateError(f'Cannot send DTMF in call state "{self.state}"')
        await self.leg.send_dtmf(digit)

    def remote_hangup(self, detail: str) -> None:
        """The agent ended the call out of band (its REST hang-up)."""
        if self.state == "connected":
            self._mark_ended("remote_hangup", detail)
            self._closing = asyncio.ensure_future(self.leg.close())

    def _on_leg_end(self, detail: str, abnormal: bool) -> None:
        self._mark_ended("transport_failed" if abnormal else "remote_hangup", detail)

    async def _close_transport(self) -> None:
        self._mark_ended("local_hangup")
        LIVE_CALLS.pop(self.call_sid, None)
        await self.leg.close()
