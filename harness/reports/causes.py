"""Failures grouped by cause, offline: what made a suite's runs fail, most common first.

Stage: part of the suite report.  A completed run that did not pass contributes
one cause per failed criterion: its kind and its reason with the particulars
blanked (quoted words, ids, URLs, numbers), so "p90 latency 1432 ms is over 800
ms" in one run and "... 1190 ms ..." in another are one cause.  A run that
failed or was cancelled contributes its status and its normalised error (or how
it ended).  Deterministic: the same runs give the same groups in the same order.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from harness.models import Run
from harness.reports.models import FailureGroup

__all__ = ["failure_groups", "normalise_reason"]

MAX_CAUSE = 160
_SUBSTITUTIONS = (
    (re.compile(r"[a-z][a-z0-9+.-]*://\S+", re.IGNORECASE), "<url>"),
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I), "<id>"),
    (re.compile(r"\b(?=[0-9a-f]*\d)[0-9a-f]{8,}\b", re.IGNORECASE), "<id>"),
    (re.compile(r"\"[^\"]*\"|“[^”]*”|(?<!\w)'[^']*'(?!\w)"), "'…'"),
    (re.compile(r"(?<![A-Za-z_\d])[-+]?\d+(?:[.,:]\d+)*"), "N"),
    (re.compile(r"\s+"), " "),
)


def normalise_reason(reason: str) -> str:
    """``reason`` with its particulars blanked: URLs, ids, quoted text, numbers."""
    text = reason.strip()
    for pattern, replacement in _SUBSTITUTIONS:
        text = pattern.sub(replacement, text)
    return text[:MAX_CAUSE]


@dataclass
class _Group:
    kind: str
    example: str
    run_ids: list[str] = field(default_factory=list)
    cases: set[str] = field(default_factory=set)


def _causes(run: Run) -> list[tuple[str, str, str]]:
    """(kind, cause, raw reason) for each reason ``run`` did not pass."""
    if run.status in ("failed", "cancelled"):
        raw = run.error or f"ended: {run.termination_reason or 'unknown'}"
        return [("run", f"run {run.status}: {normalise_reason(raw)}", raw)]
    if run.evaluation is None:
        return [("run", "run not scored", "the run has no evaluation")]
    failed = [r for r in run.evaluation.results if not r.passed]
    if not failed:  # only a pass threshold above the weighted score can do this
        raw = f"score {run.evaluation.score} below the pass threshold"
        return [("score", "score below the pass threshold", raw)]
    return [
        (r.assertion.kind, f"{r.assertion.kind}: {normalise_reason(r.reason)}", r.reason)
        for r in failed
    ]


def failure_groups(runs: Sequence[Run]) -> list[FailureGroup]:
    """The causes of the finished runs that did not pass, most runs first."""
    groups: dict[str, _Group] = {}
    for run in runs:
        if run.passed or run.status not in ("completed", "failed", "cancelled"):
            continue
        for kind, cause, raw in _causes(run):
            group = groups.setdefault(cause, _Group(kind, raw))
            if run.id not in group.run_ids:
                group.run_ids.append(run.id)
            group.cases.add(run.case.name)
    ordered = sorted(groups.items(), key=lambda item: (-len(item[1].run_ids), item[0]))
    return [
        FailureGroup(
            cause=cause,
            kind=group.kind,
            runs=len(group.run_ids),
            cases=sorted(group.cases),
            run_ids=group.run_ids,
            example=group.example,
        )
        for cause, group in ordered
    ]
