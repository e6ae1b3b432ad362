"""Transport round-trip calibration: how much of a measured latency is the wire's.

Stage: before each conversation.  The harness owns an echo endpoint built exactly
like the reference agent (``refagent.echo``: the same transports, the same
stream-clocked playout) that plays the caller's audio back ``ECHO_HOLD_MS`` later.  A short call
to it sends tone bursts; the recorder (the same code that times the real call)
finds each burst's onset going out and coming back, and the round trip minus the
hold is the transport's share: codec, jitter buffers, resampling and the two
stacks.  It is stored as ``metrics.transport_rtt_ms``, apart from the agent's
own latency.
"""

from __future__ import annotations

import asyncio
import statistics
from dataclasses import dataclass

import numpy as np

from audio.edges import detect_speech
from harness.recording import Recorder
from refagent.echo import ECHO_HOLD_MS, EchoEndpoint
from runtime.tasks import cancel_and_wait, spawn
from telephony import Call, CallSetup, ConnectError, Target, open_call

__all__ = ["Calibration", "EchoCalibrator"]

BURST_MS = 80
BURST_GAP_MS = 220
# Long enough for the echo end's stream clock to settle on the least-delayed frames.
LEAD_IN_MS = 1000
TAIL_MS = 600


@dataclass(frozen=True)
class Calibration:
    """Round trips (ms) of the transport alone, from ``n`` echoed bursts."""

    rtt_ms: float
    jitter_ms: float
    samples_ms: tuple[float, ...]


def _burst(sample_rate: int) -> np.ndarray:
    n = sample_rate * BURST_MS // 1000
    t = np.arange(n) / sample_rate
    return (np.sin(2 * np.pi * 1000.0 * t) * 0.25 * 32767).astype(np.int16)


class EchoCalibrator:
    """An in-process echo endpoint and the calls that measure round trips through it."""

    def __init__(self, *, bursts: int = 5, light: bool = False) -> None:
        self._bursts = bursts
        # light: the echo end is built like the light agent (no pipeline; phone lines
        # at 8 kHz), to calibrate the lean caller's calls.
        self._echo = EchoEndpoint(light=light)

    async def start(self) -> None:
        await self._echo.start()

    async def close(self) -> None:
        await self._echo.close()

    async def __aenter__(self) -> EchoCalibrator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def measure(self, target: Target, *, use_line_rate: bool = False) -> Calibration:
        """Echo ``bursts`` tones through the endpoint over ``target``'s stack; the round trip.

        A phone call (``tel:``) is measured over a media stream, the part of its path
        that is on this machine.  ``use_line_rate`` measures a phone line's call at
        the line's own rate, as the lean caller places it.
        """
        echo = await self._echo.target_for(target)
        call = open_call(echo, CallSetup(use_line_rate=use_line_rate))
        recorder = Recorder(call.sample_rate)
        call.add_tap(recorder)
        rate = call.sample_rate
        try:
            await call.connect(timeout=10)
            reader = _Reader(call)
            async with reader:
                await reader.until(LEAD_IN_MS * rate // 1000)
                burst = _burst(rate)
                gap = np.zeros(rate * BURST_GAP_MS // 1000, dtype=np.int16)
                for _ in range(self._bursts):
                    await call.send_audio(np.concatenate((burst, gap)).tobytes())
                await call.wait_sent()
                # Everything sent is back once the agent side has played as much, plus the hold.
                sent_samples = sum(len(pcm) for _, pcm in recorder.sent) // 2
                await reader.until(sent_samples + int((ECHO_HOLD_MS + TAIL_MS) * rate / 1000))
        finally:
            await call.hangup()
        if call.connected_at is None:
            raise ConnectError("calibration call never connected")
        recording = recorder.recording(call.connected_at)
        sent = detect_speech(recording.persona, rate, hangover_ms=40, min_speech_ms=20)
        back = detect_speech(recording.agent, rate, hangover_ms=40, min_speech_ms=20)
        if len(sent) != self._bursts or len(back) != self._bursts:
            raise ConnectError(
                f"calibration echo lost bursts: sent {len(sent)}, got back {len(back)}"
            )
        rtts = [
            (b.start - s.start) * 1000.0 / rate - ECHO_HOLD_MS
            for s, b in zip(sent, back, strict=True)
        ]
        return Calibration(
            rtt_ms=round(statistics.median(rtts), 2),
            jitter_ms=round(max(rtts) - min(rtts), 2),
            samples_ms=tuple(round(r, 2) for r in rtts),
        )


class _Reader:
    """Consumes a call's incoming audio in the background and counts the samples."""

    def __init__(self, call: Call) -> None:
        self._call = call
        self.samples = 0
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> _Reader:
        self._task = spawn(self._run(), name="calibration-reader")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await cancel_and_wait(self._task)

    async def _run(self) -> None:
        while (pcm := await self._call.recv_audio()) is not None:
            self.samples += len(pcm) // 2
            self._arrived.set()
        self._arrived.set()

    async def until(self, samples: int) -> None:
        """Wait until ``samples`` have arrived in all (raise if the call ends first)."""
        while self.samples < samples:
            if self._call.state == "ended":
                raise ConnectError("calibration call ended early")
            self._arrived.clear()
            await self._arrived.wait()
