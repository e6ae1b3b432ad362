"""The suite report and the comparison as tables: the end of a suite, ``loopcall report``
and ``loopcall compare``.

Stage: printing only; the figures come from ``harness.reports``.
"""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table

from harness.cli.common import console
from harness.reports import Change, Comparison, Rate, SuiteReport

__all__ = ["print_comparison", "print_report"]

MAX_ROWS = 15
_LABEL_STYLE = {"regressed": "red", "improved": "green", "not comparable": "dim"}


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def _ci(rate: Rate) -> str:
    return "-" if rate.ci95 is None else f"{100 * rate.ci95[0]:.1f}–{100 * rate.ci95[1]:.1f} %"


def _rate(rate: Rate) -> str:
    return f"{rate.passed}/{rate.total} = {_pct(rate.rate)} (95 % CI {_ci(rate)})"


def print_report(report: SuiteReport) -> None:
    """The report, one section per part; sections with nothing to say are left out."""
    names = ", ".join(report.suite_names) or "runs"
    ids = ", ".join(i[:8] for i in report.suite_run_ids)
    console.print(
        f"[bold]{escape(names)}[/bold]{f' (suite run {ids})' if ids else ''}: "
        f"{_rate(report.success)} passed"
    )
    if report.criteria:
        table = Table(title="criteria, worst first")
        for column in ("criterion", "kind", "passed", "rate", "95 % CI"):
            table.add_column(column)
        ordered = sorted(report.criteria, key=lambda c: (c.result.rate or 0.0, c.label))
        for stat in ordered[:MAX_ROWS]:
            r = stat.result
            table.add_row(
                escape(stat.label), stat.kind, f"{r.passed}/{r.total}", _pct(r.rate), _ci(r)
            )
        console.print(table)
        if len(ordered) > MAX_ROWS:
            console.print(f"... and {len(ordered) - MAX_ROWS} more criteria (--json for all)")
    if report.metrics:
        table = Table(title="figures")
        for column in ("figure", "over", "n", "p50", "p90", "min", "max"):
            table.add_column(column)
        for m in report.metrics:
            values = (f"{v:g}" for v in (m.p50, m.p90, m.min, m.max))
            table.add_row(m.name, m.over, str(m.n), *values)
        console.print(table)
    for flaky in report.flaky:
        console.print(
            f"[yellow]flaky[/yellow] {escape(flaky.case)}: passed {flaky.passed}, "
            f"failed {flaky.failed}"
        )
    if report.failures:
        table = Table(title="failures by cause")
        for column in ("runs", "cause", "cases"):
            table.add_column(column)
        for group in report.failures[:MAX_ROWS]:
            table.add_row(str(group.runs), escape(group.cause), escape(", ".join(group.cases)))
        console.print(table)


def _value(change: Change, value: float | None) -> str:
    if value is None:
        return "-"
    return _pct(value) if change.test == "fisher_exact" else f"{value:g}"


def _difference(change: Change) -> str:
    if change.difference is None:
        return "-"
    if change.test == "fisher_exact":
        text = f"{100 * change.difference:+.1f} pp"
        if change.ci95:
            text += f" [{100 * change.ci95[0]:+.1f}, {100 * change.ci95[1]:+.1f}]"
        return text
    text = f"{change.difference:+g}"
    if change.ci95:
        text += f" [{change.ci95[0]:+g}, {change.ci95[1]:+g}]"
    return text


def _row(table: Table, change: Change) -> None:
    style = _LABEL_STYLE.get(change.label)
    label = f"[{style}]{change.label}[/{style}]" if style else change.label
    table.add_row(
        escape(change.name),
        f"{_value(change, change.a)} (n={change.n_a})",
        f"{_value(change, change.b)} (n={change.n_b})",
        _difference(change),
        "-" if change.effect_size is None else f"{change.effect_size:+.2f}",
        "-" if change.p_value is None else f"{change.p_value:.3g}",
        "-" if change.p_adjusted is None else f"{change.p_adjusted:.3g}",
        label,
    )


def print_comparison(comparison: Comparison) -> None:
    """A against B: the success rate, then the criteria and figures, changes first."""
    a, b = comparison.a, comparison.b
    console.print(f"A: {escape(a.name)}: {_rate(a.success)}")
    console.print(f"B: {escape(b.name)}: {_rate(b.success)}")
    table = Table(
        title=f"A -> B (alpha {comparison.alpha:g}; rates: Fisher's exact test, effect "
        "Cohen's h; figures: Mann-Whitney U on medians, effect rank-biserial; "
        "p adj: Holm within criteria, within figures)"
    )
    for column in ("what", "A", "B", "B - A [95 % CI]", "effect", "p", "p adj", "verdict"):
        table.add_column(column)
    for change in (comparison.success, *comparison.criteria, *comparison.metrics):
        _row(table, change)
    console.print(table)
    console.print(f"{comparison.regressed} regressed, {comparison.improved} improved")
