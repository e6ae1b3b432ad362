"""The stock bot's spans, captured in-process: real pipecat, no network call.

The bot of ``traced_bot.py`` (pipecat's OpenAI STT, LLM with a function, TTS;
tracing on) runs between two small transports: ``CallerLine`` plays a caller's
recorded line into it in real time (20 ms frames, then silence), as a network
input would, and ``Loudspeaker`` plays its audio out in real time, as a sound
device would, noting when each utterance starts.  Pipecat's spans leave through
OpenTelemetry's OTLP/HTTP exporter for a ``/v1/traces`` route, as they would for
a run.  The caller's line end and the loudspeaker's onsets are "what the ear
heard" on the same wall clock, so ``join`` is tested on real spans without a
recording.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import numpy as np
from fastapi import FastAPI, Request
from pipecat.frames.frames import (
    BotStoppedSpeakingFrame,
    CancelFrame,
    EndFrame,
    InputAudioRawFrame,
    LLMRunFrame,
    OutputAudioRawFrame,
    StartFrame,
)
from pipecat.observers.base_observer import BaseObserver, FramePushed
from pipecat.processors.frame_processor import FrameDirection
from pipecat.transports.base_input import BaseInputTransport
from pipecat.transports.base_output import BaseOutputTransport
from pipecat.transports.base_transport import TransportParams
from pipecat.workers.runner import WorkerRunner
from traced_bot import export_spans_to, order_bot, serve_app, stop_exporting

from audio.speech import get_voice
from harness.ingest.otel import ALL_RUNS, UNTRACED, Span, TraceDesk, traces_router
from harness.models import Turn

RATE = 16_000
FRAME = RATE // 50  # 20 ms


class CallerLine(BaseInputTransport):
    """Plays ``audio`` once ``go`` is set, then silence, in real time."""

    def __init__(self, audio: np.ndarray, go: asyncio.Event) -> None:
        super().__init__(TransportParams(audio_in_enabled=True, audio_in_sample_rate=RATE))
        self._audio = audio
        self._go = go
        self.speech_end_epoch: float | None = None
        self._player: asyncio.Task[None] | None = None

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        await self.set_transport_ready(frame)
        self._player = self.create_task(self._play())

    async def stop(self, frame: EndFrame) -> None:
        await self._stop_playing()
        await super().stop(frame)

    async def cancel(self, frame: CancelFrame) -> None:
        await self._stop_playing()
        await super().cancel(frame)

    async def _stop_playing(self) -> None:
        if self._player is not None:
            await self.cancel_task(self._player)
            self._player = None

    async def _play(self) -> None:
        silence = np.zeros(FRAME, dtype=np.int16)
        await self._push_for(silence, 0.5)  # the line is open before anyone speaks
        await self._go.wait()
        started = time.monotonic()
        for i in range(0, self._audio.size, FRAME):
            chunk = self._audio[i : i + FRAME]
            await self._push(np.pad(chunk, (0, FRAME - chunk.size)))
            await asyncio.sleep(max(0.0, started + (i + FRAME) / RATE - time.monotonic()))
        self.speech_end_epoch = time.time()
        await self._push_for(silence, 3600.0)

    async def _push_for(self, chunk: np.ndarray, seconds: float) -> None:
        started = time.monotonic()
        n = 0
        while time.monotonic() - started < seconds:
            await self._push(chunk)
            n += 1
            await asyncio.sleep(max(0.0, started + n * FRAME / RATE - time.monotonic()))

    async def _push(self, chunk: np.ndarray) -> None:
        await self.push_audio_frame(
            InputAudioRawFrame(audio=chunk.tobytes(), sample_rate=RATE, num_channels=1)
        )


class Loudspeaker(BaseOutputTransport):
    """Plays the bot's audio in real time; notes each utterance's first sample (wall clock)."""

    def __init__(self) -> None:
        super().__init__(TransportParams(audio_out_enabled=True, audio_out_sample_rate=24_000))
        self.onsets: list[float] = []
        self._free_at = 0.0

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        await self.set_transport_ready(frame)

    async def write_audio_frame(self, frame: OutputAudioRawFrame) -> bool:
        now = time.monotonic()
        audible = np.abs(np.frombuffer(frame.audio, dtype=np.int16)).max(initial=0) > 300
        if audible and (not self.onsets or now > self._free_at + 1.0):
            self.onsets.append(time.time())
        if audible:
            self._free_at = max(now, self._free_at) + len(frame.audio) / 2 / frame.sample_rate
        seconds = len(frame.audio) / 2 / frame.sample_rate
        await asyncio.sleep(seconds)  # a sound device takes the audio at its own pace
        return True


class _BotStops(BaseObserver):
    """Sets ``greeted`` once the bot's first utterance has stopped, ``answered`` its second."""

    def __init__(self, speaker: Loudspeaker) -> None:
        super().__init__()
        self._speaker = speaker
        self.greeted = asyncio.Event()
        self.answered = asyncio.Event()
        self._seen: set[int] = set()

    async def on_push_frame(self, data: FramePushed) -> None:
        frame = data.frame
        if (
            isinstance(frame, BotStoppedSpeakingFrame)
            and data.source is self._speaker
            and data.direction == FrameDirection.DOWNSTREAM
            and frame.id not in self._seen
        ):
            self._seen.add(frame.id)
            (self.answered if self.greeted.is_set() else self.greeted).set()


@dataclass(frozen=True)
class Captured:
    spans: list[Span]
    turns: list[Turn]
    origin_epoch_s: float


async def capture(cloud_url: str, line: str, run_id: str = "run-in-process") -> Captured:
    """Greeting, the caller's ``line``, the bot's answer: the spans and the "heard" turns.

    The spans travel as they would to a run: pipecat's ``BatchSpanProcessor`` and
    OpenTelemetry's OTLP/HTTP exporter, to a ``/v1/traces`` route on 127.0.0.1 and the
    ``TraceDesk`` behind it, which the run's id in ``conversation.id`` joins them to.
    """
    desk = TraceDesk()
    desk.open(run_id, expect=True)
    ingest = FastAPI(telemetry=UNTRACED)
    ingest.include_router(traces_router(desk.accept, _loopback))
    async with serve_app(ingest) as ingest_at:
        export_spans_to(f"http://{ingest_at}/v1/traces")
        turns, origin = await _converse(cloud_url, line, run_id)
        spans = await desk.collect(run_id, grace_s=10.0)
    assert desk.dropped == 0
    return Captured(spans, turns, origin)


async def _loopback(_request: Request) -> str:
    return ALL_RUNS


async def _converse(cloud_url: str, line: str, run_id: str) -> tuple[list[Turn], float]:
    audio = await get_voice("flite:slt").synthesize_async(line, RATE)
    speaker = Loudspeaker()
    stops = _BotStops(speaker)
    caller = CallerLine(np.asarray(audio, dtype=np.int16), stops.greeted)
    worker = order_bot(cloud_url, {"loopcall_run_id": run_id}, caller, speaker)
    worker.add_observer(stops)
    origin = time.time()
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    running = asyncio.create_task(runner.run())
    try:
        await worker.queue_frames([LLMRunFrame()])
        await asyncio.wait_for(stops.answered.wait(), 60.0)
    finally:
        await worker.cancel()
        await running
        await asyncio.to_thread(stop_exporting)  # as the reference agent does after a call
    return _heard(caller, speaker, origin, audio.size / RATE), origin


def _heard(caller: CallerLine, speaker: Loudspeaker, origin: float, said_s: float) -> list[Turn]:
    assert caller.speech_end_epoch is not None and len(speaker.onsets) >= 2
    ms = [round((t - origin) * 1000.0, 1) for t in speaker.onsets[:2]]
    persona_end = round((caller.speech_end_epoch - origin) * 1000.0, 1)
    return [
        Turn(role="agent", text="greeting", start_ms=ms[0], end_ms=ms[0] + 1.0),
        Turn(role="persona", text="line", start_ms=persona_end - said_s * 1000, end_ms=persona_end),
        Turn(
            role="agent",
            text="answer",
            start_ms=ms[1],
            end_ms=ms[1] + 1.0,
            latency_ms=round(ms[1] - persona_end, 1),
        ),
    ]
