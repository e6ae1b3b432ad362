"""``/benches``: ``loopcall bench`` through the controller (start, follow, read, cancel).

A bench runs in the controller's process beside the dispatcher, with its own
concurrency (a bench measures; it does not queue behind other runs).  Its calls
are stored runs like any other (``suite_run_id`` is the bench's id), and its
report lives under ``DATA_DIR/benches/<id>/`` (``report.json``, ``report.html``),
rewritten after every level, so ``GET /benches/{id}`` shows the levels done so
far.  A controller that stops mid-bench cancels it; one that finds a bench still
``running`` at start ends it as failed with that reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse
from loguru import logger
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from harness.api.bodies import body_error
from harness.api.deps import CatalogueDep, SecretBoxDep, SettingsDep
from harness.api.egress import check_urls
from harness.api.pages import Page, PageDep, page_of
from harness.api.plan import InlineCase, RunCreate, check_target, plan_runs
from harness.api.reach import AgentUnavailable, reach_agent
from harness.bench.models import BenchConfig, BenchReport
from harness.bench.report import write_report
from harness.bench.runner import run_bench
from harness.models import utcnow
from harness.orchestrator import RunOptions
from harness.redact import ScrubbingSink, scrub_model
from harness.store import RunSink
from runtime.tasks import cancel_and_wait, spawn
from telephony import TARGET_PATTERN, DialOptions, parse_target

__all__ = ["BenchManager", "router"]

router = APIRouter(tags=["benches"])
INTERRUPTED = "the controller stopped while this bench was in progress"


class BenchCreate(BaseModel):
    """``POST /benches``: what to call with (a case or a stored case), whom (a target or a
    stored agent), and the levels, as ``loopcall bench`` takes them."""

    model_config = ConfigDict(extra="forbid")

    case_id: str | None = Field(default=None, max_length=64, description="a stored case")
    case: InlineCase | None = Field(
        default=None, validate_default=True, description="a case inline (as POST /runs takes it)"
    )
    target: str | None = Field(default=None, pattern=TARGET_PATTERN, max_length=2048)
    agent_id: str | None = Field(default=None, max_length=64, validate_default=True)
    calls: int | None = Field(default=None, ge=1, le=1000, description="calls per level")
    concurrency: list[Annotated[int, Field(ge=1, le=5000)]] = Field(min_length=1, max_length=20)
    ramp_s: float | None = Field(default=None, ge=0, le=600)
    oracle_delay_ms: float | None = Field(default=None, ge=0)
    lag_bound_ms: float = Field(default=20.0, gt=0, le=1000)
    transcribe: bool = True
    caller: Literal["lean", "pipecat"] = "lean"

    @field_validator("target")
    @classmethod
    def _target_parses(cls, value: str | None) -> str | None:
        return check_target(value)

    @field_validator("case")
    @classmethod
    def _one_case(cls, value: InlineCase | None, info: ValidationInfo) -> InlineCase | None:
        if (value is None) == (info.data.get("case_id") is None):
            raise ValueError("give one of 'case' (inline) or 'case_id'")
        return value

    @field_validator("agent_id")
    @classmethod
    def _one_agent(cls, value: str | None, info: ValidationInfo) -> str | None:
        if (value is None) == (info.data.get("target") is None):
            raise ValueError("give one of 'target' or 'agent_id'")
        return value


class BenchSummary(BaseModel):
    id: str
    status: str
    created_at: str
    target: str
    levels_done: int
    concurrency: list[int]
    error: str | None = None


class BenchManager:
    """The controller's benches: running tasks and their report directories."""

    def __init__(self, root: Path, sink: RunSink, options: RunOptions) -> None:
        self.root = root
        self.sink = sink
        self.options = options
        self.tasks: dict[str, asyncio.Task[None]] = {}

    def directory(self, bench_id: str) -> Path:
        return self.root / bench_id

    def recover(self) -> list[str]:
        """End as failed the benches a previous controller left running."""
        ended = []
        for report in self.reports():
            if report.status == "running":
                report.status, report.error, report.ended_at = "failed", INTERRUPTED, utcnow()
                write_report(report, self.directory(report.id))
                ended.append(report.id)
        return ended

    def reports(self) -> list[BenchReport]:
        if not self.root.is_dir():
            return []
        found = []
        for path in self.root.glob("*/report.json"):
            with contextlib.suppress(ValueError, OSError):
                found.append(BenchReport.model_validate_json(path.read_text(encoding="utf-8")))
        return sorted(found, key=lambda r: r.created_at, reverse=True)

    def get(self, bench_id: str) -> BenchReport:
        path = self.directory(bench_id) / "report.json"
        if not path.is_file():
            raise HTTPException(404, f"no bench {bench_id!r}")
        return BenchReport.model_validate_json(path.read_text(encoding="utf-8"))

    def start(
        self,
        config: BenchConfig,
        dial: DialOptions | None,
        agent_id: str | None,
        secrets: Sequence[str] = (),
    ) -> BenchReport:
        """Start a bench; ``secrets`` (the agent's and the options') are masked in its
        runs and its report, as the dispatcher does for runs."""
        bench_id = str(uuid.uuid4())
        directory = self.directory(bench_id)
        secrets = [*secrets, *self.options.secrets()]

        def write(report: BenchReport) -> None:
            write_report(scrub_model(report, secrets), directory)

        first = BenchReport(
            id=bench_id,
            target=config.target,
            channel=parse_target(config.target).channel,
            concurrency=config.concurrency,
            case_name=config.case.name,
            oracle_delay_ms=config.oracle_delay_ms,
            lag_bound_ms=config.lag_bound_ms,
            caller=config.caller,
        )
        write(first)

        async def bench() -> None:
            report = first
            try:
                report = await run_bench(
                    config,
                    ScrubbingSink(self.sink, secrets),
                    bench_id=bench_id,
                    options=self.options,
                    dial=dial,
                    agent_id=agent_id,
                    on_level=write,
                )
            except asyncio.CancelledError:
                report = self.get(bench_id)
                report.status, report.error, report.ended_at = "cancelled", "cancelled", utcnow()
                raise
            except Exception as exc:  # logged by spawn; the report says so too
                report = self.get(bench_id)
                report.status, report.error, report.ended_at = "failed", str(exc), utcnow()
                raise
            finally:
                write(report)
                self.tasks.pop(bench_id, None)
                logger.info(f"bench {bench_id}: {report.status}")

        self.tasks[bench_id] = spawn(bench(), name=f"bench-{bench_id[:8]}")
        return first

    async def cancel(self, bench_id: str) -> None:
        await cancel_and_wait(self.tasks.get(bench_id))

    async def close(self) -> None:
        for bench_id in list(self.tasks):
            await self.cancel(bench_id)


def _manager(request: Request) -> BenchManager:
    return request.app.state.benches  # type: ignore[no-any-return]


BenchesDep = Annotated[BenchManager, Depends(_manager)]


@router.post("/benches", status_code=202, response_model=BenchReport)
async def create_bench(
    body: BenchCreate,
    benches: BenchesDep,
    catalogue: CatalogueDep,
    box: SecretBoxDep,
    settings: SettingsDep,
) -> BenchReport:
    ceiling = settings.bench_max_concurrency
    if max(body.concurrency) > ceiling:
        raise body_error(
            "concurrency",
            f"this controller runs benches of at most {ceiling} calls at once "
            "(LOOPCALL_BENCH_MAX_CONCURRENCY)",
            body.concurrency,
        )
    running = next(iter(benches.tasks), None)
    if running is not None:
        # Two benches at once would each measure the other's load.
        raise HTTPException(409, f"bench {running} is running; one bench at a time")
    try:
        request = RunCreate(
            case=body.case, case_id=body.case_id, target=body.target, agent_id=body.agent_id
        )
    except ValidationError as exc:  # the body passed its own checks: name the field anyway
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
        ) from exc
    plan = await plan_runs(request, catalogue)
    item = plan.items[0]
    whom = "target" if body.target is not None else "agent_id"
    await check_urls(settings.egress_policy(), [(whom, item.target)])
    reached = None
    if item.agent_id is not None:
        try:
            reached = await reach_agent(item.agent_id, catalogue, box, "bench")
        except AgentUnavailable as exc:
            raise HTTPException(409, str(exc)) from exc
    config = BenchConfig(
        target=item.target,
        case=item.case,
        calls=body.calls,
        concurrency=body.concurrency,
        ramp_s=body.ramp_s,
        oracle_delay_ms=body.oracle_delay_ms,
        lag_bound_ms=body.lag_bound_ms,
        transcribe=body.transcribe,
        caller=body.caller,
    )
    if reached is None:
        return benches.start(config, None, item.agent_id)
    return benches.start(config, reached.dial, item.agent_id, reached.secrets)


@router.get("/benches", response_model=Page[BenchSummary])
async def list_benches(benches: BenchesDep, page: PageDep) -> Page[BenchSummary]:
    reports = benches.reports()
    items = [
        BenchSummary(
            id=r.id,
            status=r.status,
            created_at=r.created_at.isoformat(),
            target=r.target,
            levels_done=len(r.levels),
            concurrency=r.concurrency,
            error=r.error,
        )
        for r in reports[page.offset : page.offset + page.limit]
    ]
    return page_of(items, len(reports), page)


@router.get("/benches/{bench_id}", response_model=BenchReport)
async def get_bench(
    bench_id: str,
    benches: BenchesDep,
    wait_s: Annotated[float, Query(ge=0, le=3600, description="long-poll until it ends")] = 0,
) -> BenchReport:
    task = benches.tasks.get(bench_id)
    if wait_s and task is not None:
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(task), wait_s)
    return benches.get(bench_id)


@router.get("/benches/{bench_id}/report.html", response_class=HTMLResponse)
async def get_bench_html(bench_id: str, benches: BenchesDep) -> HTMLResponse:
    benches.get(bench_id)  # 404 for an unknown id
    path = benches.directory(bench_id) / "report.html"
    return HTMLResponse(path.read_text(encoding="utf-8"))


@router.post("/benches/{bench_id}/cancel", response_model=BenchReport)
async def cancel_bench(bench_id: str, benches: BenchesDep) -> BenchReport:
    report = benches.get(bench_id)
    if report.status != "running":
        raise HTTPException(409, f"bench {bench_id!r} is {report.status}, not running")
    await benches.cancel(bench_id)
    return benches.get(bench_id)
