"""The last stage: a stored ``Run`` read in the shape of a peer's API.

Each module is one pure function from loopcall's records to a JSON-ready dict:
``vapi`` (an EvalRun), ``yappr`` (an agent-eval run and its sub-resources) and
``cekura`` (a result aggregating runs).  ``render`` picks one by name, so a
caller can offer every view behind one ``view`` parameter.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from harness.models import Run
from harness.views.cekura import to_cekura_result
from harness.views.vapi import to_vapi_eval_run
from harness.views.yappr import to_yappr_evaluation, to_yappr_run, to_yappr_turns

__all__ = [
    "VIEWS",
    "render",
    "to_cekura_result",
    "to_vapi_eval_run",
    "to_yappr_evaluation",
    "to_yappr_run",
    "to_yappr_turns",
]

VIEWS: tuple[str, ...] = ("loopcall", "vapi", "yappr", "cekura")


def render(run_or_runs: Run | Sequence[Run], view: str) -> dict[str, Any]:
    """Render one run (or, for ``cekura``, several) in the named view.

    ``loopcall``, ``vapi`` and ``yappr`` describe a single run; given a sequence
    they accept exactly one.  ``cekura`` aggregates any non-empty sequence.
    """
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; choose one of {', '.join(VIEWS)}")
    runs = [run_or_runs] if isinstance(run_or_runs, Run) else list(run_or_runs)
    if view == "cekura":
        return to_cekura_result(runs)
    if len(runs) != 1:
        raise ValueError(f"the {view!r} view renders exactly one run; got {len(runs)}")
    run = runs[0]
    if view == "vapi":
        return to_vapi_eval_run(run)
    if view == "yappr":
        return to_yappr_run(run)
    return run.model_dump(mode="json")
