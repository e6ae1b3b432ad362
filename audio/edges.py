"""Speech edges: where speech starts and ends in int16 samples, to the sample.

A primitive below every layer: the harness finds the turns of a recording with
it, and the lean caller and the reference agent end utterances with the same
rule as audio streams in (``audio/endpointer.py``), so the latency oracle compares
like with like.

A 5 ms window is voiced when its peak exceeds ``threshold_dbfs``; voiced windows
closer than ``hangover_ms`` join one segment; the segment's edges are then
refined to the first and last sample whose magnitude exceeds the threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "DEFAULT_THRESHOLD_DBFS",
    "WINDOW_MS",
    "Segment",
    "detect_speech",
    "threshold_amplitude",
]

DEFAULT_THRESHOLD_DBFS = -40.0
WINDOW_MS = 5


def threshold_amplitude(threshold_dbfs: float) -> float:
    """Peak int16 amplitude that corresponds to ``threshold_dbfs``."""
    return float(32768.0 * 10 ** (threshold_dbfs / 20.0))


@dataclass(frozen=True)
class Segment:
    """A stretch of speech: ``start`` is its first voiced sample, ``end`` one past its last."""

    start: int
    end: int

    def ms(self, sample_rate: int) -> tuple[float, float]:
        return self.start * 1000.0 / sample_rate, self.end * 1000.0 / sample_rate


def detect_speech(
    samples: np.ndarray,
    sample_rate: int,
    *,
    threshold_dbfs: float = DEFAULT_THRESHOLD_DBFS,
    hangover_ms: float = 300.0,
    min_speech_ms: float = 40.0,
) -> list[Segment]:
    """Find speech segments in mono int16 ``samples`` with sample-precise edges."""
    x = np.abs(np.asarray(samples, dtype=np.int32))
    if x.size == 0:
        return []
    thr = threshold_amplitude(threshold_dbfs)
    win = max(1, sample_rate * WINDOW_MS // 1000)
    n_win = -(-x.size // win)
    padded = np.zeros(n_win * win, dtype=np.int32)
    padded[: x.size] = x
    voiced = padded.reshape(n_win, win).max(axis=1) > thr
    idx = np.flatnonzero(voiced)
    if idx.size == 0:
        return []
    hang = max(1, int(round(hangover_ms / WINDOW_MS)))
    breaks = np.flatnonzero(np.diff(idx) > hang)
    starts = np.concatenate(([idx[0]], idx[breaks + 1]))
    ends = np.concatenate((idx[breaks], [idx[-1]]))
    min_windows = max(1, int(round(min_speech_ms / WINDOW_MS)))
    segments: list[Segment] = []
    for w0, w1 in zip(starts, ends, strict=True):
        if int(np.count_nonzero(voiced[w0 : w1 + 1])) < min_windows:
            continue
        lo, hi = int(w0) * win, min(x.size, (int(w1) + 1) * win)
        above = np.flatnonzero(x[lo:hi] > thr)
        segments.append(Segment(lo + int(above[0]), lo + int(above[-1]) + 1))
    return segments
