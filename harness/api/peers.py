"""The peers' read endpoints: a client written for Vapi or Yappr reads loopcall's runs."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from harness.api.deps import RepoDep, run_or_404
from harness.views import to_vapi_eval_run, to_yappr_evaluation, to_yappr_run, to_yappr_turns

__all__ = ["router"]

router = APIRouter(tags=["peer views"])


@router.get("/eval/run/{run_id}", summary="A run as a Vapi EvalRun")
async def vapi_eval_run(run_id: str, repo: RepoDep) -> dict[str, Any]:
    return to_vapi_eval_run(await run_or_404(repo, run_id))


@router.get("/agent-eval/runs/{run_id}", summary="A run as a Yappr agent-eval run")
async def yappr_run(run_id: str, repo: RepoDep) -> dict[str, Any]:
    return to_yappr_run(await run_or_404(repo, run_id))


@router.get("/agent-eval/runs/{run_id}/turns", summary="A run's turns, Yappr-style")
async def yappr_turns(run_id: str, repo: RepoDep) -> dict[str, Any]:
    return to_yappr_turns(await run_or_404(repo, run_id))


@router.get("/agent-eval/runs/{run_id}/evaluation", summary="A run's evaluation, Yappr-style")
async def yappr_evaluation(run_id: str, repo: RepoDep) -> dict[str, Any]:
    return to_yappr_evaluation(await run_or_404(repo, run_id))
