"""Checks on what was said: a case writer's regex over one side's transcript.

A ``pattern`` is searched with a deadline (``runtime.patterns``): one that runs
past ``PATTERN_TIMEOUT_S`` fails its criterion with a reason saying so.
"""

from __future__ import annotations

from harness.models import Criterion, Evidence, Turn
from harness.scoring.facts import CallFacts, Verdict
from runtime.patterns import PatternTimeout, search

__all__ = ["PATTERN_TIMEOUT_S", "check_pattern"]

# A sound pattern searches a call's transcript in well under a millisecond.
PATTERN_TIMEOUT_S = 1.0


def check_pattern(criterion: Criterion, facts: CallFacts) -> Verdict:
    """``pattern``: the role said (or, with ``must_match: false``, never said) it."""
    assert criterion.pattern is not None
    spoken = [(i, t) for i, t in enumerate(facts.turns) if t.role == criterion.role]
    text = "\n".join(t.text for _, t in spoken)
    try:
        match = search(criterion.pattern, text, timeout_s=PATTERN_TIMEOUT_S)
    except PatternTimeout as exc:
        return Verdict(
            False,
            f"{criterion.role}'s speech could not be checked: the search for {exc} "
            "(the pattern backtracks catastrophically; rewrite it)",
        )
    said = f"{criterion.role} said /{criterion.pattern}/"
    evidence = [] if match is None else [_where(match.start(), match.group(0), spoken)]
    if criterion.must_match:
        if match:
            return Verdict(True, f'{said} ("{match.group(0)}")', evidence)
        return Verdict(False, f"{criterion.role} never said /{criterion.pattern}/")
    if match:
        return Verdict(False, f'{said} ("{match.group(0)}"), which it must not', evidence)
    return Verdict(True, f"{criterion.role} never said /{criterion.pattern}/, as required")


def _where(offset: int, quote: str, spoken: list[tuple[int, Turn]]) -> Evidence:
    """The turn whose text holds character ``offset`` of the joined transcript."""
    start = 0
    for index, turn in spoken:
        if offset <= start + len(turn.text):
            return Evidence(turn_index=index, quote=quote, at_ms=turn.start_ms)
        start += len(turn.text) + 1
    return Evidence(quote=quote)
