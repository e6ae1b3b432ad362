"""The Cekura view's turn-taking metrics, from ``metrics.dynamics``.

Part of ``views/cekura.py``'s result: per run, numeric metrics named as Cekura
names them ("AI Interrupting User", "User Interrupting AI", "Talk Ratio", "Words
Per Minute"); across runs, their medians.  A run without dynamics (its call
failed before a recording) contributes nothing.  Definitions: docs/dynamics.md.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Any

from harness.models import Dynamics, Run

__all__ = ["run_metrics", "summary_metrics"]

Figure = Callable[[Dynamics], float | None]

# (id, Cekura's name, the figure, what it is)
METRICS: tuple[tuple[str, str, Figure, str], ...] = (
    (
        "ai_interrupting_user",
        "AI Interrupting User",
        lambda d: float(len(d.agent_interruptions)),
        "times the agent started while the caller was speaking",
    ),
    (
        "user_interrupting_ai",
        "User Interrupting AI",
        lambda d: float(len(d.persona_interruptions)),
        "times the caller started while the agent was speaking",
    ),
    (
        "talk_ratio",
        "Talk Ratio",
        lambda d: d.talk_ratio,
        "agent speech time / both sides' speech time",
    ),
    (
        "words_per_minute",
        "Words Per Minute",
        lambda d: d.agent_words_per_minute,
        "the agent's words / its speech time, in minutes",
    ),
    (
        "longest_silence",
        "Longest Silence",
        lambda d: d.longest_silence_ms,
        "the longest stretch with neither side speaking, in ms",
    ),
)


def run_metrics(run: Run) -> list[dict[str, Any]]:
    """The run's turn-taking figures as Cekura numeric metrics (none without dynamics)."""
    dynamics = run.metrics.dynamics
    if dynamics is None:
        return []
    out = []
    for metric_id, name, figure, explanation in METRICS:
        value = figure(dynamics)
        if value is not None:
            out.append(
                {
                    "id": metric_id,
                    "name": name,
                    "type": "numeric",
                    "score": value,
                    "explanation": explanation,
                    "extra": {"percentiles": {"p50": value}},
                }
            )
    return out


def summary_metrics(runs: Sequence[Run]) -> list[dict[str, Any]]:
    """Each figure's median over the runs that measured it, as ``numeric_metrics`` entries."""
    out = []
    for _id, name, figure, _explanation in METRICS:
        values = [
            v for r in runs if r.metrics.dynamics and (v := figure(r.metrics.dynamics)) is not None
        ]
        p50 = statistics.median(values) if values else None
        out.append({"name": name, "type": "numeric", "value": p50, "percentiles": {"p50": p50}})
    return out
