"""Checks on what the agent did: its tool calls (``tool_name``) and flow nodes (``node_id``).

Placeholder until its issue-14 work lands: every check here fails, saying so.
"""

from __future__ import annotations

from harness.models import Criterion
from harness.scoring.facts import CallFacts, Verdict

__all__ = ["check_tool_name", "check_node_id"]


def check_tool_name(criterion: Criterion, facts: CallFacts) -> Verdict:
    """Not judged yet."""
    return Verdict(False, f"loopcall cannot judge a {criterion.kind} criterion yet")


def check_node_id(criterion: Criterion, facts: CallFacts) -> Verdict:
    """Not judged yet."""
    return Verdict(False, f"loopcall cannot judge a {criterion.kind} criterion yet")
