"""Checks on what was measured: latency, how the call ended, how many turns.

Pure functions of ``CallFacts``; each returns a ``Verdict`` with a sentence a
person can read.
"""

from __future__ import annotations

from harness.models import Criterion, Evidence
from harness.scoring.facts import CallFacts, Verdict

__all__ = ["check_latency", "check_termination", "check_turn_count", "ms"]


def check_latency(criterion: Criterion, facts: CallFacts) -> Verdict:
    """``latency_ms``: a statistic of the vouched agent latencies within a bound."""
    check = criterion.latency_ms
    assert check is not None
    summary = facts.metrics.latency_ms
    value: float | None = getattr(summary, check.stat)
    if value is None:
        return Verdict(
            False,
            f"no agent latency was measured (n={summary.n}), "
            f"so {check.stat} cannot be held to {ms(check.max_ms)} ms",
        )
    slowest = max(
        ((i, t) for i, t in enumerate(facts.turns) if t.latency_ms is not None and not t.degraded),
        key=lambda it: it[1].latency_ms or 0.0,
        default=None,
    )
    evidence = (
        []
        if slowest is None
        else [Evidence(turn_index=slowest[0], at_ms=slowest[1].start_ms, quote=slowest[1].text)]
    )
    if value <= check.max_ms:
        return Verdict(True, f"{check.stat} latency {ms(value)} ms <= {ms(check.max_ms)} ms")
    return Verdict(False, f"{check.stat} latency {ms(value)} ms > {ms(check.max_ms)} ms", evidence)


def check_termination(criterion: Criterion, facts: CallFacts) -> Verdict:
    """``termination_reason``: the call ended in one of the allowed ways."""
    allowed = criterion.termination_reason or []
    expected = ", ".join(allowed)
    actual = facts.termination_reason
    if actual is None:
        return Verdict(False, f"the run has no termination reason; expected one of {expected}")
    if actual in allowed:
        return Verdict(True, f"ended by {actual}, one of {expected}")
    return Verdict(False, f"ended by {actual}, not one of {expected}")


def check_turn_count(criterion: Criterion, facts: CallFacts) -> Verdict:
    """``turn_count``: the number of turns (of a role, or of both) within [min, max]."""
    check = criterion.turn_count
    assert check is not None
    who = check.role or "the call"
    count = sum(1 for t in facts.turns if check.role is None or t.role == check.role)
    noun = "turn" if count == 1 else "turns"
    if check.min is not None and count < check.min:
        return Verdict(False, f"{who} took {count} {noun}, fewer than the minimum {check.min}")
    if check.max is not None and count > check.max:
        return Verdict(False, f"{who} took {count} {noun}, more than the maximum {check.max}")
    if check.min is not None and check.max is not None:
        bounds = f"between {check.min} and {check.max}"
    elif check.min is not None:
        bounds = f"at least {check.min}"
    else:
        bounds = f"at most {check.max}"
    return Verdict(True, f"{who} took {count} {noun}, {bounds}")


def ms(value: float) -> str:
    """812.0 -> '812', 812.46 -> '812.5': whole numbers stay whole."""
    return f"{value:.1f}".rstrip("0").rstrip(".")
