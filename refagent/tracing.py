"""The reference agent's account of each reply, exported as pipecat-shaped OpenTelemetry spans.

Stage: beside the agent's turn-taking, off the audio path.  ``start_tracing(endpoint)``
installs pipecat's tracer provider (``setup_tracing``) with OpenTelemetry's
OTLP/HTTP exporter behind a ``BatchSpanProcessor``: spans are queued and sent from
the processor's own thread, never on the event loop that times the replies.

The agent has no STT, LLM or TTS on its reply path (its lines are synthesized before
the first call; its STT only feeds its log), so pipecat's own service spans would
say nothing about it.  It records what it really did instead, in the shape
pipecat's tracing uses and loopcall reads (docs/tracing.md): per call a
``conversation`` span, and under it per reply a ``turn`` span from the caller's end
of speech as its endpointer placed it to the reply's first voiced sample leaving
(``turn.user_bot_latency_seconds``: the reply delay it kept), with a ``tts`` child
that starts at that sample (``metrics.ttfb`` 0: the line was ready).  All carry
the run id (``conversation.id``, ``loopcall.run_id``), so they join that run;
loopcall's figure minus the agent's is the transport and playout nobody accounts
for.  The call's end closes the conversation span and sends the queue at once.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

__all__ = ["CallTrace", "flush", "start_tracing"]

INSTALL = "pip install 'loopcall[tracing]'"
_on = False


def start_tracing(endpoint: str) -> None:
    """Export the agent's spans to ``endpoint`` (e.g. ``http://127.0.0.1:4318/v1/traces``)."""
    global _on
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from pipecat.utils.tracing.setup import is_tracing_available, setup_tracing
    except ImportError as exc:
        raise RuntimeError(f"tracing needs OpenTelemetry's SDK and exporter: {INSTALL}") from exc
    if not is_tracing_available() or not setup_tracing(
        "loopcall-refagent", exporter=OTLPSpanExporter(endpoint=endpoint)
    ):
        raise RuntimeError(f"pipecat could not set up tracing: {INSTALL}")
    _on = True


class CallTrace:
    """One call's spans: a ``conversation`` span for the call (``conversation.id``, the
    run id) and under it each reply's ``turn`` and ``tts``, placed at the instants the
    agent measured.  No-op when tracing is off or the call carried no run id."""

    def __init__(self, run_id: str | None) -> None:
        self._conversation: Any = None
        self._named: dict[str, str] = {}
        if not _on or run_id is None:
            return
        from opentelemetry import trace

        self._tracer = trace.get_tracer("loopcall.refagent")
        self._named = {"conversation.id": run_id, "loopcall.run_id": run_id}
        self._conversation = self._tracer.start_span("conversation", attributes=self._named)

    def reply(self, turn: int, speech_end_epoch_ms: float | None, onset_epoch_ms: float) -> None:
        """A reply whose first voiced sample left at ``onset_epoch_ms``, after the caller's
        speech ended at ``speech_end_epoch_ms`` as the endpointer placed it (None: the
        greeting).  Cheap: the spans are queued, the exporter's thread sends them."""
        if self._conversation is None:
            return
        from opentelemetry import trace

        onset_ns = round(onset_epoch_ms * 1e6)
        start_ns = onset_ns if speech_end_epoch_ms is None else round(speech_end_epoch_ms * 1e6)
        attributes: dict[str, str | int | float] = {**self._named, "turn.number": turn + 1}
        if speech_end_epoch_ms is not None:
            attributes["turn.user_bot_latency_seconds"] = (onset_ns - start_ns) / 1e9
        context = trace.set_span_in_context(self._conversation)
        span = self._tracer.start_span(
            "turn", context=context, start_time=start_ns, attributes=attributes
        )
        tts = self._tracer.start_span(
            "tts",
            context=trace.set_span_in_context(span),
            start_time=onset_ns,
            attributes={**self._named, "metrics.ttfb": 0.0},
        )
        tts.end(end_time=onset_ns)
        span.end(end_time=onset_ns)

    def end(self) -> None:
        """The call is over: its conversation span closes (loopcall stops waiting for the
        run's spans when it arrives) and the queue is sent now, from a thread."""
        if self._conversation is None:
            return
        self._conversation.end()
        self._conversation = None
        from opentelemetry import trace

        force_flush = getattr(trace.get_tracer_provider(), "force_flush", None)
        if force_flush is not None:
            threading.Thread(target=force_flush, args=(5_000,), daemon=True).start()


async def flush() -> None:
    """Send the spans still queued (a call just ended), in a thread."""
    from opentelemetry import trace

    provider = trace.get_tracer_provider()
    force_flush = getattr(provider, "force_flush", None)
    if force_flush is not None:
        await asyncio.to_thread(force_flush, 5_000)
