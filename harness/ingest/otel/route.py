"""``POST /v1/traces``: OTLP/HTTP trace exports, as an ``APIRouter`` any loopcall server mounts.

Stage: the edge where an agent's spans come in.  In: an OTLP/HTTP export request
(protobuf or JSON, identity or gzip).  Out: its spans handed to ``deliver`` (the
``TraceDesk``'s ``accept``, or a registry that wraps it) and the OTLP response in
the request's own encoding, with ``partial_success.rejected_spans`` counting the
spans no live run took.  The body is read up to ``max_bytes`` (and inflated up to
the same limit): past it, 413.  Who may post is the mounting app's decision: it
passes ``authorize``, which maps the ``Authorization`` header to ``ALL_RUNS``, one
run id (a per-run token: its spans may join that run only), or raises 401.  The
app is made with ``FastAPI(telemetry=UNTRACED)``: an export makes no spans itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from harness.ingest.otel.desk import Accepted
from harness.ingest.otel.spans import (
    JSON,
    OtlpBodyError,
    OtlpTooLarge,
    Span,
    decode_traces,
    inflate,
    media_type,
)

__all__ = ["ALL_RUNS", "MAX_BYTES", "UNTRACED", "Authorize", "Deliver", "traces_router"]

# 4 MiB: an exporter's batch is at most 512 spans (BatchSpanProcessor's default);
# pipecat's LLM spans carry the whole chat context, a few KiB each.
MAX_BYTES = 4 * 1024 * 1024
ALL_RUNS = "*"

TRACES_PATH = "/v1/traces"


def _is_export(scope: MutableMapping[str, Any]) -> bool:
    return scope.get("path") == TRACES_PATH


# FastAPI traces its own requests whenever the process has a tracer provider: an
# export must not make spans of its own (in a process that exports to itself, each
# export would make the next).  Apps that mount the router: FastAPI(telemetry=UNTRACED).
UNTRACED: Any = {"exclude": _is_export}

Deliver = Callable[[list[Span], str | None], Accepted]
"""Hand spans on: (spans, the one run they may join or None for any) -> what became of them."""
Authorize = Callable[[Request], Awaitable[str]]
"""ALL_RUNS, or the run id a per-run token allows; raises HTTPException(401) otherwise."""


async def _read(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise OtlpTooLarge(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise OtlpTooLarge(limit)
    return bytes(body)


def _answer(accepted: Accepted, kind: str, dropped_why: str) -> Response:
    reply = ExportTraceServiceResponse()
    if accepted.dropped:
        reply.partial_success.rejected_spans = accepted.dropped
        reply.partial_success.error_message = dropped_why
    if kind == JSON:
        return Response(json_format.MessageToJson(reply, indent=None), media_type=JSON)
    return Response(reply.SerializeToString(), media_type=kind)


def traces_router(
    deliver: Deliver, authorize: Authorize, *, max_bytes: int = MAX_BYTES
) -> APIRouter:
    """The ``/v1/traces`` route, delivering to ``deliver`` what ``authorize`` lets in."""
    router = APIRouter(tags=["traces"])

    @router.post(
        TRACES_PATH,
        summary="OTLP/HTTP trace export (protobuf or JSON); spans join the run they name",
        responses={400: {}, 401: {}, 413: {}, 415: {}},
    )
    async def export_traces(request: Request) -> Response:
        allowed = await authorize(request)
        try:
            kind = media_type(request.headers.get("content-type"))
            body = inflate(
                await _read(request, max_bytes), request.headers.get("content-encoding"), max_bytes
            )
            spans = decode_traces(body, kind)
        except OtlpBodyError as exc:
            raise HTTPException(exc.status, str(exc)) from exc
        accepted = deliver(spans, None if allowed == ALL_RUNS else allowed)
        why = "spans name no live run (conversation.id or loopcall.run_id)"
        return _answer(accepted, kind, why)

    return router
