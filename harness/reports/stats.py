"""The statistics the suite report and the comparison rest on, over plain numbers.

Stage: below ``report`` and ``compare``; nothing here knows a ``Run``.  scipy does
the work (Fisher's exact test, Mann-Whitney U, the bootstrap; Wilson's interval
has its closed form written out here and checked against scipy's ``binomtest``),
imported when a test runs: scipy.stats costs a second of start-up that every
``loopcall`` command would otherwise pay; this module fixes the choices: 95 %, two-sided, linear
percentiles as ``harness.analysis.turns.latency_summary`` takes them, Holm's
step-down adjustment for a family of tests, a seeded bootstrap so a report is
reproducible.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "RankTest",
    "RateTest",
    "holm",
    "newcombe_difference",
    "percentiles",
    "rank_test",
    "rate_test",
    "wilson",
]

CONFIDENCE = 0.95
_Z = statistics.NormalDist().inv_cdf(0.5 + CONFIDENCE / 2)


def wilson(passed: int, total: int) -> tuple[float, float] | None:
    """The 95 % Wilson score interval of ``passed / total`` (None when ``total`` is 0).

    Wilson's, not the normal approximation's ``p ± 1.96·√(p(1-p)/n)``: a suite of
    ten runs that all passed gets [0.72, 1], not the impossible [1, 1].
    """
    if total <= 0:
        return None
    # The closed form scipy's ``binomtest(...).proportion_ci(method="wilson")`` gives,
    # without the p-value search ``binomtest`` makes first (a report holds many rates).
    z = _Z
    p = passed / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z / (1 + z * z / total) * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total))
    low = 0.0 if passed == 0 else max(0.0, centre - half)
    high = 1.0 if passed == total else min(1.0, centre + half)
    return low, high


def percentiles(values: Sequence[float], qs: Sequence[float]) -> list[float]:
    """The ``qs`` percentiles (0..100) of ``values``, linearly interpolated."""
    return [float(v) for v in np.percentile(np.asarray(values, dtype=float), list(qs))]


def newcombe_difference(a: tuple[int, int], b: tuple[int, int]) -> tuple[float, float] | None:
    """95 % interval of ``rate(b) - rate(a)`` from the two Wilson intervals (Newcombe's
    hybrid score method); ``a`` and ``b`` are (passed, total)."""
    wa, wb = wilson(*a), wilson(*b)
    if wa is None or wb is None:
        return None
    pa, pb = a[0] / a[1], b[0] / b[1]
    d = pb - pa
    low = d - math.sqrt((pb - wb[0]) ** 2 + (wa[1] - pa) ** 2)
    high = d + math.sqrt((wb[1] - pb) ** 2 + (pa - wa[0]) ** 2)
    return low, high


@dataclass(frozen=True)
class RateTest:
    """Fisher's exact test of two pass rates; ``cohens_h`` is the effect size."""

    p_value: float
    difference: float  # rate(b) - rate(a)
    cohens_h: float
    ci95: tuple[float, float] | None


def rate_test(a: tuple[int, int], b: tuple[int, int]) -> RateTest:
    """Two-sided Fisher's exact test of (passed, total) in ``a`` against ``b``.

    Exact, so it holds at the sizes suites have (tens of runs, rates near 0 or 1)
    where the two-proportion z-test's normal approximation does not.
    """
    if a[1] <= 0 or b[1] <= 0:
        raise ValueError("each side needs at least one run")
    from scipy import stats

    table = [[a[0], a[1] - a[0]], [b[0], b[1] - b[0]]]
    p_value = float(stats.fisher_exact(table, alternative="two-sided").pvalue)
    pa, pb = a[0] / a[1], b[0] / b[1]
    h = 2 * math.asin(math.sqrt(pb)) - 2 * math.asin(math.sqrt(pa))
    return RateTest(min(p_value, 1.0), pb - pa, h, newcombe_difference(a, b))


@dataclass(frozen=True)
class RankTest:
    """Mann-Whitney U of two samples, with the median shift and its bootstrap interval."""

    p_value: float
    median_a: float
    median_b: float
    difference: float  # median(b) - median(a)
    rank_biserial: float  # 2·P(B > A) - 1: > 0 when B tends to be larger
    ci95: tuple[float, float] | None


def _median_shift(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.asarray(np.median(y, axis=axis) - np.median(x, axis=axis))


def rank_test(
    a: Sequence[float], b: Sequence[float], *, resamples: int = 2000, seed: int = 0
) -> RankTest:
    """Two-sided Mann-Whitney U of ``a`` against ``b`` (scipy's exact p for small
    samples without ties, else the normal approximation with the tie correction),
    and a seeded percentile bootstrap of the difference of medians."""
    # Sorted: the same values in another order (runs read from another folder) resample
    # alike, so the interval depends on the samples only.
    xa, xb = np.sort(np.asarray(a, dtype=float)), np.sort(np.asarray(b, dtype=float))
    if xa.size == 0 or xb.size == 0:
        raise ValueError("each side needs at least one value")
    from scipy import stats

    result = stats.mannwhitneyu(xb, xa, alternative="two-sided")
    superiority = float(result.statistic) / (xa.size * xb.size)
    ci: tuple[float, float] | None = None
    if xa.size >= 2 and xb.size >= 2 and resamples > 0:
        boot = stats.bootstrap(
            (xa, xb),
            _median_shift,
            n_resamples=resamples,
            vectorized=True,
            method="percentile",
            batch=200,
            rng=np.random.default_rng(seed),
        )
        ci = (float(boot.confidence_interval.low), float(boot.confidence_interval.high))
    p_value = float(result.pvalue)
    return RankTest(
        p_value=1.0 if math.isnan(p_value) else min(p_value, 1.0),
        median_a=float(np.median(xa)),
        median_b=float(np.median(xb)),
        difference=float(np.median(xb) - np.median(xa)),
        rank_biserial=2 * superiority - 1,
        ci95=ci,
    )


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values: a family of tests whose chance of calling
    any true null significant stays at most alpha (Bonferroni's guarantee, more power)."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    m = len(p_values)
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted
