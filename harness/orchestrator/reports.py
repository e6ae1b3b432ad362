"""The run's side of what its agent reports: open its inbox, hand it over, lay it in.

Stage: inside ``run_case``.  Before the call: open the run's inbox (when the
options carry a registry and a base URL) and say what the call hands the agent
(its tools URL, events URL and token).  Once connected: tell the inbox when the
recording starts.  After the hang-up: gather the agent's spans (late ones
included).  After the analysis, before scoring: close the inbox (late reports
still join), lay its tool calls and events into the run, then join the spans.  The run shows
its tools URL with the token masked: the token is a credential while the run is
live, and a run is shown, stored and sent to webhooks.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from loguru import logger

from harness.ingest import RunInbox, events_url, lay_into, tools_url
from harness.ingest.otel import Span
from harness.models import Run
from harness.orchestrator.options import RunOptions
from harness.orchestrator.traces import apply_spans, collect_spans
from telephony.credentials import MASK, masking

__all__ = ["AgentReports", "Handover"]


@dataclass(frozen=True)
class Handover:
    """What the call hands the agent (all None when nothing is served)."""

    tools_url: str | None = None
    events_url: str | None = None
    token: str | None = None


class AgentReports:
    """One run's inbox, from before the call to the scoring."""

    def __init__(self, run: Run, options: RunOptions) -> None:
        self.run = run
        self.options = options
        self.inbox: RunInbox | None = None
        self.spans: list[Span] = []

    def open(self) -> Handover:
        inboxes, base, run = self.options.inboxes, self.options.agent_base_url, self.run
        if self.options.traces is not None:  # its spans may come from now on
            self.options.traces.open(run.id, expect=self.options.expect_traces)
        if inboxes is None or base is None:
            return Handover()
        self.inbox = inbox = inboxes.open(run.id, run.case)
        tools = None
        if run.case.tool_policy == "mock":
            tools = tools_url(base, run.id, inbox.token)
            run.tools_url = tools_url(base, run.id, MASK)
        return Handover(tools, events_url(base, run.id), inbox.token)

    def connected(self, connected_at: float | None) -> None:
        """The call connected at ``connected_at`` (monotonic): the recording's t=0."""
        if connected_at is None:
            return
        # On the wall clock, which the agent's reports and spans speak.
        self.run.recording_epoch_s = time.time() - (time.monotonic() - connected_at)
        if self.inbox is not None:
            self.inbox.set_origin(self.run.recording_epoch_s)

    async def gather_spans(self) -> None:
        """After the hang-up: the run's spans, waiting the grace for an exporter's batch."""
        opts = self.options
        self.spans = await collect_spans(opts.traces, self.run.id, opts.otel_grace_s)

    async def collect(self, error: str | None, note: Callable[[str, str], None]) -> str | None:
        """Close the inbox and lay it into the run, then the spans (a call both recorded
        is kept once); ``error``, with any trouble added and the token masked (an agent
        or a SIP peer may echo it)."""
        inbox, inboxes, run = self.inbox, self.options.inboxes, self.run
        if inbox is not None and inboxes is not None:
            try:
                await inboxes.close(run.id)
                lay_into(run, inbox)
            except Exception as exc:  # a report gone wrong must not lose the run
                logger.exception(f"run {run.id}: laying in the agent's reports failed")
                error = (error + "; " if error else "") + f"the agent's reports were lost: {exc}"
            if inbox.refused:
                note("reports_refused", f"{inbox.refused} report(s) over the run's limit")
        if self.spans and run.recording_epoch_s is not None:
            apply_spans(run, self.spans, run.recording_epoch_s)
        if inbox is None:
            return error
        hide = masking([inbox.token])
        for event in run.events:
            event.detail = hide(event.detail)
        return hide(error) if error is not None else None
