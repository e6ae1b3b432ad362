"""``/runs``: create (queued at once), read, list, long-poll, events, cancel, delete, recording."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, StreamingResponse
from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, ValidationError, field_validator

from harness.api.deps import DispatcherDep, RepoDep, SettingsDep, SinkDep, run_or_404
from harness.models import Case, Persona, Run, RunStatus
from harness.settings import Settings
from telephony import TargetError, parse_target

__all__ = ["router"]

router = APIRouter(tags=["runs"])
TERMINAL = ("completed", "failed", "cancelled")
SSE_KEEPALIVE_S = 15.0


class PersonaOverride(BaseModel):
    """Fields that replace the case's persona for these runs (Cekura's personality override)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1)
    identity_prompt: str | None = None
    description: str | None = None
    behavior_traits: dict[str, str] | None = None
    language: str | None = None
    voice: str | None = None
    speaking_rate: float | None = Field(default=None, gt=0.25, le=4.0)


class RunCreate(BaseModel):
    """``POST /runs``: a case, a target, and how many times to run it."""

    case: Case
    persona: PersonaOverride | None = Field(
        default=None, description="override some of the case persona's fields"
    )
    concurrency_limit: int | None = Field(
        default=None, ge=1, le=500, description="at most this many of these runs at once"
    )
    target: str = Field(
        description="e.g. webrtc://127.0.0.1:7860/api/offer",
        pattern=r"^webrtcs?://[^/\s]+",
        max_length=2048,
    )
    frequency: int = Field(default=1, ge=1, le=100, description="runs of the case")
    webhook_url: AnyHttpUrl | None = Field(
        default=None, description="POSTed each run when it ends, signed (X-Loopcall-Signature)"
    )

    @field_validator("target")
    @classmethod
    def _target_parses(cls, value: str) -> str:
        try:
            parse_target(value)
        except TargetError as exc:
            raise ValueError(str(exc)) from exc
        return value

    def case_as_run(self) -> Case:
        """The case with the persona override applied (validated like any persona)."""
        if self.persona is None:
            return self.case
        merged = {**self.case.persona.model_dump(), **self.persona.model_dump(exclude_none=True)}
        return self.case.model_copy(update={"persona": Persona.model_validate(merged)})


class RunsCreated(BaseModel):
    run_ids: list[str]
    suite_run_id: str


class RunList(BaseModel):
    items: list[Run]
    total: int
    limit: int
    offset: int


def _check_hosts(body: RunCreate, settings: Settings) -> None:
    """422 for a target or webhook on a host the controller may not call."""
    checks = [("target", parse_target(body.target).host)]
    if body.webhook_url is not None:
        checks.append(("webhook_url", body.webhook_url.host or ""))
    errors = [
        {
            "loc": ("body", field),
            "type": "value_error",
            "input": host,
            "msg": f"host {host!r} is not in this controller's LOOPCALL_ALLOWED_HOSTS",
        }
        for field, host in checks
        if not settings.host_allowed(host)
    ]
    if errors:
        raise RequestValidationError(errors)


@router.post("/runs", status_code=202, response_model=RunsCreated)
async def create_runs(
    body: RunCreate, repo: RepoDep, dispatcher: DispatcherDep, settings: SettingsDep
) -> RunsCreated:
    _check_hosts(body, settings)
    suite_run_id = str(uuid.uuid4())  # one request, one suite run
    channel = parse_target(body.target).channel
    try:
        case = body.case_as_run()
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", "persona", *e["loc"])} for e in exc.errors()]
        ) from exc
    runs = [
        Run(case=case, target=body.target, channel=channel, suite_run_id=suite_run_id)
        for _ in range(body.frequency)
    ]
    for run in runs:
        await repo.save(run)
        if body.webhook_url is not None:
            await repo.set_webhook(run.id, str(body.webhook_url))
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
    ended = dispatcher.ended(run_id)  # before reading, so an ending in between is not missed
    run = await run_or_404(repo, run_id)
    if wait_s > 0 and run.status not in TERMINAL:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ended.wait(), wait_s)
        run = await run_or_404(repo, run_id)
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
