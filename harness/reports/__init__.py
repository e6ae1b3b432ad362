"""Suite reports and comparisons: pure functions from stored ``Run``s to their figures.

Stage: after the runs are stored, beside the views.  ``build_report(runs)`` is a
suite run's outcome (success rate with its Wilson interval, criteria pass rates
and the worst of them, figures with p50/p90, flaky cases, failures grouped by
cause); ``compare_runs(a, b)`` says what changed between two suite runs, each
change tested so that noise is not called a regression.  Imports only the
contract (``harness.models``), so the views, the controller and the CLI all may
read it.
"""

from harness.reports.causes import failure_groups, normalise_reason
from harness.reports.compare import ALPHA, compare_runs
from harness.reports.models import (
    Change,
    ChangeLabel,
    Comparison,
    ComparisonSide,
    CriterionStat,
    FailureGroup,
    FlakyCase,
    NumericStat,
    Rate,
    SuiteReport,
)
from harness.reports.report import build_report, criterion_id
from harness.reports.stats import wilson

__all__ = [
    "ALPHA",
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
    "build_report",
    "compare_runs",
    "criterion_id",
    "failure_groups",
    "normalise_reason",
    "wilson",
]
