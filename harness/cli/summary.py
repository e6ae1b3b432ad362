"""The table printed after runs: one row per run, its latency, score and verdict; after a
suite (or repeats), the suite report below it.

Stage: the end of ``loopcall run``, ``demo`` and ``runs``.
"""

from __future__ import annotations

from rich.table import Table

from harness.cli.common import console
from harness.models import Run

__all__ = ["print_suite_report", "print_summary"]


def _fmt(value: float | None, unit: str = "") -> str:
    return "-" if value is None else f"{value:.0f}{unit}"


def print_summary(runs: list[Run], where: str) -> None:
    if not runs:
        return
    table = Table(title=f"loopcall: {len(runs)} run(s), {where}")
    for column in (
        "run",
        "case",
        "status",
        "ended by",
        "turns",
        "latency p50",
        "latency p90",
        "transport rtt",
        "score",
        "result",
    ):
        table.add_column(column)
    for run in runs:
        ev = run.evaluation
        verdict = "[green]PASS[/green]" if run.passed else "[red]FAIL[/red]"
        table.add_row(
            run.id[:8],
            run.case.name,
            run.status,
            run.termination_reason or "-",
            str(len(run.turns)),
            _fmt(run.metrics.latency_ms.p50, " ms"),
            _fmt(run.metrics.latency_ms.p90, " ms"),
            _fmt(run.metrics.transport_rtt_ms, " ms"),
            "-" if ev is None else f"{ev.score:.0f}",
            verdict,
        )
    console.print(table)
    suite_runs = sorted({r.suite_run_id for r in runs if r.suite_run_id})
    for suite_run_id in suite_runs:
        short = suite_run_id[:8]
        console.print(
            f"suite run {suite_run_id} (loopcall report {short}; loopcall compare {short} "
            f"OTHER; loopcall show {short} --view cekura)"
        )
    for run in runs:
        if run.error:
            console.print(f"[red]{run.id[:8]}[/red] {run.case.name}: {run.error}")


def print_suite_report(runs: list[Run]) -> None:
    """The suite report of ``runs`` (success rate, criteria, figures, flaky, causes)."""
    if not runs:
        return
    from harness.cli.report_display import print_report
    from harness.reports import build_report

    print_report(build_report(runs))
