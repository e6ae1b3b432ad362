"""One or more ``Run``s read as a Cekura result (the "Get Result" response).

A Cekura result is a batch of runs (a suite run), so this view aggregates: a
single run renders as a result of one run.  Decisions a reader should know:

* Ids stay loopcall's strings (Cekura's are integers); ``runs`` is keyed by them.
* A run's ``success`` is ``Run.passed``; its ``expected_outcome.score`` is 100
  when it passed, else its evaluation score (0 without one).
* Each distinct criterion (by description, or a generated label when it has
  none) is a ``binary_qualitative`` metric scored 100/0 per run; its summary
  score is the percentage of evaluated runs that passed it.
* Latency, time to first audio and the turn-taking figures (``cekura_dynamics``)
  are ``numeric`` metrics.  Per run, latency is the run's own
  ``metrics.latency_ms``; across runs, p50 is the median of the pooled agent
  turns the runs vouch for (a ``degraded`` turn is left out, as it is of each
  run's own figure).  Cost, tokens and tool calls are ``extra_metrics``
  (``cekura_usage``).
* Counts: ``success`` = passed, ``failed`` = finished but not passed (failed,
  cancelled, or completed below the threshold), so success + failed = finished
  runs; ``success_rate`` = success / finished (0.0 while none has finished), and
  ``met``/``total_expected_outcome_count`` are the same two numbers.
* Run-id lists are disjoint: ``infra_failed_run_ids`` are runs whose call failed,
  ``expected_outcome_failed_run_ids`` completed runs that did not pass.
* The transcript uses Cekura's names for the sides: persona = "Testing Agent",
  agent = "Main Agent".  Loopcall-only data rides under each run's ``loopcall``.
"""

from __future__ import annotations

import statistics
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from harness.models import Criterion, Run, vouched_latencies
from harness.views.cekura_dynamics import run_metrics, summary_metrics
from harness.views.cekura_failures import FINISHED as _FINISHED
from harness.views.cekura_failures import failed_reasons
from harness.views.cekura_usage import usage_metrics
from harness.views.labels import criterion_label

__all__ = ["to_cekura_result"]


_ROLE = {"persona": "Testing Agent", "agent": "Main Agent"}
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_DNS, "loopcall")


def to_cekura_result(
    runs: Sequence[Run], *, name: str | None = None, result_id: str | int | None = None
) -> dict[str, Any]:
    """Render ``runs`` (one suite run, or a single run) as a Cekura result dict."""
    runs = list(runs)
    if not runs:
        raise ValueError("a Cekura result needs at least one run; got none")
    metric_ids = _metric_ids(runs)
    finished = [r for r in runs if r.status in _FINISHED]
    passed = [r for r in runs if r.passed]
    success_rate = round(len(passed) / len(finished), 4) if finished else 0.0
    suite_run_ids = {r.suite_run_id for r in runs}
    stamps = [t for r in runs for t in (r.created_at, r.started_at, r.ended_at) if t]
    return {
        "id": result_id if result_id is not None else _result_id(runs, suite_run_ids),
        "name": name or _result_name(runs),
        "agent": ", ".join(dict.fromkeys(r.target for r in runs)),
        "status": _result_status(runs),
        "met_expected_outcome_count": len(passed),
        "total_expected_outcome_count": len(finished),
        "success_rate": success_rate,
        "run_as_text": False,
        "is_cronjob": False,
        "runs": {r.id: _run(r, metric_ids) for r in runs},
        "overall_evaluation": _overall(runs, metric_ids, success_rate),
        "total_duration": _mmss(sum(r.duration_ms or 0 for r in runs)),
        "total_runs_count": len(runs),
        "completed_runs_count": sum(r.status == "completed" for r in runs),
        "success_runs_count": len(passed),
        "failed_runs_count": len(finished) - len(passed),
        "connected_run_ids": [r.id for r in runs if r.turns],
        "infra_failed_run_ids": [r.id for r in runs if r.status == "failed"],
        "expected_outcome_failed_run_ids": [
            r.id for r in runs if r.status == "completed" and not r.passed
        ],
        "success_run_ids": [r.id for r in passed],
        "scenarios": [
            {"id": sid, "name": sname}
            for sid, sname in dict.fromkeys((_scenario_id(r), r.case.name) for r in runs)
        ],
        "critical_categories": [],
        "failed_reasons": failed_reasons(runs, len(finished) - len(passed)),
        "run_execution_type": "voice",
        "created_at": _iso(min(r.created_at for r in runs)),
        "updated_at": _iso(max(stamps)),
    }


def _metric_ids(runs: list[Run]) -> dict[str, tuple[str, Criterion]]:
    """Criterion label -> (metric id, first such criterion), in order of appearance."""
    criteria = [c for r in runs for c in r.case.success_criteria]
    criteria += [res.assertion for r in runs if r.evaluation for res in r.evaluation.results]
    first = {criterion_label(c): c for c in reversed(criteria)}
    labels = dict.fromkeys(criterion_label(c) for c in criteria)
    return {label: (f"criterion_{n}", first[label]) for n, label in enumerate(labels, start=1)}


def _run(run: Run, metric_ids: dict[str, tuple[str, Criterion]]) -> dict[str, Any]:
    results = run.evaluation.results if run.evaluation else []
    explanation = [
        f"{'PASS' if r.passed else 'FAIL'} {criterion_label(r.assertion)}: {r.reason}"
        for r in results
    ]
    if run.error:
        explanation.append(f"ERROR {run.error}")
    metrics: list[dict[str, Any]] = [
        {
            "id": metric_ids[criterion_label(r.assertion)][0],
            "name": criterion_label(r.assertion),
            "type": "binary_qualitative",
            "score": 100 if r.passed else 0,
            "explanation": r.reason,
            "extra": {},
        }
        for r in results
    ]
    latency = run.metrics.latency_ms
    if latency.p50 is not None:
        metrics.append(
            _numeric_metric(
                "latency",
                "Latency",
                latency.p50,
                f"median agent response latency over {latency.n} turns",
                latency.model_dump(include={"p50", "p90", "p95", "p99"}),
            )
        )
    ttfa = run.metrics.time_to_first_audio_ms
    if ttfa is not None:
        metrics.append(
            _numeric_metric(
                "time_to_first_audio",
                "Time to First Audio",
                ttfa,
                "call connected to first agent speech",
                {"p50": ttfa},
            )
        )
    metrics += run_metrics(run)
    return {
        "id": run.id,
        "scenario": _scenario_id(run),
        "scenario_name": run.case.name,
        "personality_name": run.case.persona.name,
        "status": _run_status(run),
        "success": run.passed,
        "expected_outcome": {"score": _expected_score(run), "explanation": explanation},
        "evaluation": {"metrics": metrics},
        "timestamp": _iso(run.created_at),
        "executed_at": _iso(run.started_at) if run.started_at else None,
        "error_message": run.error,
        "duration": _mmss(run.duration_ms) if run.duration_ms is not None else None,
        "transcript": [
            {"role": _ROLE[t.role], "content": t.text, "start_ms": t.start_ms, "end_ms": t.end_ms}
            for t in run.turns
        ],
        "loopcall": {
            "status": run.status,
            "termination_reason": run.termination_reason,
            "channel": run.channel,
            "target": run.target,
            "suite_run_id": run.suite_run_id,
            "score": run.evaluation.score if run.evaluation else None,
            "metrics": run.metrics.model_dump(mode="json"),
            "recording": run.recording,
            "usage": run.usage.model_dump(mode="json"),
            "tool_calls": [call.model_dump(mode="json") for call in run.tool_calls],
        },
    }


def _numeric_metric(
    metric_id: str, name: str, value: float, explanation: str, percentiles: dict[str, Any]
) -> dict[str, Any]:
    return {
        "id": metric_id,
        "name": name,
        "type": "numeric",
        "score": value,
        "explanation": explanation,
        "extra": {"percentiles": percentiles},
    }


def _overall(
    runs: list[Run], metric_ids: dict[str, tuple[str, Criterion]], success_rate: float
) -> dict[str, Any]:
    latency_p50 = _median([ms for r in runs for ms in vouched_latencies(r.turns)])
    ttfa_p50 = _median([r.metrics.time_to_first_audio_ms for r in runs])
    summary: dict[str, dict[str, Any]] = {
        "latency": {
            "id": "latency",
            "name": "Latency",
            "type": "numeric",
            "score": latency_p50,
            "explanation": (
                "median agent response latency over the turns of every run, in ms "
                "(degraded turns, measured while the harness ran late, left out)"
            ),
            "function_name": "latency_ms",
            "p50": latency_p50,
        },
        "time_to_first_audio": {
            "id": "time_to_first_audio",
            "name": "Time to First Audio",
            "type": "numeric",
            "score": ttfa_p50,
            "explanation": "median over runs of call connected to first agent speech, in ms",
            "function_name": "time_to_first_audio_ms",
            "p50": ttfa_p50,
        },
    }
    for label, (metric_id, criterion) in metric_ids.items():
        verdicts = [
            res.passed
            for r in runs
            if r.evaluation
            for res in r.evaluation.results
            if criterion_label(res.assertion) == label
        ]
        summary[metric_id] = {
            "id": metric_id,
            "name": label,
            "type": "binary_qualitative",
            "score": round(100 * sum(verdicts) / len(verdicts), 2) if verdicts else None,
            "explanation": f"passed in {sum(verdicts)} of {len(verdicts)} evaluated runs",
            "function_name": criterion.kind,
            "p50": None,
        }
    worst = sorted(
        (m for m in summary.values() if m["type"] == "binary_qualitative"),
        key=lambda m: m["score"] if m["score"] is not None else 100,
    )
    outcome_scores = [_expected_score(r) for r in runs if r.status in _FINISHED]
    durations = [r.duration_ms / 1000 for r in runs if r.duration_ms is not None]
    return {
        "success_rate": success_rate,
        "metric_summary": summary,
        "worst_performing_metrics": {
            "binary_adherence": [
                m["id"] for m in worst if m["score"] is not None and m["score"] < 100
            ]
        },
        "numeric_metrics": [
            _summary_numeric("Latency", latency_p50),
            _summary_numeric("Time to First Audio", ttfa_p50),
            *summary_metrics(runs),
        ],
        "enum_metrics": [],
        "extra_metrics": [
            {
                "name": "Expected Outcome",
                "type": "numeric",
                "value": _mean(outcome_scores),
                "percentiles": {"p50": _median(outcome_scores)},
            },
            {
                "name": "Average Call Duration",
                "type": "numeric",
                "value": _mean(durations),
                "percentiles": {"p50": _median(durations)},
            },
            *usage_metrics(runs),
        ],
    }


def _summary_numeric(name: str, p50: float | None) -> dict[str, Any]:
    return {"name": name, "type": "numeric", "value": p50, "percentiles": {"p50": p50}}


def _result_status(runs: list[Run]) -> str:
    statuses = {r.status for r in runs}
    if statuses == {"queued"}:
        return "pending"
    if statuses & {"queued", "running"}:
        return "running"
    if statuses == {"cancelled"}:
        return "cancelled"
    if "completed" not in statuses:
        return "failed"
    return "completed"


def _run_status(run: Run) -> str:
    if run.status == "queued":
        return "pending"
    if run.status == "failed" and run.termination_reason == "timeout":
        return "timeout"
    return run.status


def _expected_score(run: Run) -> float:
    if run.passed:
        return 100.0
    return run.evaluation.score if run.evaluation else 0.0


def _result_id(runs: list[Run], suite_run_ids: set[str | None]) -> str:
    if len(suite_run_ids) == 1 and None not in suite_run_ids:
        return str(next(iter(suite_run_ids)))
    if len(runs) == 1:
        return runs[0].id
    return str(uuid.uuid5(_NAMESPACE, "result:" + ",".join(sorted(r.id for r in runs))))


def _result_name(runs: list[Run]) -> str:
    suites = {r.suite_name for r in runs}
    if len(suites) == 1 and None not in suites:
        return str(next(iter(suites)))
    if len(runs) == 1:
        return runs[0].case.name
    return f"{len(runs)} runs"


def _scenario_id(run: Run) -> str:
    return run.case.id or run.case.name


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _mean(values: Sequence[float]) -> float | None:
    return round(statistics.fmean(values), 2) if values else None


def _mmss(ms: float) -> str:
    """Elapsed time as a clock shows it: whole seconds, truncated."""
    seconds = int(ms // 1000)
    return f"{seconds // 60:02d}:{seconds % 60:02d}"


def _iso(moment: datetime) -> str:
    """ISO 8601 in UTC with a ``Z``; naive datetimes are taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
