"""From speech segments to turns with their latency, and the latency summary.

Stage: analysis, after the recording.  In: each side's speech segments
(``audio.edges.detect_speech`` on the recording's two channels, one clock).  Out:
the turn sequence with each agent reply's latency, and the distribution
summary.  Pure functions, tested on hand-made segments.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from audio.edges import Segment
from harness.models import LatencySummary, Role

__all__ = ["TimedTurn", "build_turns", "latency_summary"]


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
    minus the end of the persona turn right before it.  It is None for the
    greeting, for an agent turn that follows another agent turn, and for a reply
    that started before the persona had finished: that reply talked over the
    caller, an interruption (``dynamics.py`` counts it), never a negative latency.
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
        before = merged[i - 1] if i > 0 else None
        replies = run.role == "agent" and before is not None and before.role == "persona"
        if replies and before is not None and run.start >= before.end:
            latency = (run.start - before.end) * 1000.0 / sample_rate
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
