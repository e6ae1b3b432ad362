"""The agent's spans into the run: wait for the late ones, then join them to its turns.

Stage: the orchestrator's wrap-up.  ``collect_spans`` runs after the hang-up (the
``TraceDesk`` waits its grace for spans still in an exporter's batch);
``apply_spans`` runs once the turns are measured: each matched agent turn gets
its ``agent_timing``, the tool calls the spans show join ``run.tool_calls``
(source ``otel``) unless loopcall recorded them already (its tools URL, the
webhook), and the agent's tokens go to ``run.usage``, model by model.
"""

from __future__ import annotations

from loguru import logger

from harness.ingest.otel import Span, TraceDesk
from harness.ingest.otel.join import join
from harness.models import Run, ToolCall

__all__ = ["apply_spans", "collect_spans"]

# How far outside a span's window a tools-URL record of the same call may lie (the
# two clocks, and the request's own travel).
SAME_CALL_MS = 250.0


async def collect_spans(desk: TraceDesk | None, run_id: str, grace_s: float) -> list[Span]:
    """The run's spans, late ones included (none without a desk)."""
    if desk is None:
        return []
    return await desk.collect(run_id, grace_s)


def apply_spans(run: Run, spans: list[Span], origin_epoch_s: float) -> None:
    """Join the spans to the run's measured turns (``origin_epoch_s``: the recording's
    sample 0 in Unix time)."""
    if not spans:
        return
    joined = join(spans, run.turns, origin_epoch_s)
    for index, timing in joined.timings.items():
        run.turns[index].agent_timing = timing
    run.tool_calls.extend(call for call in joined.tool_calls if not _seen(call, run.tool_calls))
    run.tool_calls.sort(key=lambda call: call.at_ms if call.at_ms is not None else float("inf"))
    for model, (input_tokens, output_tokens) in joined.by_model.items():
        run.usage.add_tokens("agent", model, input_tokens, output_tokens)
    named = [line for line in run.usage.tokens if line.party == "agent" and line.model]
    if named:  # the model that wrote most of what the agent said
        run.usage.agent_model = max(named, key=lambda line: line.output_tokens).model
    logger.info(
        f"run {run.id}: {len(spans)} span(s), {joined.replies} repl(ies), "
        f"{len(joined.timings)} matched to agent turns, {len(joined.tool_calls)} tool call(s)"
    )


def _seen(call: ToolCall, recorded: list[ToolCall]) -> bool:
    """The spans show a call loopcall already recorded (its tools URL, the webhook):
    the same name and arguments, within the span's window.  Recorded once."""
    if call.at_ms is None:
        return False
    start = call.at_ms - SAME_CALL_MS
    end = call.at_ms + (call.duration_ms or 0.0) + SAME_CALL_MS
    return any(
        other.source != "otel"
        and other.name == call.name
        and other.args == call.args
        and other.at_ms is not None
        and start <= other.at_ms <= end
        for other in recorded
    )
