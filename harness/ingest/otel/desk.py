"""Which run a span joins, the spans each live run has gathered, and those dropped.

Stage: between the ``/v1/traces`` route and the orchestrator.  The route hands
every decoded ``Span`` to ``TraceDesk.accept``; a run registers with ``open`` when
its call starts and takes its spans with ``collect`` after the hang-up.

A span joins a run when its ``conversation.id`` (pipecat's
``PipelineTask(conversation_id=...)``, set on its ``conversation`` and ``turn``
spans) or ``loopcall.run_id`` attribute (on the span or on its resource) equals
the run id.  Pipecat's STT, LLM and TTS spans carry neither: they join through
their trace, whose ``turn`` span does.  A parent span ends after its children, so
an exporter sends the children first: a span with no run is held (bounded in
number and in age, ``HOLD_S``) until a span of its trace names the run.  Spans
that name a run that is not live, and held spans no run claimed in time, are
dropped and counted (``dropped``, shown by ``/health`` and logged).

Exporters batch: OpenTelemetry's ``BatchSpanProcessor`` sends every 5 s by
default, and the spans that end at the hang-up (the last turn, pipecat's
``conversation``) leave on the next batch.  ``collect`` therefore waits, when the
run's agent traces (a span already joined, or the run said it expects spans),
until the session's span arrives (``SESSION_SPANS``, or a root span naming the
run: each ends after all the others) or ``GRACE_S`` passes since the hang-up: the
5 s delay plus 2 s for the export to travel on a busy machine.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from loguru import logger

from harness.ingest.otel.spans import Span

__all__ = [
    "GRACE_S",
    "HOLD_S",
    "RUN_ATTRIBUTES",
    "SESSION_SPANS",
    "Accepted",
    "RunSpans",
    "TraceDesk",
    "run_of",
]

RUN_ATTRIBUTES = ("loopcall.run_id", "conversation.id")
# The span that ends last in a framework's tree: pipecat's ``conversation``, LiveKit's
# ``agent_session``.  (Not "a root span": a bot that starts its pipeline inside an
# HTTP request handler nests pipecat's conversation under that request's span.)
SESSION_SPANS = frozenset({"conversation", "agent_session"})
GRACE_S = 7.0
HOLD_S = 120.0
HOLD_MAX = 20_000
TRACES_MAX = 10_000


def run_of(span: Span) -> str | None:
    """The run a span names, if any (its own attributes first, then its resource's)."""
    for source in (span.attributes, span.resource):
        for key in RUN_ATTRIBUTES:
            value = source.get(key)
            if isinstance(value, str) and value:
                return value
    return None


@dataclass
class RunSpans:
    """The spans one live run has gathered so far."""

    run_id: str
    expect: bool = False
    token: str | None = None
    spans: list[Span] = field(default_factory=list)
    closed_seen: bool = False
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, span: Span) -> None:
        self.spans.append(span)
        if run_of(span) == self.run_id and (
            span.parent_span_id is None or span.name in SESSION_SPANS
        ):
            self.closed_seen = True
        self._arrived.set()

    async def settle(self, grace_s: float) -> None:
        """Wait for the spans still on their way: until the session's span or ``grace_s``."""
        if not (self.expect or self.spans):
            return
        deadline = asyncio.get_running_loop().time() + grace_s
        while not self.closed_seen:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except TimeoutError:
                return


@dataclass(frozen=True)
class Accepted:
    """What became of one export's spans."""

    joined: int
    held: int
    dropped: int


class TraceDesk:
    """Routes spans to live runs; one per process (the controller, or ``loopcall run``)."""

    def __init__(
        self, *, hold_s: float = HOLD_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._runs: dict[str, RunSpans] = {}
        self._trace_run: OrderedDict[str, str] = OrderedDict()
        self._held: OrderedDict[str, tuple[float, list[Span]]] = OrderedDict()
        self._held_count = 0
        self._hold_s = hold_s
        self._clock = clock
        self.dropped = 0

    def open(self, run_id: str, *, expect: bool = False, token: str | None = None) -> RunSpans:
        """A run's call starts: spans naming it join it from now on."""
        inbox = self._runs[run_id] = RunSpans(run_id, expect=expect, token=token)
        return inbox

    def close(self, run_id: str) -> None:
        """The run is done with spans: later ones for it are dropped."""
        self._runs.pop(run_id, None)

    def run_for_token(self, token: str) -> str | None:
        """The live run a per-run token belongs to."""
        for inbox in self._runs.values():
            if inbox.token is not None and inbox.token == token:
                return inbox.run_id
        return None

    async def collect(self, run_id: str, grace_s: float = GRACE_S) -> list[Span]:
        """The run's spans, once the late ones have had ``grace_s`` to arrive; closes it."""
        inbox = self._runs.get(run_id)
        if inbox is None:
            return []
        try:
            await inbox.settle(grace_s)
            return list(inbox.spans)
        finally:
            self.close(run_id)

    def stats(self) -> dict[str, int]:
        return {"live_runs": len(self._runs), "held": self._held_count, "dropped": self.dropped}

    def accept(self, spans: Iterable[Span], only_run: str | None = None) -> Accepted:
        """Join what can join, hold what may still, drop the rest (``only_run``: a
        per-run token's export, whose spans may join that run alone)."""
        self._expire()
        named = [(span, run_of(span)) for span in spans]
        joined = held = dropped = 0
        # Spans that name their run first: they claim their traces for the others.
        for span, run_id in sorted(named, key=lambda pair: pair[1] is None):
            if run_id is None:
                run_id = self._trace_run.get(span.trace_id)
                if run_id is None:
                    self._hold(span)
                    held += 1
                    continue
            inbox = self._runs.get(run_id)
            if inbox is None or (only_run is not None and run_id != only_run):
                dropped += 1
                continue
            self._claim(span.trace_id, run_id)
            inbox.add(span)
            joined += 1
        self._drop(dropped, "they name no live run")
        return Accepted(joined, held, dropped)

    def _claim(self, trace_id: str, run_id: str) -> None:
        self._trace_run[trace_id] = run_id
        self._trace_run.move_to_end(trace_id)
        while len(self._trace_run) > TRACES_MAX:
            self._trace_run.popitem(last=False)
        _, waiting = self._held.pop(trace_id, (0.0, []))
        if waiting:
            self._held_count -= len(waiting)
            inbox = self._runs[run_id]
            for span in waiting:
                inbox.add(span)

    def _hold(self, span: Span) -> None:
        since, waiting = self._held.setdefault(span.trace_id, (self._clock(), []))
        waiting.append(span)
        self._held_count += 1
        while self._held_count > HOLD_MAX:
            _, (_, oldest) = self._held.popitem(last=False)
            self._held_count -= len(oldest)
            self._drop(len(oldest), "the hold is full")

    def _expire(self) -> None:
        limit = self._clock() - self._hold_s
        while self._held:
            trace_id, (since, waiting) = next(iter(self._held.items()))
            if since > limit:
                break
            del self._held[trace_id]
            self._held_count -= len(waiting)
            self._drop(
                len(waiting), f"no span of their trace named a live run in {self._hold_s:g} s"
            )

    def _drop(self, count: int, why: str) -> None:
        if count:
            self.dropped += count
            logger.info(f"otel: dropped {count} span(s): {why} ({self.dropped} dropped so far)")
