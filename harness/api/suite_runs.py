"""Suite runs: the runs one ``POST /runs`` spawned, as loopcall's summary and as Cekura's result."""

from __future__ import annotations

from collections import Counter
from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel

from harness.api.deps import RepoDep
from harness.db.runs import RunRepository
from harness.models import Run
from harness.views import to_cekura_result

__all__ = ["router"]

router = APIRouter(tags=["suite runs"])
MAX_RUNS = 1000


class SuiteRun(BaseModel):
    id: str
    run_ids: list[str]
    status_counts: dict[str, int]
    passed: int
    finished: int
    success_rate: float


async def _runs(repo: RunRepository, suite_run_id: str) -> list[Run]:
    page = await repo.page(suite_run_id=suite_run_id, limit=MAX_RUNS)
    if not page.items:
        raise HTTPException(404, f"no suite run {suite_run_id!r}")
    return sorted(page.items, key=lambda run: run.created_at)


@router.get("/suite-runs/{suite_run_id}", response_model=SuiteRun)
async def get_suite_run(suite_run_id: str, repo: RepoDep) -> SuiteRun:
    runs = await _runs(repo, suite_run_id)
    finished = [r for r in runs if r.status in ("completed", "failed", "cancelled")]
    passed = sum(1 for r in finished if r.passed)
    return SuiteRun(
        id=suite_run_id,
        run_ids=[r.id for r in runs],
        status_counts=dict(Counter(r.status for r in runs)),
        passed=passed,
        finished=len(finished),
        success_rate=round(passed / len(finished), 4) if finished else 0.0,
    )


@router.get(
    "/test_framework/v1/results/{suite_run_id}/",
    summary="A suite run as a Cekura result",
    tags=["peer views"],
)
async def cekura_result(suite_run_id: str, repo: RepoDep) -> dict[str, Any]:
    return to_cekura_result(await _runs(repo, suite_run_id), result_id=suite_run_id)
