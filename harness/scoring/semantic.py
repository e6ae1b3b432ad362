"""``semantic``: the agent said something that means X, by offline sentence embeddings.

Placeholder until its issue-14 work lands: every check here fails, saying so.
"""

from __future__ import annotations

from harness.models import Criterion
from harness.scoring.facts import CallFacts, Verdict

__all__ = ["check_semantic"]


def check_semantic(criterion: Criterion, facts: CallFacts) -> Verdict:
    """Not judged yet."""
    return Verdict(False, f"loopcall cannot judge a {criterion.kind} criterion yet")
