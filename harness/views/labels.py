"""A readable name for a criterion that has no description, for every view and report.

Part of ``harness.views``: the Cekura view names its metrics and failure groups
with it, and the text view its lines.  A criterion's ``description`` wins; else
the check says what it asks, in a few words.
"""

from __future__ import annotations

import json

from harness.models import Criterion, DynamicsCheck

__all__ = ["criterion_label", "dynamics_label"]

MAX_QUOTE = 60


def criterion_label(criterion: Criterion) -> str:
    """The criterion's description, or a readable stand-in when it has none."""
    if criterion.description:
        return criterion.description
    kind = criterion.kind
    if criterion.pattern is not None:
        verb = "says" if criterion.must_match else "never says"
        return f"{criterion.role} {verb} /{criterion.pattern}/"
    if criterion.latency_ms is not None:
        return f"{criterion.latency_ms.stat} latency <= {criterion.latency_ms.max_ms:g} ms"
    if criterion.termination_reason is not None:
        return f"ends by {' or '.join(criterion.termination_reason)}"
    if criterion.dynamics is not None:
        return dynamics_label(criterion.dynamics)
    if criterion.turn_count is not None:
        check = criterion.turn_count
        return f"{check.role or 'total'} turns within [{check.min}, {check.max}]"
    if criterion.tool_name is not None:
        args = f" with {_quote(json.dumps(criterion.args_match))}" if criterion.args_match else ""
        return f"calls {criterion.tool_name}{args}{_refined(criterion)}"
    if criterion.node_id is not None:
        return f"reaches node {criterion.node_id}{_refined(criterion)}"
    if criterion.rubric is not None:
        return f"rubric: {_quote(criterion.rubric)}"
    if criterion.semantic is not None:
        return f"means: {_quote(criterion.semantic)}"
    return kind


def dynamics_label(check: DynamicsCheck) -> str:
    """A readable name for a ``dynamics`` criterion without a description."""
    if check.min is not None and check.max is not None:
        return f"{check.metric} within [{check.min:g}, {check.max:g}]"
    if check.min is not None:
        return f"{check.metric} >= {check.min:g}"
    return f"{check.metric} <= {check.max:g}"


def _refined(criterion: Criterion) -> str:
    out = ""
    if criterion.times is not None:
        low, high = criterion.times.min, criterion.times.max
        out += f", {low if low is not None else 0}..{high if high is not None else 'n'} times"
    if criterion.after is not None:
        out += f", after {criterion.after}"
    return out


def _quote(text: str) -> str:
    return text if len(text) <= MAX_QUOTE else text[: MAX_QUOTE - 1] + "…"
