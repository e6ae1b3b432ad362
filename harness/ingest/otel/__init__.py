"""An agent's OpenTelemetry spans, into its run: OTLP/HTTP in, stage timings and tool calls out.

``spans``: request body -> ``Span`` values.  ``desk``: which live run a span joins,
the late ones waited for, the rest dropped and counted.  ``route``: the
``POST /v1/traces`` router.  ``replies``: pipecat's and LiveKit's spans -> the
agent's account of each reply.  ``join``: those replies placed on the recording's
clock, matched to the Run's agent turns.
"""

from harness.ingest.otel.desk import GRACE_S, Accepted, RunSpans, TraceDesk, run_of
from harness.ingest.otel.route import ALL_RUNS, MAX_BYTES, UNTRACED, traces_router
from harness.ingest.otel.spans import OtlpBodyError, OtlpTooLarge, Span, decode_traces

__all__ = [
    "ALL_RUNS",
    "GRACE_S",
    "MAX_BYTES",
    "Accepted",
    "OtlpBodyError",
    "OtlpTooLarge",
    "RunSpans",
    "Span",
    "UNTRACED",
    "TraceDesk",
    "decode_traces",
    "run_of",
    "traces_router",
]
