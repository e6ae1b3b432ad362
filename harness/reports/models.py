"""The shapes of a suite report and of a comparison: what ``loopcall run`` prints at the
end of a suite, ``loopcall compare`` prints, and the controller serves.

Pydantic records, built only by ``report.py`` and ``compare.py`` (pure functions
over ``Run``s).  Rates are fractions (0..1); durations are milliseconds.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

__all__ = [
    "Change",
    "ChangeLabel",
    "Comparison",
    "ComparisonSide",
    "CriterionStat",
    "FailureGroup",
    "FlakyCase",
    "NumericStat",
    "Rate",
    "SuiteReport",
]


class Rate(BaseModel):
    """``passed`` of ``total``, with its 95 % Wilson score interval."""

    passed: int
    total: int
    rate: float | None = Field(default=None, description="passed / total; None when total is 0")
    ci95: tuple[float, float] | None = Field(
        default=None, description="95 % Wilson score interval of the rate"
    )


class CriterionStat(BaseModel):
    """One criterion across the suite's completed runs, whichever cases carry it.

    A criterion is the same across cases when its kind, its check (the check's
    value with its refinements, weight left out) and its description are.
    """

    key: str = Field(description="A stable id: a hash of kind, check and description.")
    kind: str
    check: str = Field(description='The check as compact JSON, e.g. {"node_id":"confirm"}.')
    description: str = ""
    label: str = Field(description="The description, or the kind and check when it has none.")
    cases: list[str] = Field(default_factory=list, description="Cases that carry it.")
    result: Rate


class NumericStat(BaseModel):
    """The distribution of one figure: per run, or pooled over the vouched agent turns."""

    name: str
    over: Literal["run", "turn"]
    n: int
    p50: float
    p90: float
    mean: float
    min: float
    max: float


class FlakyCase(BaseModel):
    """A case that both passed and did not, across the suite's repeats."""

    case: str
    passed: int
    failed: int
    run_ids: list[str]


class FailureGroup(BaseModel):
    """Failures that share a cause: a failed criterion's kind and normalised reason, or
    an unfinished run's status and normalised error."""

    cause: str
    kind: str = Field(description="The criterion's kind, or 'run' for a call that failed.")
    runs: int = Field(description="Distinct runs with this cause.")
    cases: list[str]
    run_ids: list[str]
    example: str = Field(description="One reason as it was stored, before normalising.")


class SuiteReport(BaseModel):
    """A suite run's outcome: success rate, criteria, figures, flaky cases, causes."""

    suite_run_ids: list[str]
    suite_names: list[str]
    runs: int
    status_counts: dict[str, int]
    success: Rate = Field(description="Passed runs of the finished ones.")
    criteria: list[CriterionStat]
    worst_criteria: list[CriterionStat] = Field(
        description="The criteria that failed most often, lowest pass rate first."
    )
    metrics: list[NumericStat]
    flaky: list[FlakyCase]
    failures: list[FailureGroup]


ChangeLabel = Literal["improved", "regressed", "no significant change", "not comparable"]


class Change(BaseModel):
    """One figure in A against B, tested, with its effect and its label at ``alpha``."""

    name: str
    key: str | None = Field(default=None, description="The criterion's key, for criteria.")
    test: Literal["fisher_exact", "mann_whitney_u", "none"]
    a: float | None = Field(default=None, description="Rate, or median, in A.")
    b: float | None = None
    n_a: int
    n_b: int
    difference: float | None = Field(default=None, description="b - a.")
    ci95: tuple[float, float] | None = Field(
        default=None,
        description="95 % interval of the difference: Newcombe's (rates) or a seeded "
        "bootstrap of the median difference (figures).",
    )
    effect_size: float | None = None
    effect_size_name: str = ""
    p_value: float | None = None
    p_adjusted: float | None = Field(
        default=None, description="Holm-adjusted within its family (criteria, figures)."
    )
    label: ChangeLabel


class ComparisonSide(BaseModel):
    """What one side of the comparison holds."""

    name: str
    suite_run_ids: list[str]
    runs: int
    success: Rate


class Comparison(BaseModel):
    """What changed from A to B; a change is called only when its test says so at alpha."""

    alpha: float
    a: ComparisonSide
    b: ComparisonSide
    success: Change
    criteria: list[Change]
    metrics: list[Change]
    regressed: int
    improved: int
