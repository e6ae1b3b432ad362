"""One Twilio media stream from the carrier's side: loopcall plays Twilio toward an agent.

Stage: the wire of the ``twilio-ws://`` channel (``twilio_stream.py``) and the
media legs of the local Twilio emulator.  ``MediaStreamLeg`` connects to an
agent's media websocket exactly as Twilio does for ``<Connect><Stream>``:
``connected``, then ``start`` (account, call and stream SIDs, ``tracks:
["inbound"]``, 8 kHz mu-law mono, ``customParameters``), then ``media`` every
20 ms on the process's media clock, silence included, ``dtmf`` when asked, and
``stop`` at hang-up.  In: the PCM to send, one frame per tick (or fed by a
bridge).  Out: the agent's ``media`` played in arrival order at real-time pace
(``Playout``), its ``mark`` echoed once the audio before it has played, ``clear``
dropping what is queued and echoing the pending marks.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from loguru import logger

from audio.g711 import ulaw_decode, ulaw_encode
from audio.resample import Downsampler, Upsampler
from runtime.tasks import spawn
from telephony.base import DTMF_DIGITS
from telephony.egress import EgressPolicy
from telephony.errors import CallStateError, ConnectError
from telephony.frame_clock import FRAME_MS
from telephony.playout import Playout
from telephony.pump import media_pump
from telephony.ws_client import WsClient, WsHandshakeError, connect_ws

__all__ = ["MediaStreamLeg", "StreamIds", "new_sid"]

ULAW_FRAME_BYTES = 8000 * FRAME_MS // 1000  # 160 bytes of 8 kHz mu-law
SILENT_8K = bytes(2 * ULAW_FRAME_BYTES)
ULAW_SILENCE = ulaw_encode(SILENT_8K)
ULAW_SILENCE_B64 = base64.b64encode(ULAW_SILENCE).decode("ascii")
# A carrier leg that wakes later than this re-anchors its clock instead of catching up.
CATCH_UP_S = 0.200


def new_sid(prefix: str) -> str:
    """A Twilio-shaped SID: two letters and 32 hex digits."""
    return prefix + secrets.token_hex(16)


@dataclass(frozen=True)
class StreamIds:
    """The identifiers Twilio puts in ``start``."""

    account_sid: str = field(default_factory=lambda: new_sid("AC"))
    call_sid: str = field(default_factory=lambda: new_sid("CA"))
    stream_sid: str = field(default_factory=lambda: new_sid("MZ"))


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
        egress: EgressPolicy | None = None,
        adaptive_playout: bool = False,
    ) -> None:
        if sample_rate not in (8000, 16_000):
            raise ValueError(f"a media stream leg carries 8000 or 16000 Hz, not {sample_rate}")
        self._egress = egress or EgressPolicy.local()
        # At 8 kHz the PCM is the line's own: nothing to resample either way.
        self._narrowband = sample_rate == 8000
        self.sample_rate = sample_rate
        self.url = url
        self.ids = ids
        self._next_frame = next_frame
        self._on_sent = on_sent
        self._wire_up = Upsampler()
        self._on_end = on_end
        self._custom = {k: str(v) for k, v in (custom_parameters or {}).items()}
        self._headers = dict(headers or {})
        self._ws: WsClient | None = None
        self._pump_handle: int | None = None
        self._sequence = 0
        self._chunk = 0
        self._sent_samples = 0
        self._down = Downsampler()
        self._up = Upsampler()
        self._tasks: set[asyncio.Task[None]] = set()
        self._ended = False
        self.marks_echoed: list[str] = []
        self.clears = 0
        # ``adaptive_playout``: a bridge's leg, whose playout is a carrier's jitter buffer
        # between two real-time senders (``Playout``'s ``adaptive``).
        self.playout = Playout(sample_rate, on_audio, self._echo_mark, adaptive=adaptive_playout)
        self._adaptive = adaptive_playout

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
        address = None
        if self._egress.checks:  # connect to the address the policy checked, no other
            host = urlsplit(self.url).hostname or ""
            address = (await self._egress.resolve(host))[0][1]
        try:
            self._ws = await connect_ws(
                self.url, self._handle, headers=self._headers, address=address
            )
        except WsHandshakeError as exc:
            if exc.status is not None and 300 <= exc.status < 400:
                raise ConnectError(
                    f"agent at {self.url} answered the media stream with a redirect "
                    f"(HTTP {exc.status}); loopcall does not follow redirects"
                ) from exc
            if exc.status is not None:
                raise ConnectError(
                    f"agent at {self.url} refused the media stream: HTTP {exc.status}"
                ) from exc
            # The handshake's complaint may quote the peer's headers: a controller
            # does not record what an arbitrary host answered (docs/security.md).
            detail = str(exc) if self._egress.quote_peer else "not a websocket handshake"
            raise ConnectError(f"could not reach agent at {self.url}: {detail}") from exc
        except (OSError, ValueError) as exc:
            raise ConnectError(f"could not reach agent at {self.url}: {exc}") from exc
        self._ws.closed.add_done_callback(self._on_closed)
        connected = {"event": "connected", "protocol": "Call", "version": "1.0.0"}
        self._sequence = 0
        self._ws.send_text(json.dumps(connected))
        self._ws.send_text(self._start_message())
        self.playout.begin()
        if self._adaptive:
            # A bridge's line plays each queued frame at its time, not at the next
            # tick of the shared pump (up to 20 ms later, forwarded that much late).
            self._spawn(self.playout.run())
        if self._next_frame is not None or not self._adaptive:
            # As the carrier, loopcall's own hiccups are caught up at once (the pump
            # runs missed ticks back to back, up to a real gap): the agent's stream
            # clock then stays true, and the taps record when each frame really left.
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
        """Send ``pcm16`` now (a leg without a clock of its own: a bridge's).

        It leaves as it was delivered, in messages of at most 20 ms: the far leg's
        playout delivers 20 ms frames, and where its line resumes after a pause, the
        silence that stood in before it as a shorter chunk.  Regrouping into whole
        frames would send that silence together with the next audio, late by up to
        a frame, and the receiver, which dates a message's first sample by its
        arrival, would hear everything after it that much later.
        """
        step = 2 * self.sample_rate * FRAME_MS // 1000
        for i in range(0, len(pcm16), step):
            if not self._send_frame(pcm16[i : i + step]):
                return

    def _on_tick(self, _due: float) -> None:
        """Each tick of the media pump: play what is due, send one frame (with a clock)."""
        if not self._adaptive:  # an adaptive line plays on its own (``Playout.run``)
            self.playout.step(time.monotonic())
        if self._next_frame is not None and not self._send_frame(self._next_frame()):
            self._stop_pump()

    def _stop_pump(self) -> None:
        if self._pump_handle is not None:
            media_pump().remove(self._pump_handle)
            self._pump_handle = None

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
        # The stream's time at this chunk's first sample (ms), as Twilio's timestamp.
        stamp_ms = self._sent_samples * 1000 // self.sample_rate
        self._sent_samples += len(pcm16) // 2
        # Twilio's media message, written out (json.dumps per frame is a cost at load);
        # every value is a decimal number, a SID or base64, none needs escaping.
        text = (
            f'{{"event":"media","sequenceNumber":"{self._sequence}",'
            f'"streamSid":"{self.ids.stream_sid}","media":{{"track":"inbound",'
            f'"chunk":"{chunk + 1}","timestamp":"{stamp_ms}","payload":"{payload}"}}}}'
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
            # Not its text: an agent may echo what it was sent (a credential) there.
            logger.warning(
                f"twilio stream: ignoring a message of {len(raw)} characters "
                "that is not Twilio JSON"
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
        spawn(coro, owner=self._tasks)
