"""What an inbox collected, laid into its run: one timeline of tool calls and events.

Stage: the orchestrator's wrap-up, after the analysis (the turns are known) and
before scoring (``CallFacts`` reads ``run.tool_calls`` and ``run.agent_events``).
Records are sorted by their time on the recording's clock (those without one
last, in arrival order); each tool call's ``turn_index`` is the agent turn it
falls in, or else the next one: the reply it was made for.
"""

from __future__ import annotations

from collections.abc import Sequence

from harness.ingest.inbox import RunInbox
from harness.models import Run, ToolCall, Turn

__all__ = ["lay_into", "turn_of"]


def lay_into(run: Run, inbox: RunInbox) -> None:
    """Copy ``inbox``'s tool calls and events into ``run``, sorted, with their turns."""
    calls = sorted(inbox.tool_calls, key=_when)
    for call in calls:
        call.turn_index = turn_of(call, run.turns)
    run.tool_calls = [*run.tool_calls, *calls]
    run.agent_events = [*run.agent_events, *sorted(inbox.agent_events, key=_when)]


def turn_of(call: ToolCall, turns: Sequence[Turn]) -> int | None:
    """Index in ``turns`` of the agent turn ``call`` falls in or before (else the last one)."""
    agent = [(i, t) for i, t in enumerate(turns) if t.role == "agent"]
    if call.at_ms is None or not agent:
        return None
    for index, turn in agent:
        if call.at_ms <= turn.end_ms:
            return index
    return agent[-1][0]


def _when(record: ToolCall | object) -> tuple[bool, float]:
    at = getattr(record, "at_ms", None)
    return (at is None, at if at is not None else 0.0)
