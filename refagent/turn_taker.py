"""The reference agent's turn-taking: endpointing and reply scheduling.

Stage: the middle of the agent (``transport.input() -> TurnTaker`` in its pipecat
pipeline; the light agent feeds ``TurnLogic`` straight from its transport).
In: the caller's audio (16 kHz mono, or 8 kHz on the light agent's phone lines).
Out: clips laid on the
agent's output ``Tape``, which ``TapeTrack`` plays on the caller's stream clock:
tape sample ``s`` leaves when the caller's sample ``s`` arrives.

A reply is laid so that its first voiced sample sits at ``v + D``, where ``v`` is
one past the caller's last voiced sample, so it leaves exactly ``D`` ms after that
sample arrived.  The end of the caller's speech is found with
``StreamingEndpointer`` (the rule the harness uses on its recording) with a
hangover shorter than ``D``.  Without a delay the reply goes out as soon as the
hangover has passed.  With an interruption delay ``X`` (the dynamics oracle) the
reply is laid at ``u + X`` instead, ``u`` the caller's first voiced sample, so it
talks over the caller from exactly ``X`` ms into each of its utterances.  In echo
mode the caller's audio is laid back on the tape ``ECHO_HOLD_MS`` later: the
harness's transport calibration subtracts that hold.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from loguru import logger
from pipecat.frames.frames import EndWorkerFrame, Frame, InputAudioRawFrame
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from audio.edges import DEFAULT_THRESHOLD_DBFS, threshold_amplitude
from audio.endpointer import StreamingEndpointer
from audio.g711 import phone_band, ulaw_decode, ulaw_encode
from audio.speech import Transcriber, Voice
from refagent.booking import BookingFlow
from refagent.loopcall_link import Handover, LoopcallLink
from refagent.playout import Clip, StreamClock, Tape
from refagent.script import AgentScript, ScriptCursor
from refagent.tracing import CallTrace
from runtime.tasks import spawn

__all__ = ["ECHO_HOLD_MS", "TimingLog", "TurnLogic", "TurnTaker", "TurnTakerConfig"]

ECHO_HOLD_MS = 100.0
ECHO_FLOOR = 100  # about -50 dBFS: codec and filter residue below it is not echoed
HANGUP_TAIL_MS = 400.0
HISTORY_FRAMES = 1500  # 30 s of 20 ms frames, for transcribing the caller
_closing: set[asyncio.Task[None]] = set()  # links letting their last reports leave


@dataclass(frozen=True)
class TurnTakerConfig:
    sample_rate: int = 16_000
    reply_delay_ms: float | None = None
    # The dynamics oracle: reply this long after the caller STARTS speaking.
    interrupt_after_ms: float | None = None
    hangover_ms: float = 600.0
    greeting_delay_ms: float = 300.0
    echo: bool = False
    # The caller hears us over an 8 kHz phone line: a reply's first voiced sample is
    # the first one above the threshold once band-limited (an "s" may not be).
    phone_line: bool = False


class TimingLog:
    """Appends one JSON line per reply to a file (the oracle's ground truth)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: dict[str, Any]) -> None:
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")


@dataclass
class _Reply:
    turn: int
    text: str
    caller_offset_epoch_ms: float | None
    late_ms: float
    caller_audio: np.ndarray | None = None
    caller_onset_epoch_ms: float | None = None


class TurnLogic:
    """The agent's turns without a pipeline: greet, endpoint the caller, lay replies, hang up.

    ``feed(samples, now)`` takes each chunk of the caller's audio with its arrival
    time and returns True once, when the goodbye has played out and the call
    should end.  The pipecat ``TurnTaker`` wraps it; the light agent (no pipeline)
    calls it straight from the transport.
    """

    def __init__(
        self,
        *,
        script: AgentScript,
        voice: Voice,
        config: TurnTakerConfig,
        transcriber: Transcriber | None = None,
        timing_log: TimingLog | None = None,
    ) -> None:
        self._config = config
        self._sr = config.sample_rate
        self._script = script
        self._cursor = ScriptCursor(script)
        self._voice = voice
        self._transcriber = transcriber
        self._timing_log = timing_log
        hangover = config.hangover_ms
        if config.reply_delay_ms is not None:
            # The end of speech must be decided before the reply is due.
            hangover = min(hangover, max(60.0, config.reply_delay_ms - 120.0))
        self._endpointer = StreamingEndpointer(self._sr, hangover_ms=hangover)
        self.clock = StreamClock(self._sr)
        self.tape = Tape()
        self._received = 0
        self._history: deque[tuple[int, np.ndarray]] = deque(maxlen=HISTORY_FRAMES)
        self._turn = 0
        self._cut_into: int | None = None  # the caller onset last interrupted
        self._greeted = False
        self._hanging_up = False
        self._ended = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._epoch_offset = time.time() - time.monotonic()
        # The harness's run id, when the call carried it (timing log entries name it).
        self.run_id: str | None = None
        self.trace = CallTrace(None)  # its spans, once the call says its run (--otlp-endpoint)
        self.link: LoopcallLink | None = None
        self.flow = BookingFlow(None, voice, self._sr) if script.name == "dental" else None

    def attach(self, handover: Handover) -> None:
        """What the call carried about its run: its id, tools URL and event webhook."""
        self.run_id = handover.run_id
        self.trace = CallTrace(handover.run_id)
        if handover.tools_url or handover.events_url:
            self.link = LoopcallLink(handover)
            if self.flow is not None:
                self.flow.link = self.link

    @property
    def sample_rate(self) -> int:
        return self._sr

    def close(self) -> None:
        self.trace.end()
        for task in self._tasks:
            task.cancel()
        if self.flow is not None:
            self.flow.close()
        if self.link is not None:
            spawn(self.link.close(), owner=_closing)
            self.link = None

    def feed(self, samples: np.ndarray, now: float) -> bool:
        """The caller's next chunk, arrived at ``now``; True once the call should end."""
        start = self._received
        self._received += samples.size
        self.clock.observe(now, start)
        if self._config.echo:
            # Only sound is echoed: between bursts the line is quiet, as after an utterance.
            if samples.size and int(np.abs(samples.astype(np.int32)).max()) > ECHO_FLOOR:
                self.tape.lay(Clip(start + self._ms(ECHO_HOLD_MS), samples))
            return False
        if self._transcriber is not None:
            self._history.append((start, samples))
        if not self._greeted and self.tape.read_position > 0:
            # Greet once our audio is actually flowing, so no word is lost to call setup.
            self._greeted = True
            due = self.tape.read_position + self._ms(self._config.greeting_delay_ms)
            self._schedule(self._script.greeting, None, due)
            if self.flow is not None:
                self.flow.greeted()
        utterance = self._endpointer.push(samples)
        if self._config.interrupt_after_ms is not None:
            self._maybe_cut_in()
        elif utterance is not None and not self._hanging_up:
            self._on_caller_done(utterance.start, utterance.end)
        tail = self._ms(HANGUP_TAIL_MS)
        if self._hanging_up and not self._ended and self.tape.read_position >= self.tape.end + tail:
            self._ended = True
            logger.info("reference agent: script finished, hanging up")
            return True
        return False

    def _maybe_cut_in(self) -> None:
        """Interruption oracle: once per caller utterance, lay the reply X ms after its onset."""
        onset = self._endpointer.onset
        if not self._endpointer.speaking or onset is None or onset == self._cut_into:
            return
        self._cut_into = onset
        text = self._cursor.next_reply()
        if text is None or self._hanging_up:
            return
        assert self._config.interrupt_after_ms is not None
        due = onset + self._ms(self._config.interrupt_after_ms)
        self._schedule(text, None, due, self._epoch_ms(self.clock.time_of(onset)))
        if self._cursor.finished and self._script.hang_up_after_last:
            self._hanging_up = True

    def _on_caller_done(self, onset: int, offset: int) -> None:
        text = self._cursor.next_reply()
        if text is None:
            return
        position = self._cursor.position - 1
        if self.flow is not None:  # a line it has ready, never one it must wait for
            text = self.flow.reply(position, text)
        if self._config.reply_delay_ms is not None:
            due = offset + self._ms(self._config.reply_delay_ms)
        else:
            due = self._received
        reply = self._schedule(text, self._epoch_ms(self.clock.time_of(offset)), due)
        if self._transcriber is not None:
            # Transcribed once the reply is out: the words only go to the log, and
            # Whisper's CPU burst must not land on the moment the reply is due.
            reply.caller_audio = self._slice(onset, offset)
        if self._cursor.finished and self._script.hang_up_after_last:
            self._hanging_up = True
        if self.flow is not None:
            self.flow.caller_done(position)

    def _schedule(
        self,
        text: str,
        caller_offset_ms: float | None,
        due: int,
        caller_onset_ms: float | None = None,
    ) -> _Reply:
        """Lay ``text`` so that its first voiced sample sits at ``due`` (or as soon after)."""
        audio = self._voice.synthesize(text, self._sr)
        # The voice's leading silence is not part of the delay.
        line = _on_phone_line(audio, self._sr) if self._config.phone_line else audio
        lead = _first_voiced(line)
        earliest = max(self.tape.end, self.tape.read_position + self._ms(20))
        start = due - lead
        if start < earliest:
            # Too close to the due time for the whole lead-in: drop some of its silence.
            cut = min(earliest - start, lead)
            audio, lead, start = audio[cut:], lead - cut, start + cut
        start = max(start, earliest)
        late_ms = (start + lead - due) * 1000.0 / self._sr
        timed = caller_offset_ms is not None and self._config.reply_delay_ms
        if late_ms > 0 and (timed or caller_onset_ms is not None):
            logger.warning(f"reference agent: reply {self._turn} goes out {late_ms:.0f} ms late")
        reply = _Reply(self._turn, text, caller_offset_ms, late_ms, None, caller_onset_ms)
        self._turn += 1

        def on_onset(t: float) -> None:
            self._spawn(self._log(reply, self._epoch_ms(t)))

        self.tape.lay(Clip(start, audio, lead=lead, on_onset=on_onset))
        return reply

    async def _log(self, reply: _Reply, onset_epoch_ms: float) -> None:
        # Off the frame path (this task, not the tape's onset callback): its spans first.
        self.trace.reply(reply.turn, reply.caller_offset_epoch_ms, onset_epoch_ms)
        heard: str | None = None
        if reply.caller_audio is not None and self._transcriber is not None:
            try:
                heard = await self._transcriber.transcribe_async(reply.caller_audio, self._sr)
            except Exception as exc:  # STT trouble must not end the call
                logger.warning(f"reference agent: STT failed: {exc}")
        logger.info(f"reference agent reply {reply.turn}: {reply.text!r} (heard {heard!r})")
        if self.flow is not None:
            self.flow.heard(reply.turn, heard)
        if self._timing_log is not None:
            self._timing_log.write(
                {
                    "turn": reply.turn,
                    "caller_offset_epoch_ms": reply.caller_offset_epoch_ms,
                    "caller_onset_epoch_ms": reply.caller_onset_epoch_ms,
                    "reply_onset_epoch_ms": onset_epoch_ms,
                    "run_id": self.run_id,
                    "text": reply.text,
                    "heard": heard,
                    "reply_delay_ms": self._config.reply_delay_ms,
                    "interrupt_after_ms": self._config.interrupt_after_ms,
                    "late_ms": reply.late_ms,
                }
            )

    def _epoch_ms(self, t: float) -> float:
        """A monotonic time as epoch ms (timing is monotonic; only the log speaks epoch)."""
        return (t + self._epoch_offset) * 1000.0

    def _ms(self, ms: float) -> int:
        return int(round(ms * self._sr / 1000.0))

    def _slice(self, start: int, end: int) -> np.ndarray:
        parts = [
            chunk[max(0, start - pos) : max(0, end - pos)]
            for pos, chunk in self._history
            if pos < end and pos + chunk.size > start
        ]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)

    def _spawn(self, coro: Any) -> None:
        spawn(coro, owner=self._tasks)


class TurnTaker(FrameProcessor):
    """``TurnLogic`` as a pipecat processor: caller audio in, ``EndWorkerFrame`` at the end."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__()
        self.logic = TurnLogic(**kwargs)
        self._sr = self.logic.sample_rate

    @property
    def tape(self) -> Tape:
        return self.logic.tape

    @property
    def clock(self) -> StreamClock:
        return self.logic.clock

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            now = time.monotonic()
            if frame.num_channels != 1 or frame.sample_rate != self._sr:
                raise ValueError(f"TurnTaker wants {self._sr} Hz mono, got {frame.sample_rate} Hz")
            if self.logic.feed(np.frombuffer(frame.audio, dtype=np.int16), now):
                await self.push_frame(EndWorkerFrame(reason="agent hung up after goodbye"))
        else:
            await self.push_frame(frame, direction)

    async def cleanup(self) -> None:
        self.logic.close()
        await super().cleanup()


def _on_phone_line(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """``audio`` as the caller hears it: band-limited at 16 kHz, mu-law quantized at 8 kHz."""
    pcm = audio.astype(np.int16).tobytes()
    if sample_rate == 8000:
        return np.frombuffer(ulaw_decode(ulaw_encode(pcm)), dtype=np.int16)
    return np.frombuffer(phone_band(pcm), dtype=np.int16)


def _first_voiced(audio: np.ndarray) -> int:
    threshold = threshold_amplitude(DEFAULT_THRESHOLD_DBFS)
    above = np.flatnonzero(np.abs(audio.astype(np.int32)) > threshold)
    return int(above[0]) if above.size else 0
