"""What a verdict may look at: everything the call produced, in one record.

The scorer's input (``harness.scoring``): the Run's turns and metrics, how the
call ended, and what the agent did (its tool calls and reported events), all on
the recording's clock; and the LLM judge's verdicts, once awaited.  A plain
value: no I/O, nothing to close.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from harness.models import AgentEvent, Evidence, Metrics, ToolCall, Turn

__all__ = ["CallFacts", "Verdict"]


@dataclass(frozen=True)
class CallFacts:
    """One call, as the criteria see it."""

    turns: Sequence[Turn]
    metrics: Metrics
    termination_reason: str | None
    tool_calls: Sequence[ToolCall] = ()
    agent_events: Sequence[AgentEvent] = ()
    # The LLM judge's verdicts by rubric, awaited before the sync checks run
    # (``harness.scoring.judge``); empty when no judge was asked.
    rubric_verdicts: Mapping[str, Verdict] = field(default_factory=dict)


@dataclass(frozen=True)
class Verdict:
    """One check's answer: passed or not, a sentence a person can read, the evidence."""

    passed: bool
    reason: str
    evidence: list[Evidence] = field(default_factory=list)
