"""``rubric``: an LLM judge on an OpenAI-compatible endpoint reads the call.

Placeholder until its issue-14 work lands: every check here fails, saying so.
"""

from __future__ import annotations

from harness.models import Criterion
from harness.scoring.facts import CallFacts, Verdict

__all__ = ["check_rubric"]


def check_rubric(criterion: Criterion, facts: CallFacts) -> Verdict:
    """Not judged yet."""
    return Verdict(False, f"loopcall cannot judge a {criterion.kind} criterion yet")
