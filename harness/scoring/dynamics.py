"""Checks on how the conversation flowed: a bound on a figure of ``metrics.dynamics``.

A pure function of ``CallFacts``: the figure named by the criterion
(``Dynamics.figure``) held to its [min, max], with a sentence a person can read
and the evidence behind the figure: each interruption's moment and turns, each
dead-air stretch, the turns whose words set a speech rate.
"""

from __future__ import annotations

from harness.models import Criterion, Dynamics, Evidence, Interruption
from harness.scoring.facts import CallFacts, Verdict
from harness.scoring.figures import ms

__all__ = ["check_dynamics"]

_LABEL = {
    "agent_interruptions": "agent interruptions",
    "persona_interruptions": "persona interruptions",
    "overlap_ms": "overlap",
    "longest_silence_ms": "longest silence",
    "dead_air_count": "dead-air stretches",
    "talk_ratio": "talk ratio (agent share)",
    "agent_words_per_minute": "agent words per minute",
    "persona_words_per_minute": "persona words per minute",
    "time_to_first_audio_ms": "time to first audio",
    "agent_stop_latency_ms": "agent stop latency (slowest)",
}


def check_dynamics(criterion: Criterion, facts: CallFacts) -> Verdict:
    """``dynamics``: the named figure of ``metrics.dynamics`` lies within [min, max]."""
    check = criterion.dynamics
    assert check is not None
    dynamics = facts.metrics.dynamics
    label = _LABEL.get(check.metric, check.metric)
    bounds = _bounds(check.min, check.max, check.metric)
    if dynamics is None:
        return Verdict(False, f"no dynamics were measured (no recording), so {label} is unknown")
    value = dynamics.figure(check.metric)
    if value is None:
        return Verdict(False, f"{label} was not measured in this call; wanted {bounds}")
    evidence = _evidence(check.metric, dynamics, facts)
    shown = _show(value, check.metric)
    if check.min is not None and value < check.min:
        return Verdict(False, f"{label} {shown} < {_show(check.min, check.metric)}", evidence)
    if check.max is not None and value > check.max:
        detail = _detail(check.metric, dynamics)
        return Verdict(
            False, f"{label} {shown} > {_show(check.max, check.metric)}{detail}", evidence
        )
    return Verdict(True, f"{label} {shown}, {bounds}", evidence)


def _evidence(metric: str, dynamics: Dynamics, facts: CallFacts) -> list[Evidence]:
    """What the figure rests on, each item pointing at the recording and the turns."""
    if metric in ("agent_interruptions", "persona_interruptions", "agent_stop_latency_ms"):
        found = (
            dynamics.agent_interruptions
            if metric == "agent_interruptions"
            else dynamics.persona_interruptions
        )
        return [_interruption(i, facts) for i in found]
    if metric in ("dead_air_count", "longest_silence_ms"):
        return [Evidence(at_ms=d.start_ms) for d in dynamics.dead_air]
    if metric == "time_to_first_audio_ms":
        first = next((i for i, t in enumerate(facts.turns) if t.role == "agent"), None)
        return [] if first is None else [_turn(first, facts)]
    return []


def _interruption(found: Interruption, facts: CallFacts) -> Evidence:
    index = found.turn_index
    if index is not None and 0 <= index < len(facts.turns):
        return _turn(index, facts, at_ms=found.at_ms)
    return Evidence(at_ms=found.at_ms)


def _turn(index: int, facts: CallFacts, *, at_ms: float | None = None) -> Evidence:
    turn = facts.turns[index]
    return Evidence(
        turn_index=index,
        at_ms=turn.start_ms if at_ms is None else at_ms,
        quote=turn.text or None,
    )


def _detail(metric: str, dynamics: Dynamics) -> str:
    """For a count over its bound: where it happened, in the reason itself."""
    if metric == "agent_interruptions":
        items = dynamics.agent_interruptions
    elif metric == "persona_interruptions":
        items = dynamics.persona_interruptions
    elif metric == "dead_air_count":
        spans = [f"{ms(d.start_ms)}-{ms(d.end_ms)} ms" for d in dynamics.dead_air[:5]]
        return f" (silent at {', '.join(spans)})"
    else:
        return ""
    moments = [
        f"{ms(i.at_ms)} ms (turn {i.turn_index}, {ms(i.overlap_ms)} ms overlap)" for i in items[:5]
    ]
    more = f" and {len(items) - 5} more" if len(items) > 5 else ""
    return f": at {', '.join(moments)}{more}"


def _bounds(low: float | None, high: float | None, metric: str) -> str:
    if low is not None and high is not None:
        return f"within [{_show(low, metric)}, {_show(high, metric)}]"
    if low is not None:
        return f"at least {_show(low, metric)}"
    assert high is not None
    return f"at most {_show(high, metric)}"


def _show(value: float, metric: str) -> str:
    if metric.endswith("_ms"):
        return f"{ms(value)} ms"
    if metric == "talk_ratio":
        return f"{value:.2f}"
    return ms(value)
