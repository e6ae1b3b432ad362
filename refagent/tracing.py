"""The reference agent's pipecat spans, exported over OTLP/HTTP (optional, off the audio path).

Stage: beside the agent's pipelines.  ``start_tracing(endpoint)`` installs
pipecat's tracer provider (``setup_tracing``) with OpenTelemetry's OTLP/HTTP
exporter behind a ``BatchSpanProcessor``: spans are queued by the pipeline and
sent from the processor's own thread, never on the event loop that times the
replies.  Each call's ``PipelineWorker`` then runs with ``enable_tracing`` and the
run id (``request_data.loopcall_run_id``) as its ``conversation_id``, so the
spans join that run; ``flush`` after a call sends what is left at once.
"""

from __future__ import annotations

import asyncio

__all__ = ["flush", "start_tracing"]

INSTALL = "pip install 'loopcall[tracing]'"


def start_tracing(endpoint: str) -> None:
    """Export pipecat's spans to ``endpoint`` (e.g. ``http://127.0.0.1:4318/v1/traces``)."""
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from pipecat.utils.tracing.setup import is_tracing_available, setup_tracing
    except ImportError as exc:
        raise RuntimeError(f"tracing needs OpenTelemetry's SDK and exporter: {INSTALL}") from exc
    if not is_tracing_available() or not setup_tracing(
        "loopcall-refagent", exporter=OTLPSpanExporter(endpoint=endpoint)
    ):
        raise RuntimeError(f"pipecat could not set up tracing: {INSTALL}")


async def flush() -> None:
    """Send the spans still queued (a call just ended), in a thread."""
    from opentelemetry import trace

    provider = trace.get_tracer_provider()
    force_flush = getattr(provider, "force_flush", None)
    if force_flush is not None:
        await asyncio.to_thread(force_flush, 5_000)
