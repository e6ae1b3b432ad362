"""The Cekura view's ``failed_reasons``: why the finished runs did not pass, grouped.

Part of ``views/cekura.py``'s result.  A call that failed groups by its error (or
how it ended); a completed run that did not pass groups under each criterion it
failed (its description, or ``criterion_label``), with the distinct reasons the
runs gave.  Groups rank by how many runs they hold.
"""

from __future__ import annotations

from typing import Any

from harness.models import Run
from harness.views.labels import criterion_label

__all__ = ["FINISHED", "failed_reasons"]

FINISHED = ("completed", "failed", "cancelled")


def failed_reasons(runs: list[Run], total_failed: int) -> dict[str, Any]:
    """Group why finished runs did not pass: call errors, then failing criteria."""
    groups: dict[str, dict[str, Any]] = {}

    def add(description: str, run_id: str, reason: str) -> None:
        group = groups.setdefault(description, {"run_ids": [], "reasons": []})
        if run_id not in group["run_ids"]:
            group["run_ids"].append(run_id)
        if reason not in group["reasons"]:
            group["reasons"].append(reason)

    for run in runs:
        if run.status not in FINISHED or run.passed:
            continue
        if run.status != "completed":
            reason = run.error or f"ended by {run.termination_reason or 'an unknown reason'}"
            add(f"Call {run.status}: {reason}", run.id, reason)
            continue
        failing = [r for r in run.evaluation.results if not r.passed] if run.evaluation else []
        if not failing:
            add("Run completed without a passing evaluation", run.id, "not scored")
        for result in failing:
            add(criterion_label(result.assertion), run.id, result.reason)
    ranked = sorted(groups.items(), key=lambda item: -len(item[1]["run_ids"]))
    return {
        "issues": [
            {
                "rank": rank,
                "run_ids": group["run_ids"],
                "description": description,
                "affected_count": len(group["run_ids"]),
                "reasons": group["reasons"],
            }
            for rank, (description, group) in enumerate(ranked, start=1)
        ],
        "total_failed_runs": total_failed,
    }
