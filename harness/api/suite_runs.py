"""Suite runs: the runs one ``POST /runs`` spawned, as loopcall's summary and as Cekura's result.

A suite run's record (when it was asked for, its concurrency limit, frequency,
suite and agent) is kept in ``suite_runs``; its outcome is counted from its runs.
``GET /suite-runs/{id}`` carries its report (``harness.reports``: success rate with
its Wilson interval, criteria, figures, flaky cases, failures by cause), and
``GET /suite-runs/{a}/compare/{b}`` says what changed from one to the other.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field

from harness.api.deps import CatalogueDep, RepoDep
from harness.api.pages import Page, PageDep, page_of
from harness.api.plan import MAX_RUNS_PER_REQUEST
from harness.db.runs import RunRepository
from harness.db.tables import SuiteRunRow
from harness.models import Run
from harness.reports import ALPHA, Comparison, SuiteReport, build_report, compare_runs
from harness.views import to_cekura_result

__all__ = ["router"]

router = APIRouter(tags=["suite runs"])
TERMINAL = ("completed", "failed", "cancelled")


class SuiteRunSummary(BaseModel):
    """A suite run in a list: what was asked for and how its runs stand."""

    id: str
    created_at: datetime | None = None
    suite_id: str | None = None
    agent_id: str | None = None
    frequency: int | None = None
    concurrency_limit: int | None = None
    status_counts: dict[str, int]
    passed: int
    finished: int
    success_rate: float


class SuiteRun(SuiteRunSummary):
    run_ids: list[str]
    report: SuiteReport = Field(
        description="Success rate with its 95 % Wilson interval, each criterion's pass rate, "
        "the worst criteria, figures with p50/p90, flaky cases, failures grouped by cause."
    )


def _outcome(status_counts: dict[str, int], passed: int) -> dict[str, Any]:
    finished = sum(n for status, n in status_counts.items() if status in TERMINAL)
    return {
        "status_counts": status_counts,
        "passed": passed,
        "finished": finished,
        "success_rate": round(passed / finished, 4) if finished else 0.0,
    }


def _request(row: SuiteRunRow | None) -> dict[str, Any]:
    if row is None:  # a suite run stored before suite runs had records
        return {}
    return {
        "created_at": row.created_at,
        "suite_id": row.suite_id,
        "agent_id": row.agent_id,
        "frequency": row.frequency,
        "concurrency_limit": row.concurrency_limit,
    }


async def _runs(repo: RunRepository, suite_run_id: str) -> list[Run]:
    page = await repo.page(suite_run_id=suite_run_id, limit=MAX_RUNS_PER_REQUEST)
    if not page.items:
        raise HTTPException(404, f"no suite run {suite_run_id!r}")
    return sorted(page.items, key=lambda run: run.created_at)


@router.get("/suite-runs", response_model=Page[SuiteRunSummary])
async def list_suite_runs(
    repo: RepoDep, catalogue: CatalogueDep, page: PageDep, suite_id: str | None = None
) -> Page[SuiteRunSummary]:
    rows, total = await catalogue.suite_runs.page(
        suite_id=suite_id, limit=page.limit, offset=page.offset
    )
    outcomes = await repo.outcomes([row.id for row in rows])
    items = []
    for row in rows:
        counts = outcomes[row.id]
        status_counts: Counter[str] = Counter()
        for (status, _), n in counts.items():
            status_counts[status] += n
        passed = sum(n for (status, ok), n in counts.items() if ok and status == "completed")
        items.append(
            SuiteRunSummary(id=row.id, **_request(row), **_outcome(dict(status_counts), passed))
        )
    return page_of(items, total, page)


@router.get("/suite-runs/{suite_run_id}", response_model=SuiteRun)
async def get_suite_run(suite_run_id: str, repo: RepoDep, catalogue: CatalogueDep) -> SuiteRun:
    runs = await _runs(repo, suite_run_id)
    passed = sum(1 for r in runs if r.passed)
    return SuiteRun(
        id=suite_run_id,
        run_ids=[r.id for r in runs],
        **_request(await catalogue.suite_runs.get(suite_run_id)),
        **_outcome(dict(Counter(r.status for r in runs)), passed),
        report=build_report(runs),
    )


@router.get("/suite-runs/{a}/compare/{b}", response_model=Comparison)
async def compare_suite_runs(
    a: str,
    b: str,
    repo: RepoDep,
    alpha: Annotated[float, Query(gt=0, lt=1, description="significance level")] = ALPHA,
) -> Comparison:
    """What changed from suite run ``a`` to ``b``: rates by Fisher's exact test, figures by
    Mann-Whitney U, Holm-adjusted; each change improved, regressed or not significant."""
    runs_a, runs_b = await _runs(repo, a), await _runs(repo, b)
    return compare_runs(runs_a, runs_b, alpha=alpha, names=(a, b))


@router.get(
    "/test_framework/v1/results/{suite_run_id}/",
    summary="A suite run as a Cekura result",
    tags=["peer views"],
)
async def cekura_result(suite_run_id: str, repo: RepoDep) -> dict[str, Any]:
    return to_cekura_result(await _runs(repo, suite_run_id), result_id=suite_run_id)
