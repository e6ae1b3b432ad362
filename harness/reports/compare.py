"""What changed between two suite runs, with a test behind every change it calls.

Stage: beside the report (``loopcall compare A B``, ``GET /suite-runs/{a}/compare/{b}``).
In: the runs of A and of B.  Out: a ``Comparison``: each change labelled
improved, regressed or no significant change at ``alpha`` (0.05), with its
p-value and effect size.  The tests, and why:

* Pass rates (the suite's, each criterion's): Fisher's exact test, two-sided.
  Suites are tens of runs and rates sit near 0 or 1, where the two-proportion
  z-test's normal approximation misleads; Fisher's is exact, and conservative.
  Effect: the difference in rate with Newcombe's interval, and Cohen's h.
* Figures (latency pooled over the vouched turns; per-run latency p50/p90, time
  to first audio; the dynamics counts and silences): Mann-Whitney U, two-sided,
  which assumes no shape for the distribution (latencies are skewed) and is not
  moved by a few outliers.  Effect: the difference of medians with a seeded
  bootstrap interval, and the rank-biserial correlation.  Turns of one call
  share its conditions, so the pooled test counts more evidence than there is
  when calls differ; the per-run rows test independent calls and are the
  conservative reading.  Lower is better for every figure compared; figures
  with no better direction (talk ratio, words per minute, duration) are left
  to the reports.
* Many criteria and figures are tested at once, and at alpha 0.05 one in
  twenty unchanged ones would be called changed: p-values are Holm-adjusted
  within each family (criteria; figures) and the label follows the adjusted one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from harness.models import Run
from harness.reports.models import Change, ChangeLabel, Comparison, ComparisonSide
from harness.reports.report import FINISHED, criterion_tallies, figures, rate
from harness.reports.stats import holm, rank_test, rate_test

__all__ = ["ALPHA", "LOWER_IS_BETTER", "compare_runs"]

ALPHA = 0.05
LOWER_IS_BETTER = (
    "turn_latency_ms",
    "latency_p50_ms",
    "latency_p90_ms",
    "time_to_first_audio_ms",
    "dynamics.agent_interruptions",
    "dynamics.overlap_ms",
    "dynamics.longest_silence_ms",
    "dynamics.dead_air_count",
    "dynamics.agent_stop_latency_ms",
)
_ORDER: dict[ChangeLabel, int] = {
    "regressed": 0,
    "improved": 1,
    "no significant change": 2,
    "not comparable": 3,
}


def _label(p: float | None, alpha: float, better: bool, worse: bool) -> ChangeLabel:
    if p is None:
        return "not comparable"
    if p < alpha and better:
        return "improved"
    if p < alpha and worse:
        return "regressed"
    return "no significant change"


def _rate_change(name: str, key: str | None, a: tuple[int, int], b: tuple[int, int]) -> Change:
    if a[1] == 0 or b[1] == 0:
        return Change(name=name, key=key, test="none", n_a=a[1], n_b=b[1], label="not comparable")
    test = rate_test(a, b)
    return Change(
        name=name,
        key=key,
        test="fisher_exact",
        a=a[0] / a[1],
        b=b[0] / b[1],
        n_a=a[1],
        n_b=b[1],
        difference=test.difference,
        ci95=test.ci95,
        effect_size=test.cohens_h,
        effect_size_name="cohens_h",
        p_value=test.p_value,
        p_adjusted=test.p_value,
        label="no significant change",  # set once the family is adjusted
    )


def _figure_change(name: str, a: list[float], b: list[float], resamples: int) -> Change:
    if not a or not b:
        return Change(name=name, test="none", n_a=len(a), n_b=len(b), label="not comparable")
    test = rank_test(a, b, resamples=resamples)
    return Change(
        name=name,
        test="mann_whitney_u",
        a=round(test.median_a, 1),
        b=round(test.median_b, 1),
        n_a=len(a),
        n_b=len(b),
        difference=round(test.difference, 1),
        ci95=None if test.ci95 is None else (round(test.ci95[0], 1), round(test.ci95[1], 1)),
        effect_size=round(test.rank_biserial, 4),
        effect_size_name="rank_biserial",
        p_value=test.p_value,
        p_adjusted=test.p_value,
        label="no significant change",
    )


def _adjust(
    changes: list[Change], alpha: float, direction: Callable[[Change], float]
) -> list[Change]:
    """Holm-adjust the tested changes of one family, then label each."""
    tested = [c for c in changes if c.p_value is not None]
    for change, p in zip(tested, holm([c.p_value or 0.0 for c in tested]), strict=True):
        change.p_adjusted = p
        sign = direction(change)
        change.label = _label(p, alpha, sign > 0, sign < 0)
    return sorted(changes, key=lambda c: (_ORDER[c.label], c.p_adjusted or 1.0, c.name))


def _side(name: str, runs: Sequence[Run]) -> ComparisonSide:
    finished = [r for r in runs if r.status in FINISHED]
    return ComparisonSide(
        name=name,
        suite_run_ids=sorted({r.suite_run_id for r in runs if r.suite_run_id}),
        runs=len(runs),
        success=rate(sum(1 for r in finished if r.passed), len(finished)),
    )


def compare_runs(
    a: Sequence[Run],
    b: Sequence[Run],
    *,
    alpha: float = ALPHA,
    names: tuple[str, str] = ("A", "B"),
    resamples: int = 2000,
) -> Comparison:
    """What changed from the runs ``a`` to the runs ``b``, each change tested."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie between 0 and 1, not {alpha}")
    side_a, side_b = _side(names[0], a), _side(names[1], b)
    success = _rate_change(
        "success rate",
        None,
        (side_a.success.passed, side_a.success.total),
        (side_b.success.passed, side_b.success.total),
    )
    if success.p_value is not None:
        sign = success.difference or 0.0
        success.label = _label(success.p_value, alpha, sign > 0, sign < 0)

    tallies_a, tallies_b = criterion_tallies(a), criterion_tallies(b)
    criteria = []
    for ident in sorted({*tallies_a, *tallies_b}, key=lambda i: (i.kind, i.label, i.key)):
        ta, tb = tallies_a.get(ident), tallies_b.get(ident)
        criteria.append(
            _rate_change(
                ident.label,
                ident.key,
                (ta.passed, ta.total) if ta else (0, 0),
                (tb.passed, tb.total) if tb else (0, 0),
            )
        )
    criteria = _adjust(criteria, alpha, lambda c: c.difference or 0.0)

    figures_a, figures_b = figures(a), figures(b)
    metrics = [
        _figure_change(
            name,
            figures_a.get(name, ("run", []))[1],
            figures_b.get(name, ("run", []))[1],
            resamples,
        )
        for name in LOWER_IS_BETTER
        if name in figures_a or name in figures_b
    ]
    # Lower is better: B tending larger (rank-biserial > 0) is worse.
    metrics = _adjust(metrics, alpha, lambda c: -(c.effect_size or 0.0))

    every = [success, *criteria, *metrics]
    return Comparison(
        alpha=alpha,
        a=side_a,
        b=side_b,
        success=success,
        criteria=criteria,
        metrics=metrics,
        regressed=sum(1 for c in every if c.label == "regressed"),
        improved=sum(1 for c in every if c.label == "improved"),
    )
