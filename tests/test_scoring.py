"""Scoring: each check kind, the weighted score and the pass threshold."""

from __future__ import annotations

from typing import Any

import pytest

from harness.models import Case, Criterion, Evaluation, LatencySummary, Metrics, Persona, Turn
from harness.scoring import evaluate

TURNS = [
    Turn(role="agent", text="Hi, this is Acme Dental. How can I help?", start_ms=300, end_ms=2100),
    Turn(role="persona", text="I'd like a refund for my last visit.", start_ms=2600, end_ms=4800),
    Turn(
        role="agent",
        text="I can't do refunds, but I have BOOKED you a call with billing on Tuesday.",
        start_ms=5500,
        end_ms=9800,
        latency_ms=700,
    ),
    Turn(role="persona", text="Thanks, that's all. Goodbye.", start_ms=10300, end_ms=11900),
]
METRICS = Metrics(
    latency_ms=LatencySummary(n=2, min=640, p50=700, p90=812, p95=830, p99=845, max=850, mean=745),
    agent_turns=2,
    persona_turns=2,
)


def make_case(*criteria: dict[str, Any], pass_threshold: float = 80) -> Case:
    return Case(
        name="refund request",
        persona=Persona(name="Annoyed patient"),
        success_criteria=[Criterion.model_validate(c) for c in criteria],
        pass_threshold=pass_threshold,
    )


def score(
    *criteria: dict[str, Any],
    turns: list[Turn] = TURNS,
    metrics: Metrics = METRICS,
    termination: str | None = "persona_goodbye",
    pass_threshold: float = 80,
) -> Evaluation:
    case = make_case(*criteria, pass_threshold=pass_threshold)
    return evaluate(case, turns, metrics, termination)


# ------------------------------------------------------------------ pattern


def test_pattern_found_case_insensitively() -> None:
    evaluation = score({"pattern": r"booked"})
    (result,) = evaluation.results
    assert result.passed
    assert result.reason == 'agent said /booked/ ("BOOKED")'
    assert evaluation.score == 100 and evaluation.pass_fail


def test_pattern_missing_fails_with_reason() -> None:
    evaluation = score({"pattern": r"confirmation number"})
    (result,) = evaluation.results
    assert not result.passed
    assert result.reason == "agent never said /confirmation number/"
    assert evaluation.score == 0 and not evaluation.pass_fail


def test_pattern_only_searches_the_criterion_role() -> None:
    # "refund" is said by the persona ("a refund") and, as "refunds", by the agent.
    assert score({"pattern": r"\brefund\b", "role": "persona"}).results[0].passed
    assert not score({"pattern": r"\brefund\b", "role": "agent"}).results[0].passed
    assert not score({"pattern": r"goodbye", "role": "agent"}).results[0].passed
    assert score({"pattern": r"goodbye", "role": "persona"}).results[0].passed


def test_must_not_say_fails_when_said() -> None:
    (result,) = score({"pattern": r"can't do refunds", "must_match": False}).results
    assert not result.passed
    assert "which it must not" in result.reason
    assert "can't do refunds" in result.reason


def test_must_not_say_passes_when_absent() -> None:
    (result,) = score({"pattern": r"lawyer", "must_match": False}).results
    assert result.passed
    assert result.reason == "agent never said /lawyer/, as required"


# ------------------------------------------------------------------ latency


def test_latency_stat_within_bound() -> None:
    (result,) = score({"latency_ms": {"stat": "p90", "max_ms": 1500}}).results
    assert result.passed
    assert result.reason == "p90 latency 812 ms <= 1500 ms"


def test_latency_uses_the_named_stat() -> None:
    # p50 (700) is under 800 but p99 (845) is not.
    assert score({"latency_ms": {"stat": "p50", "max_ms": 800}}).results[0].passed
    (result,) = score({"latency_ms": {"stat": "p99", "max_ms": 800}}).results
    assert not result.passed
    assert result.reason == "p99 latency 845 ms > 800 ms"


def test_latency_fractional_values_are_not_rounded_into_a_pass() -> None:
    metrics = Metrics(latency_ms=LatencySummary(n=1, p90=1500.4))
    (result,) = score({"latency_ms": {"max_ms": 1500}}, metrics=metrics).results
    assert not result.passed
    assert result.reason == "p90 latency 1500.4 ms > 1500 ms"


def test_latency_without_measurement_fails_clearly() -> None:
    (result,) = score({"latency_ms": {"stat": "p90", "max_ms": 1500}}, metrics=Metrics()).results
    assert not result.passed
    assert "no agent latency was measured (n=0)" in result.reason


# ------------------------------------------------------------------ termination


def test_termination_reason_allowed() -> None:
    (result,) = score({"termination_reason": ["persona_goodbye", "agent_ended"]}).results
    assert result.passed
    assert result.reason == "ended by persona_goodbye, one of persona_goodbye, agent_ended"


def test_termination_reason_not_allowed() -> None:
    (result,) = score({"termination_reason": "agent_ended"}, termination="timeout").results
    assert not result.passed
    assert result.reason == "ended by timeout, not one of agent_ended"


def test_termination_reason_missing_fails() -> None:
    (result,) = score({"termination_reason": "persona_goodbye"}, termination=None).results
    assert not result.passed
    assert "no termination reason" in result.reason


# ------------------------------------------------------------------ turn count


def test_turn_count_of_one_role() -> None:
    (result,) = score({"turn_count": {"role": "agent", "min": 1, "max": 3}}).results
    assert result.passed
    assert result.reason == "agent took 2 turns, between 1 and 3"


def test_turn_count_of_all_turns() -> None:
    (result,) = score({"turn_count": {"max": 3}}).results
    assert not result.passed
    assert result.reason == "the call took 4 turns, more than the maximum 3"


def test_turn_count_below_minimum() -> None:
    (result,) = score({"turn_count": {"role": "persona", "min": 3}}).results
    assert not result.passed
    assert result.reason == "persona took 2 turns, fewer than the minimum 3"


# ------------------------------------------------------------------ score


def test_score_is_weighted_share_of_passed_criteria() -> None:
    evaluation = score(
        {"pattern": r"booked", "weight": 2},  # passes
        {"latency_ms": {"max_ms": 1500}, "weight": 1},  # passes
        {"pattern": r"confirmation number", "weight": 1},  # fails
    )
    assert [r.passed for r in evaluation.results] == [True, True, False]
    assert [r.weight for r in evaluation.results] == [2, 1, 1]
    assert evaluation.score == 75.0
    assert not evaluation.pass_fail  # threshold 80


def test_pass_threshold_is_inclusive() -> None:
    evaluation = score(
        {"pattern": r"booked", "weight": 3},
        {"pattern": r"confirmation number", "weight": 1},
        pass_threshold=75,
    )
    assert evaluation.score == 75.0
    assert evaluation.pass_fail


def test_score_rounds_to_two_decimals() -> None:
    evaluation = score({"pattern": "booked"}, {"pattern": "tuesday"}, {"pattern": "nope"})
    assert evaluation.score == 66.67


def test_no_criteria_scores_100_and_passes() -> None:
    evaluation = score()
    assert evaluation.results == []
    assert evaluation.score == 100 and evaluation.pass_fail


@pytest.mark.parametrize(
    ("second_pattern", "expected"),
    [("tuesday", 100.0), ("wednesday", 0.0)],
)
def test_all_zero_weights_is_all_or_nothing(second_pattern: str, expected: float) -> None:
    evaluation = score({"pattern": "booked", "weight": 0}, {"pattern": second_pattern, "weight": 0})
    assert evaluation.score == expected
    assert evaluation.pass_fail is (expected == 100.0)


def test_zero_weight_failure_does_not_lower_score() -> None:
    evaluation = score({"pattern": "booked"}, {"pattern": "nope", "weight": 0})
    assert not evaluation.results[1].passed
    assert evaluation.score == 100.0 and evaluation.pass_fail
