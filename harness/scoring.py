"""The scorer: a case's success criteria, checked against what the call produced.

It runs after the recorder and metrics stages.  In come the ``Case`` (its
``success_criteria`` and ``pass_threshold``), the call's ``Turn``s, its ``Metrics``
and the reason the call stopped; out goes an ``Evaluation`` with one
``CriterionResult`` per criterion, each with a sentence a person can read.  The
score is Yappr's: the weighted share of passed criteria, on 0..100.  Pure
functions, no I/O.

A ``pattern`` is the case writer's regex, searched with a deadline
(``runtime.patterns``): one that runs past ``PATTERN_TIMEOUT_S`` fails its
criterion with a reason saying so.  Waiting for that deadline must not hold the
event loop where calls may be live: there, score with ``evaluate_off_loop``.
"""

from __future__ import annotations

from harness.models import Case, Criterion, CriterionResult, Evaluation, Metrics, Turn
from harness.offload import off_loop
from runtime.patterns import PatternTimeout, search

__all__ = ["PATTERN_TIMEOUT_S", "evaluate", "evaluate_off_loop", "weighted_score"]

# A sound pattern searches a call's transcript in well under a millisecond.
PATTERN_TIMEOUT_S = 1.0


def evaluate(
    case: Case, turns: list[Turn], metrics: Metrics, termination_reason: str | None
) -> Evaluation:
    """Check every criterion of ``case`` and return the weighted verdict."""
    results = [_check(c, turns, metrics, termination_reason) for c in case.success_criteria]
    score = weighted_score(results)
    return Evaluation(score=score, pass_fail=score >= case.pass_threshold, results=results)


async def evaluate_off_loop(
    case: Case, turns: list[Turn], metrics: Metrics, termination_reason: str | None
) -> Evaluation:
    """``evaluate`` on the bookkeeping thread: a slow pattern does not hold the event loop."""
    return await off_loop(evaluate, case, turns, metrics, termination_reason)


def weighted_score(results: list[CriterionResult]) -> float:
    """100 x passed weight / total weight, to 2 decimals (Yappr's definition).

    No criteria scores 100.  When every weight is 0 the ratio is undefined, so
    the score is all-or-nothing: 100 if every criterion passed, else 0.
    """
    if not results:
        return 100.0
    total = sum(r.weight for r in results)
    if total == 0:
        return 100.0 if all(r.passed for r in results) else 0.0
    passed = sum(r.weight for r in results if r.passed)
    return round(100 * passed / total, 2)


def _check(
    criterion: Criterion, turns: list[Turn], metrics: Metrics, termination_reason: str | None
) -> CriterionResult:
    kind = criterion.kind
    if kind == "pattern":
        passed, reason = _check_pattern(criterion, turns)
    elif kind == "latency_ms":
        passed, reason = _check_latency(criterion, metrics)
    elif kind == "termination_reason":
        passed, reason = _check_termination(criterion, termination_reason)
    elif kind == "turn_count":
        passed, reason = _check_turn_count(criterion, turns)
    else:  # the judging checks land one by one (issue 14); until then, say so
        passed, reason = False, f"loopcall cannot judge a {kind} criterion yet"
    return CriterionResult(
        assertion=criterion, passed=passed, weight=criterion.weight, reason=reason
    )


def _check_pattern(criterion: Criterion, turns: list[Turn]) -> tuple[bool, str]:
    assert criterion.pattern is not None
    text = "\n".join(t.text for t in turns if t.role == criterion.role)
    try:
        match = search(criterion.pattern, text, timeout_s=PATTERN_TIMEOUT_S)
    except PatternTimeout as exc:
        return False, (
            f"{criterion.role}'s speech could not be checked: the search for {exc} "
            "(the pattern backtracks catastrophically; rewrite it)"
        )
    said = f"{criterion.role} said /{criterion.pattern}/"
    if criterion.must_match:
        if match:
            return True, f'{said} ("{match.group(0)}")'
        return False, f"{criterion.role} never said /{criterion.pattern}/"
    if match:
        return False, f'{said} ("{match.group(0)}"), which it must not'
    return True, f"{criterion.role} never said /{criterion.pattern}/, as required"


def _check_latency(criterion: Criterion, metrics: Metrics) -> tuple[bool, str]:
    check = criterion.latency_ms
    assert check is not None
    value: float | None = getattr(metrics.latency_ms, check.stat)
    if value is None:
        return False, (
            f"no agent latency was measured (n={metrics.latency_ms.n}), "
            f"so {check.stat} cannot be held to {_ms(check.max_ms)} ms"
        )
    if value <= check.max_ms:
        return True, f"{check.stat} latency {_ms(value)} ms <= {_ms(check.max_ms)} ms"
    return False, f"{check.stat} latency {_ms(value)} ms > {_ms(check.max_ms)} ms"


def _check_termination(criterion: Criterion, actual: str | None) -> tuple[bool, str]:
    allowed = criterion.termination_reason or []
    expected = ", ".join(allowed)
    if actual is None:
        return False, f"the run has no termination reason; expected one of {expected}"
    if actual in allowed:
        return True, f"ended by {actual}, one of {expected}"
    return False, f"ended by {actual}, not one of {expected}"


def _check_turn_count(criterion: Criterion, turns: list[Turn]) -> tuple[bool, str]:
    check = criterion.turn_count
    assert check is not None
    who = check.role or "the call"
    count = sum(1 for t in turns if check.role is None or t.role == check.role)
    noun = "turn" if count == 1 else "turns"
    if check.min is not None and count < check.min:
        return False, f"{who} took {count} {noun}, fewer than the minimum {check.min}"
    if check.max is not None and count > check.max:
        return False, f"{who} took {count} {noun}, more than the maximum {check.max}"
    if check.min is not None and check.max is not None:
        bounds = f"between {check.min} and {check.max}"
    elif check.min is not None:
        bounds = f"at least {check.min}"
    else:
        bounds = f"at most {check.max}"
    return True, f"{who} took {count} {noun}, {bounds}"


def _ms(value: float) -> str:
    """812.0 -> '812', 812.46 -> '812.5': whole numbers stay whole."""
    return f"{value:.1f}".rstrip("0").rstrip(".")
