"""The peers' read endpoints: a client written for Vapi or Yappr reads loopcall's runs."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException

from harness.api.deps import RepoDep
from harness.errors import RunNotFound
from harness.models import Run
from harness.views import to_vapi_eval_run, to_yappr_evaluation, to_yappr_run, to_yappr_turns

__all__ = ["router"]

router = APIRouter(tags=["peer views"])


async def _get(repo: RepoDep, run_id: str) -> Run:
    try:
        return await repo.get(run_id)
    except RunNotFound as exc:
        raise HTTPException(404, f"no run {run_id!r}") from exc


@router.get("/eval/run/{run_id}", summary="A run as a Vapi EvalRun")
async def vapi_eval_run(run_id: str, repo: RepoDep) -> dict[str, Any]:
    return to_vapi_eval_run(await _get(repo, run_id))


@router.get("/agent-eval/runs/{run_id}", summary="A run as a Yappr agent-eval run")
async def yappr_run(run_id: str, repo: RepoDep) -> dict[str, Any]:
    return to_yappr_run(await _get(repo, run_id))


@router.get("/agent-eval/runs/{run_id}/turns", summary="A run's turns, Yappr-style")
async def yappr_turns(run_id: str, repo: RepoDep) -> dict[str, Any]:
    return to_yappr_turns(await _get(repo, run_id))


@router.get("/agent-eval/runs/{run_id}/evaluation", summary="A run's evaluation, Yappr-style")
async def yappr_evaluation(run_id: str, repo: RepoDep) -> dict[str, Any]:
    return to_yappr_evaluation(await _get(repo, run_id))
