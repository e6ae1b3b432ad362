"""The controller's ``POST /v1/traces``: agents' OTLP/HTTP spans, into the runs they name.

Stage: the controller's edge for OpenTelemetry (``harness.ingest.otel`` does the
work).  Who may post: an OTLP exporter sends fixed headers for its whole
process, which serves many calls at once, so the controller's API key
(``Authorization: Bearer <key>``, e.g. ``OTEL_EXPORTER_OTLP_HEADERS``) lets spans
join any live run they name; a run's own token (handed to the agent with its
tools URL) lets them join that run only.  Anything else is 401.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request

from harness.ingest.otel import ALL_RUNS, TraceDesk, traces_router

__all__ = ["router"]


async def _caller(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token:
        if await request.app.state.keys.verify(token):
            return ALL_RUNS
        desk: TraceDesk = request.app.state.traces
        run_id = desk.run_for_token(token)
        if run_id is not None:
            return run_id
    raise HTTPException(
        401,
        "an API key or the run's token is required (Authorization: Bearer ...)",
        headers={"WWW-Authenticate": "Bearer"},
    )


def router(desk: TraceDesk) -> APIRouter:
    """``/v1/traces`` delivering to ``desk``."""
    return traces_router(desk.accept, _caller)
