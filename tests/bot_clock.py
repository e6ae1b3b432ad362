"""A stock bot's own account of its turns, from the audio at its edges: a second measurement.

The stock pipecat bots have no latency oracle, so the harness's figure is checked
against an independent one taken inside the bot, on the same monotonic clock
(the bot runs in the test's process): every audio frame the bot receives and
sends is stamped where it crosses the bot's edge, and the bot's latency for a
reply is the time its first voiced sample left minus the time the caller's last
voiced sample before it arrived.  "Voiced" is a sample above the harness's
-40 dBFS threshold; an utterance starts after ``PAUSE_MS`` of unvoiced audio
(the harness joins speech across shorter gaps).  The harness hears the same
reply one transport round trip later than the bot's own figure.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from audio.edges import DEFAULT_THRESHOLD_DBFS, threshold_amplitude

__all__ = ["BotClock"]

PAUSE_MS = 300.0
_THRESHOLD = threshold_amplitude(DEFAULT_THRESHOLD_DBFS)


def _voiced(pcm: bytes) -> np.ndarray:
    samples = np.frombuffer(pcm, dtype=np.int16).astype(np.int32)
    return np.flatnonzero(np.abs(samples) > _THRESHOLD)


@dataclass
class BotClock:
    """Stamps of the bot's voiced audio in and out; ``latencies()`` per reply."""

    last_heard: float | None = None  # the caller's latest voiced sample, when it arrived
    last_said: float | None = None  # the bot's latest voiced sample, when it left
    onsets: list[tuple[float, float | None]] = field(default_factory=list)  # (onset, heard)
    # Diagnostics: (time, samples, voiced sample index or -1) of every frame sent.
    frames: list[tuple[float, int, int]] = field(default_factory=list)

    def heard(self, pcm: bytes, t: float, rate: int) -> None:
        """A frame of the caller's audio whose first sample arrived at ``t``."""
        voiced = _voiced(pcm)
        if voiced.size:
            self.last_heard = t + float(voiced[-1]) / rate

    def said(self, pcm: bytes, t: float, rate: int) -> None:
        """A frame of the bot's audio whose first sample left at ``t``."""
        voiced = _voiced(pcm)
        self.frames.append((t, len(pcm) // 2, int(voiced[0]) if voiced.size else -1))
        if not voiced.size:
            return
        first = t + float(voiced[0]) / rate
        if self.last_said is None or first - self.last_said > PAUSE_MS / 1000.0:
            self.onsets.append((first, self.last_heard))
        self.last_said = t + float(voiced[-1]) / rate

    def latencies_ms(self) -> list[float | None]:
        """Per utterance of the bot's: onset minus the caller's last voiced sample before it."""
        return [
            None if heard is None or heard > onset else (onset - heard) * 1000.0
            for onset, heard in self.onsets
        ]
