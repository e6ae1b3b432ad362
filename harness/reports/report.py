"""A suite run's report, computed from its ``Run``s alone.

Stage: after the runs are stored; the CLI prints it at the end of a suite and the
controller serves it with the suite run.  In: the runs (any order).  Out: a
``SuiteReport``.  Decisions a reader should know:

* The success rate counts finished runs (completed, failed, cancelled); a run
  still queued or running counts in ``runs`` and ``status_counts`` only.
* Criterion pass rates count completed runs: a call that failed is not a verdict
  on what the agent said, and shows up under ``failures`` with its error.
* Figures: a run's own latency p50/p90, time to first audio, transport round
  trip and duration (per run), the agent's latency pooled over every vouched
  turn (``vouched_latencies``: measured and not degraded), and each
  ``metrics.dynamics`` figure over the runs that have dynamics.
* Flaky: a case with at least one passing and one not passing finished run.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from harness.models import DYNAMICS_METRICS, Criterion, Run, vouched_latencies
from harness.reports.causes import failure_groups
from harness.reports.models import CriterionStat, FlakyCase, NumericStat, Rate, SuiteReport
from harness.reports.stats import percentiles, wilson

__all__ = [
    "FINISHED",
    "WORST",
    "CriterionId",
    "build_report",
    "criterion_id",
    "criterion_tallies",
    "figures",
    "rate",
]

FINISHED = ("completed", "failed", "cancelled")
WORST = 5  # criteria listed as the worst performing
# The fields that refine a check (``harness.models.case``); role and must_match refine
# a pattern only.
_REFINEMENTS = ("args_match", "times", "after", "threshold")


@dataclass(frozen=True)
class CriterionId:
    """What makes two criteria the same across cases: kind, check and description."""

    kind: str
    check: str
    description: str

    @property
    def key(self) -> str:
        text = f"{self.kind}\n{self.check}\n{self.description}"
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    @property
    def label(self) -> str:
        if self.description:
            return self.description
        check = self.check if len(self.check) <= 80 else self.check[:79] + "…"
        return f"{self.kind} {check}"


def criterion_id(criterion: Criterion) -> CriterionId:
    """The criterion's identity: its check with its refinements (a pattern's with its role
    and ``must_match``); weight does not count."""
    kind = criterion.kind
    keep = {kind, *_REFINEMENTS, *(("role", "must_match") if kind == "pattern" else ())}
    dumped = criterion.model_dump(mode="json", exclude_none=True)
    check = {name: value for name, value in dumped.items() if name in keep}
    return CriterionId(
        kind,
        json.dumps(check, sort_keys=True, separators=(",", ":"), ensure_ascii=False),
        criterion.description,
    )


def rate(passed: int, total: int) -> Rate:
    """``passed`` of ``total`` with its Wilson interval."""
    return Rate(
        passed=passed,
        total=total,
        rate=passed / total if total else None,
        ci95=wilson(passed, total),
    )


@dataclass
class _Tally:
    passed: int = 0
    total: int = 0
    cases: set[str] = field(default_factory=set)


def criterion_tallies(runs: Sequence[Run]) -> dict[CriterionId, _Tally]:
    """Per criterion identity: passes and verdicts over the completed runs."""
    tallies: dict[CriterionId, _Tally] = {}
    for run in runs:
        if run.status != "completed" or run.evaluation is None:
            continue
        for result in run.evaluation.results:
            tally = tallies.setdefault(criterion_id(result.assertion), _Tally())
            tally.total += 1
            tally.passed += int(result.passed)
            tally.cases.add(run.case.name)
    return tallies


def _criterion_stat(ident: CriterionId, tally: _Tally) -> CriterionStat:
    return CriterionStat(
        key=ident.key,
        kind=ident.kind,
        check=ident.check,
        description=ident.description,
        label=ident.label,
        cases=sorted(tally.cases),
        result=rate(tally.passed, tally.total),
    )


def figures(runs: Sequence[Run]) -> dict[str, tuple[str, list[float]]]:
    """Each figure's name -> (over "run" or "turn", its values), in a fixed order."""
    finished = [r for r in runs if r.status in FINISHED]
    per_run = {
        "latency_p50_ms": [r.metrics.latency_ms.p50 for r in finished],
        "latency_p90_ms": [r.metrics.latency_ms.p90 for r in finished],
        "time_to_first_audio_ms": [r.metrics.time_to_first_audio_ms for r in finished],
        "transport_rtt_ms": [r.metrics.transport_rtt_ms for r in finished],
        "duration_ms": [r.duration_ms for r in finished],
    }
    found: dict[str, tuple[str, list[float]]] = {
        "turn_latency_ms": ("turn", [x for r in finished for x in vouched_latencies(r.turns)])
    }
    for name, values in per_run.items():
        found[name] = ("run", [v for v in values if v is not None])
    with_dynamics = [r.metrics.dynamics for r in finished if r.metrics.dynamics is not None]
    for metric in DYNAMICS_METRICS:
        values = [d.figure(metric) for d in with_dynamics]
        found[f"dynamics.{metric}"] = ("run", [v for v in values if v is not None])
    return {name: pair for name, pair in found.items() if pair[1]}


def _numeric(name: str, over: str, values: list[float]) -> NumericStat:
    p50, p90 = percentiles(values, (50, 90))
    return NumericStat(
        name=name,
        over="turn" if over == "turn" else "run",
        n=len(values),
        p50=round(p50, 1),
        p90=round(p90, 1),
        mean=round(sum(values) / len(values), 1),
        min=round(min(values), 1),
        max=round(max(values), 1),
    )


def _flaky(runs: Sequence[Run]) -> list[FlakyCase]:
    by_case: dict[str, list[Run]] = {}
    for run in runs:
        if run.status in FINISHED:
            by_case.setdefault(run.case.name, []).append(run)
    flaky = []
    for name in sorted(by_case):
        passed = sum(1 for r in by_case[name] if r.passed)
        failed = len(by_case[name]) - passed
        if passed and failed:
            ids = [r.id for r in sorted(by_case[name], key=lambda r: (r.created_at, r.id))]
            flaky.append(FlakyCase(case=name, passed=passed, failed=failed, run_ids=ids))
    return flaky


def build_report(runs: Sequence[Run]) -> SuiteReport:
    """The report of ``runs`` (one suite run, or any set of runs)."""
    finished = [r for r in runs if r.status in FINISHED]
    criteria = [_criterion_stat(i, t) for i, t in criterion_tallies(runs).items()]
    criteria.sort(key=lambda c: (c.kind, c.label, c.key))
    failing = [c for c in criteria if c.result.passed < c.result.total]
    worst = sorted(
        failing,
        key=lambda c: (c.result.rate, -(c.result.total - c.result.passed), c.label, c.key),
    )[:WORST]
    return SuiteReport(
        suite_run_ids=sorted({r.suite_run_id for r in runs if r.suite_run_id}),
        suite_names=sorted({r.suite_name for r in runs if r.suite_name}),
        runs=len(runs),
        status_counts=dict(sorted(Counter(r.status for r in runs).items())),
        success=rate(sum(1 for r in finished if r.passed), len(finished)),
        criteria=criteria,
        worst_criteria=worst,
        metrics=[_numeric(name, over, values) for name, (over, values) in figures(runs).items()],
        flaky=_flaky(runs),
        failures=failure_groups(runs),
    )
