"""Pure functions from recorded samples to timings: speech segments, turns, latency.

Stage: after the recorder, before scoring.  Input is the stereo recording's two
channels (int16, one clock); output is speech segments with sample-precise edges,
the turn sequence with per-turn latency, and summaries.  Nothing here knows about
calls or pipecat, so every function is tested on hand-made audio.

Speech edges come from the samples themselves: a 5 ms window is voiced when its
peak exceeds ``threshold_dbfs``; voiced windows closer than ``hangover_ms`` join
one segment; the segment's edges are then refined to the first and last sample
whose magnitude exceeds the threshold.  The reference agent's endpointer uses the
same definition (``StreamingEndpointer``), so the oracle compares like with like.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from harness.models import LatencySummary, Role

__all__ = [
    "DEFAULT_THRESHOLD_DBFS",
    "Segment",
    "StreamingEndpointer",
    "TimedTurn",
    "build_turns",
    "detect_speech",
    "latency_summary",
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


@dataclass(frozen=True)
class TimedTurn:
    """A turn located on the recording, before its text is known."""

    role: Role
    start: int
    end: int
    latency_ms: float | None


def build_turns(
    persona: Sequence[Segment],
    agent: Sequence[Segment],
    sample_rate: int,
    *,
    merge_gap_ms: float = 1500.0,
) -> list[TimedTurn]:
    """Merge each side's segments into turns and time every agent reply.

    A turn is a run of one side's segments that the other side does not speak
    into, with gaps under ``merge_gap_ms``.  An agent turn's latency is its onset
    minus the end of the persona turn right before it (negative when the agent
    started while the persona was still speaking); it is None for the greeting
    and for an agent turn that follows another agent turn.
    """
    tagged: list[tuple[Role, Segment]] = sorted(
        [("persona", s) for s in persona] + [("agent", s) for s in agent],
        key=lambda item: (item[1].start, item[0]),
    )
    gap = merge_gap_ms * sample_rate / 1000.0
    merged: list[_Run] = []
    for role, seg in tagged:
        last = merged[-1] if merged else None
        if last is not None and last.role == role and seg.start - last.end <= gap:
            last.end = max(last.end, seg.end)
        else:
            merged.append(_Run(role, seg.start, seg.end))
    turns: list[TimedTurn] = []
    for i, run in enumerate(merged):
        latency: float | None = None
        if run.role == "agent" and i > 0 and merged[i - 1].role == "persona":
            latency = (run.start - merged[i - 1].end) * 1000.0 / sample_rate
        turns.append(TimedTurn(run.role, run.start, run.end, latency))
    return turns


@dataclass
class _Run:
    role: Role
    start: int
    end: int


def latency_summary(values: Sequence[float]) -> LatencySummary:
    """n, min, percentiles (linear interpolation), max and mean, rounded to 0.1 ms."""
    if not values:
        return LatencySummary()
    arr = np.asarray(values, dtype=float)
    p50, p90, p95, p99 = np.percentile(arr, [50, 90, 95, 99])
    return LatencySummary(
        n=int(arr.size),
        min=round(float(arr.min()), 1),
        p50=round(float(p50), 1),
        p90=round(float(p90), 1),
        p95=round(float(p95), 1),
        p99=round(float(p99), 1),
        max=round(float(arr.max()), 1),
        mean=round(float(arr.mean()), 1),
    )


class StreamingEndpointer:
    """``detect_speech``'s rule applied as audio streams in, for a live agent or caller.

    Feed int16 chunks with ``push``; once an utterance has ended (no voiced window
    for ``hangover_ms``) it returns the utterance as a ``Segment`` in absolute
    samples, else None.  ``speaking`` tells whether an utterance is open.  It runs
    on every 20 ms frame of every call, so a frame costs a few vectorised numpy
    operations; the exact first and last voiced samples are looked up only at an
    utterance's edges.
    """

    def __init__(
        self,
        sample_rate: int,
        *,
        threshold_dbfs: float = DEFAULT_THRESHOLD_DBFS,
        hangover_ms: float = 300.0,
        min_speech_ms: float = 40.0,
    ) -> None:
        thr = threshold_amplitude(threshold_dbfs)
        # |x| > thr for int16 x, without widening: x >= hi or x <= -hi.
        self._hi = int(np.floor(thr)) + 1
        self._win = max(1, sample_rate * WINDOW_MS // 1000)
        # Counted in whole windows, exactly as ``detect_speech`` counts them.
        self._hang_windows = max(1, int(round(hangover_ms / WINDOW_MS)))
        self._min_windows = max(1, int(round(min_speech_ms / WINDOW_MS)))
        self._pending = np.zeros(0, dtype=np.int16)
        self.position = 0  # samples consumed into whole windows
        self.speaking = False
        self.onset: int | None = None
        self._voiced_windows = 0
        # The latest voiced window (its samples and first sample position): the
        # utterance's last voiced sample is in it, looked up once the utterance ends.
        self._last_window: np.ndarray | None = None
        self._last_base = 0
        self._window_index = 0
        self._last_voiced_window = 0

    def _voiced(self, window: np.ndarray) -> np.ndarray:
        return np.flatnonzero((window >= self._hi) | (window <= -self._hi))

    def push(self, chunk: np.ndarray) -> Segment | None:
        data = chunk.astype(np.int16, copy=False)
        if self._pending.size:
            data = np.concatenate((self._pending, data))
        win = self._win
        n_full = data.size // win
        self._pending = data[n_full * win :].copy()
        if n_full == 0:
            return None
        block = data[: n_full * win]
        if block.max() < self._hi and block.min() > -self._hi:
            return self._silent(n_full)
        windows = block.reshape(n_full, win)
        loud = (windows.max(axis=1) >= self._hi) | (windows.min(axis=1) <= -self._hi)
        ended: Segment | None = None
        for w, voiced in enumerate(loud.tolist()):
            base = self.position
            self.position += win
            index = self._window_index
            self._window_index += 1
            if voiced:
                self._last_voiced_window = index
                if self._voiced_windows == 0:
                    self.onset = base + int(self._voiced(windows[w])[0])
                self._voiced_windows += 1
                self._last_window = windows[w]
                self._last_base = base
                if self._voiced_windows >= self._min_windows:
                    self.speaking = True
            elif (
                self._last_window is not None
                and index - self._last_voiced_window >= self._hang_windows
            ):
                ended = self._close() or ended
        return ended

    def _silent(self, n_windows: int) -> Segment | None:
        """``n_windows`` quiet windows at once (the common case, between utterances)."""
        self.position += n_windows * self._win
        self._window_index += n_windows
        # The loop closes at the first quiet window ``hang`` windows past the last voiced
        # one; it has not come before this chunk (it would have closed then).
        if (
            self._last_window is not None
            and self._last_voiced_window + self._hang_windows < self._window_index
        ):
            return self._close()
        return None

    def _close(self) -> Segment | None:
        """The hangover ran out: the open utterance (if it was long enough) ends."""
        ended: Segment | None = None
        if self.speaking and self.onset is not None and self._last_window is not None:
            end = self._last_base + int(self._voiced(self._last_window)[-1]) + 1
            ended = Segment(self.onset, end)
        self.speaking = False
        self._voiced_windows = 0
        self._last_window = None
        self.onset = None
        return ended
