"""The Cekura view's cost and token figures, from ``run.usage``.

Part of ``views/cekura.py``'s result: across runs, ``extra_metrics`` entries
("Average Cost" in US cents, "Average Tokens", "Average Tool Calls") beside
Cekura's own ("Expected Outcome", "Average Call Duration").  A run's cost counts
only once loopcall has priced it (``harness.pricing``); what it could not price
is named per run under ``loopcall.usage.unpriced``.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from harness.models import Run, Usage

__all__ = ["usage_metrics"]


def _tokens(usage: Usage) -> int:
    return sum(line.input_tokens + line.output_tokens for line in usage.tokens)


def usage_metrics(runs: Sequence[Run]) -> list[dict[str, Any]]:
    """Mean and median cost, tokens and tool calls over the finished runs."""
    finished = [r for r in runs if r.status in ("completed", "failed", "cancelled")]
    costs = [r.usage.total_cost_cents for r in finished if r.usage.total_cost_cents is not None]
    return [
        _extra("Average Cost", "US cents per run (priced lines only)", costs),
        _extra(
            "Average Tokens", "every party's tokens per run", [_tokens(r.usage) for r in finished]
        ),
        _extra("Average Tool Calls", "tool calls per run", [len(r.tool_calls) for r in finished]),
    ]


def _extra(name: str, unit: str, values: Sequence[float]) -> dict[str, Any]:
    mean = round(statistics.fmean(values), 4) if values else None
    p50 = round(float(statistics.median(values)), 4) if values else None
    return {
        "name": name,
        "type": "numeric",
        "value": mean,
        "percentiles": {"p50": p50},
        "unit": unit,
        "runs": len(values),
    }
