"""Per-run inboxes: what the agent reports during a call, held until the run is scored.

Stage: beside the call.  The orchestrator ``open``s an inbox when a run starts
(with a fresh secret token and the case's mock tools), sets its ``origin`` (the
wall-clock time the recording starts) once the call connects, and ``close``s it
before scoring: ``close`` waits until reports have stopped coming (a short quiet,
bounded by a grace) so what an agent sends as it hangs up still joins the run.
In between, the agent-facing routes (``routes.py``) and any other ingester drop
what arrives into the run's inbox: tool calls made on its tools URL, events from
its webhook, and, through ``Inboxes.deliver``, anything else by kind.

Times: every report is stamped with the wall clock when it arrives (or carries
its own time); ``RunInbox.at_ms`` maps a wall time to ms on the recording's clock,
and reports that arrived before the origin was known are placed once it is.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from harness.logs import SECRETS
from harness.models import AgentEvent, Case, MockTool, ToolCall

__all__ = ["DEFAULT_GRACE_S", "DEFAULT_QUIET_S", "MAX_RECORDS", "Inboxes", "RunInbox"]

# After the call, close() waits until nothing has arrived for QUIET_S, at most GRACE_S.
DEFAULT_QUIET_S = 0.3
DEFAULT_GRACE_S = 3.0
# Per run and per kind: past this, reports are refused (and counted), not kept.
MAX_RECORDS = 5000


@dataclass
class _Stamped:
    """A record whose place on the recording's clock waits for the origin."""

    epoch_s: float
    item: ToolCall | AgentEvent


class RunInbox:
    """One run's reports, and what its agent needs to send them (token, tools)."""

    def __init__(self, run_id: str, case: Case, *, token: str | None = None) -> None:
        self.run_id = run_id
        self.token = token or secrets.token_urlsafe(24)
        self.tool_policy = case.tool_policy
        self.tools: dict[str, MockTool] = {tool.name: tool for tool in case.tools}
        self.origin_epoch_s: float | None = None
        self.tool_calls: list[ToolCall] = []
        self.agent_events: list[AgentEvent] = []
        # Anything else delivered by kind (``Inboxes.deliver``): (arrival epoch s, payload).
        self.deliveries: dict[str, list[tuple[float, Any]]] = {}
        self.refused = 0  # reports over MAX_RECORDS
        self.last_arrival = time.monotonic()
        self._served: dict[str, int] = {}  # tool -> answers taken from ``responses``
        self._unplaced: list[_Stamped] = []

    # ------------------------------------------------------------------ the clock

    def set_origin(self, epoch_s: float) -> None:
        """The recording starts at ``epoch_s`` (wall clock): place what came before."""
        self.origin_epoch_s = epoch_s
        for stamped in self._unplaced:
            stamped.item.at_ms = self.at_ms(stamped.epoch_s)
        self._unplaced.clear()

    def at_ms(self, epoch_s: float) -> float | None:
        """``epoch_s`` on the recording's clock (ms from its start), once it is known."""
        if self.origin_epoch_s is None:
            return None
        return round((epoch_s - self.origin_epoch_s) * 1000.0, 1)

    # ------------------------------------------------------------------ recording

    def room(self, kind: str) -> bool:
        """Whether another report of ``kind`` may be kept (else it is counted as refused)."""
        if kind == "tool_call":
            size = len(self.tool_calls)
        elif kind == "agent_event":
            size = len(self.agent_events)
        else:
            size = len(self.deliveries.get(kind, ()))
        if size < MAX_RECORDS:
            return True
        self.refused += 1
        return False

    def add_tool_call(self, call: ToolCall, epoch_s: float | None = None) -> None:
        """Keep ``call``; without its own ``at_ms`` it is placed at ``epoch_s`` (default now)."""
        self._place(call, epoch_s)
        self.tool_calls.append(call)

    def add_event(self, event: AgentEvent, epoch_s: float | None = None) -> None:
        """Keep ``event``; without its own ``at_ms`` it is placed at ``epoch_s`` (default now)."""
        self._place(event, epoch_s)
        self.agent_events.append(event)

    def add_delivery(self, kind: str, payload: Any) -> None:
        self.deliveries.setdefault(kind, []).append((time.time(), payload))
        self.last_arrival = time.monotonic()

    def _place(self, item: ToolCall | AgentEvent, epoch_s: float | None) -> None:
        self.last_arrival = time.monotonic()
        if item.at_ms is not None:
            return
        when = time.time() if epoch_s is None else epoch_s
        item.at_ms = self.at_ms(when)
        if item.at_ms is None:
            self._unplaced.append(_Stamped(when, item))

    # ------------------------------------------------------------------ mock tools

    def answer(self, tool: MockTool, matched: int | None) -> Any:
        """The response of ``tool`` for a call: ``match[matched]``'s, else the next of
        ``responses`` (the last repeats), else ``response``."""
        if matched is not None:
            return tool.match[matched].response
        if tool.responses is not None:
            served = self._served.get(tool.name, 0)
            self._served[tool.name] = served + 1
            return tool.responses[min(served, len(tool.responses) - 1)]
        return tool.response

    async def quiet(
        self, quiet_s: float = DEFAULT_QUIET_S, grace_s: float = DEFAULT_GRACE_S
    ) -> None:
        """Return once nothing has arrived for ``quiet_s``, or ``grace_s`` from now at most."""
        deadline = time.monotonic() + grace_s
        while True:
            now = time.monotonic()
            wait = min(self.last_arrival + quiet_s, deadline) - now
            if wait <= 0:
                return
            await asyncio.sleep(wait)


@dataclass
class Inboxes:
    """The open runs' inboxes, by run id: the registry every ingester delivers into."""

    quiet_s: float = DEFAULT_QUIET_S
    grace_s: float = DEFAULT_GRACE_S
    dropped: int = 0  # reports for a run that is not open (unknown, or already scored)
    _open: dict[str, RunInbox] = field(default_factory=dict)

    def open(self, run_id: str, case: Case) -> RunInbox:
        """A fresh inbox for ``run_id`` (its token is kept out of the logs while it is open)."""
        inbox = RunInbox(run_id, case)
        self._open[run_id] = inbox
        SECRETS.hold(_owner(run_id), [inbox.token])
        return inbox

    def get(self, run_id: str) -> RunInbox | None:
        return self._open.get(run_id)

    def deliver(self, run_id: str, kind: str, payload: Any) -> bool:
        """Hand ``payload`` of ``kind`` to ``run_id``'s inbox; False (counted) if it is not open.

        Kinds ``tool_call`` (a ``ToolCall``) and ``agent_event`` (an ``AgentEvent``)
        join the run's lists, placed at their ``at_ms`` or at arrival; any other kind
        is kept raw in ``inbox.deliveries[kind]`` with its arrival time, for whoever
        reads that kind when the run is scored.
        """
        inbox = self._open.get(run_id)
        if inbox is None:
            self.dropped += 1
            return False
        if not inbox.room(kind):
            return False
        if kind == "tool_call" and isinstance(payload, ToolCall):
            inbox.add_tool_call(payload)
        elif kind == "agent_event" and isinstance(payload, AgentEvent):
            inbox.add_event(payload)
        else:
            inbox.add_delivery(kind, payload)
        return True

    async def close(self, run_id: str) -> RunInbox | None:
        """Wait for the reports to stop (``quiet_s``, at most ``grace_s``), then stop
        taking them for ``run_id``: its inbox, with everything that joined."""
        inbox = self._open.get(run_id)
        if inbox is None:
            return None
        try:
            await inbox.quiet(self.quiet_s, self.grace_s)
        finally:
            self.discard(run_id)
        return inbox

    def discard(self, run_id: str) -> None:
        """Stop taking reports for ``run_id`` at once (its token stops working)."""
        if self._open.pop(run_id, None) is not None:
            SECRETS.release(_owner(run_id))


def _owner(run_id: str) -> str:
    return f"run-token:{run_id}"
