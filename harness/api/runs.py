"""``/runs``: create (queued at once), read, list, long-poll, events, cancel, delete, recording."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Response
from fastapi.responses import FileResponse, StreamingResponse
from pydantic import BaseModel

from harness.api.deps import (
    CatalogueDep,
    DispatcherDep,
    RepoDep,
    SettingsDep,
    SinkDep,
    run_or_404,
)
from harness.api.egress import check_urls
from harness.api.plan import RunCreate, plan_runs
from harness.db.tables import SuiteRunRow
from harness.models import Run, RunStatus, utcnow
from telephony import parse_target

__all__ = ["router"]

router = APIRouter(tags=["runs"])
TERMINAL = ("completed", "failed", "cancelled")
SSE_KEEPALIVE_S = 15.0


class RunsCreated(BaseModel):
    run_ids: list[str]
    suite_run_id: str


class RunList(BaseModel):
    items: list[Run]
    total: int
    limit: int
    offset: int


@router.post("/runs", status_code=202, response_model=RunsCreated)
async def create_runs(
    body: RunCreate,
    repo: RepoDep,
    catalogue: CatalogueDep,
    dispatcher: DispatcherDep,
    settings: SettingsDep,
) -> RunsCreated:
    plan = await plan_runs(body, catalogue)
    whom = "target" if body.target is not None else "agent_id"
    urls = [(whom, item.target) for item in plan.items]
    if body.webhook_url is not None:
        urls.append(("webhook_url", str(body.webhook_url)))
    await check_urls(settings.egress_policy(), urls)
    suite_run_id = str(uuid.uuid4())  # one request, one suite run
    runs = [
        Run(
            case=item.case,
            target=item.target,
            channel=parse_target(item.target).channel,
            suite_run_id=suite_run_id,
            suite_name=plan.suite_name,
            suite_id=plan.suite_id,
            case_id=item.case_id,
            agent_id=item.agent_id,
            persona_id=item.persona_id,
        )
        for item in plan.items
        for _ in range(body.frequency)
    ]
    suite_run = SuiteRunRow(
        id=suite_run_id,
        created_at=utcnow(),
        concurrency_limit=body.concurrency_limit,
        frequency=body.frequency,
        suite_id=plan.suite_id,
        agent_id=body.agent_id,
    )
    webhook = str(body.webhook_url) if body.webhook_url is not None else None
    await repo.create(runs, suite_run=suite_run, webhook_url=webhook)
    for run in runs:
        dispatcher.submit(run.id, group=suite_run_id, limit=body.concurrency_limit)
    return RunsCreated(run_ids=[r.id for r in runs], suite_run_id=suite_run_id)


@router.get("/runs", response_model=RunList)
async def list_runs(
    repo: RepoDep,
    status: RunStatus | None = None,
    suite_run_id: str | None = None,
    case_name: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> RunList:
    page = await repo.page(
        status=status, suite_run_id=suite_run_id, case_name=case_name, limit=limit, offset=offset
    )
    return RunList(items=page.items, total=page.total, limit=page.limit, offset=page.offset)


@router.get("/runs/{run_id}", response_model=Run)
async def get_run(
    run_id: str,
    repo: RepoDep,
    dispatcher: DispatcherDep,
    wait_s: Annotated[float, Query(ge=0, le=120, description="long-poll until it ends")] = 0,
) -> Run:
    """The run; while it runs, as it is now (its events and live transcript so far)."""
    ended = dispatcher.ended(run_id)  # before reading, so an ending in between is not missed
    run = await run_or_404(repo, run_id)
    if wait_s > 0 and run.status not in TERMINAL:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ended.wait(), wait_s)
        run = await run_or_404(repo, run_id)
    if run.status == "running":  # what it has said and heard so far, not just its start
        run = dispatcher.live(run_id) or run
    return run


@router.get(
    "/runs/{run_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "server-sent events"}},
)
async def run_events(run_id: str, repo: RepoDep, dispatcher: DispatcherDep) -> StreamingResponse:
    """Server-sent events: the run's status, then each progress event (live transcript
    included) until it ends."""
    queue = dispatcher.subscribe(run_id)  # before reading, so no event is missed
    try:
        run = await run_or_404(repo, run_id)
    except HTTPException:
        dispatcher.unsubscribe(run_id, queue)
        raise

    async def stream() -> AsyncIterator[str]:
        try:
            yield _sse("status", {"run_id": run.id, "status": run.status})
            if run.status in TERMINAL:
                return
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), SSE_KEEPALIVE_S)
                except TimeoutError:
                    yield ": keepalive\n\n"
                    continue
                if event is None:
                    final = await run_or_404(repo, run_id)
                    yield _sse(
                        "end",
                        {
                            "run_id": run_id,
                            "status": final.status,
                            "termination_reason": final.termination_reason,
                        },
                    )
                    return
                yield _sse("progress", event)
        finally:
            dispatcher.unsubscribe(run_id, queue)

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )


def _sse(kind: str, data: dict[str, Any]) -> str:
    return f"event: {kind}\ndata: {json.dumps(data)}\n\n"


@router.post("/runs/{run_id}/cancel", response_model=Run)
async def cancel_run(run_id: str, repo: RepoDep, dispatcher: DispatcherDep) -> Run:
    run = await run_or_404(repo, run_id)
    if run.status in TERMINAL:
        raise HTTPException(409, f"run {run_id} has already ended ({run.status})")
    return await dispatcher.cancel(run_id)


@router.delete("/runs/{run_id}", status_code=204)
async def delete_run(run_id: str, repo: RepoDep, dispatcher: DispatcherDep) -> Response:
    run = await run_or_404(repo, run_id)
    if run.status not in TERMINAL:
        raise HTTPException(409, f"run {run_id} is {run.status}: cancel it first")
    await repo.delete(run_id)
    return Response(status_code=204)


@router.get("/runs/{run_id}/recording", response_class=FileResponse)
async def get_recording(run_id: str, repo: RepoDep, sink: SinkDep) -> FileResponse:
    await run_or_404(repo, run_id)
    path = sink.recording_path(run_id)
    if not path.is_file():
        raise HTTPException(404, f"run {run_id} has no recording")
    return FileResponse(path, media_type="audio/wav", filename=f"{run_id}.wav")
