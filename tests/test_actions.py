"""``tool_name`` and ``node_id`` criteria over hand-made tool calls and flow events."""

from __future__ import annotations

from typing import Any

from harness.models import AgentEvent, Case, Metrics, ToolCall, Turn
from harness.scoring import CallFacts, evaluate_facts
from runtime.arguments import check_args

TURNS = [
    Turn(role="agent", text="Hello, Bright Smile Dental.", start_ms=0, end_ms=2000),
    Turn(role="persona", text="Alex Morgan.", start_ms=2500, end_ms=3500),
    Turn(role="agent", text="Tuesday at ten?", start_ms=4000, end_ms=6000),
    Turn(role="persona", text="Yes.", start_ms=6500, end_ms=7000),
    Turn(role="agent", text="Booked.", start_ms=7500, end_ms=9000),
]
CALLS = [
    ToolCall(name="check_availability", args={}, at_ms=1000, turn_index=0, status_code=200),
    ToolCall(
        name="book_appointment",
        args={"day": "Tuesday", "time": "10:00", "patient": {"name": "Alex", "age": 41}},
        at_ms=7200,
        turn_index=4,
        status_code=200,
    ),
]
EVENTS = [
    AgentEvent(type="node", name="greet", at_ms=100),
    AgentEvent(type="log", name="confirm_booking", at_ms=150),  # a log, not a node
    AgentEvent(type="node", name="collect_details", at_ms=3600),
    AgentEvent(type="node", name="confirm_booking", at_ms=7400),
]


def _judge(criterion: dict[str, Any], calls: list[ToolCall] | None = None) -> tuple[bool, str, Any]:
    case = Case.model_validate(
        {"name": "c", "persona": {"name": "p"}, "success_criteria": [criterion]}
    )
    facts = CallFacts(TURNS, Metrics(), "agent_ended", CALLS if calls is None else calls, EVENTS)
    [result] = evaluate_facts(case, facts).results
    return result.passed, result.reason, result.evidence


def test_arguments_match_exactly_by_regex_present_and_nested() -> None:
    args = {"day": "Tuesday", "hour": 10, "vip": True, "who": {"name": "Alex"}}
    assert check_args({"day": "Tuesday", "hour": 10.0, "vip": True}, args).ok
    assert check_args({"day": "(?i)^tue", "who": {"name": "/^al/"}}, args).ok
    assert check_args({"who": "$present"}, args).ok
    miss = check_args({"day": "(?i)wed", "hour": "10", "vip": 1, "who": {"age": "$present"}}, args)
    assert miss.misses == [
        "day='Tuesday' does not match /(?i)wed/",
        "hour=10, not '10'",
        "vip=true, not 1",
        "who.age missing",
    ]
    assert check_args({"x": "$present"}, "not a mapping").misses == ["x missing"]
    # A pattern that backtracks past its deadline is a miss that says so, not a hang.
    slow = check_args({"day": "/(a|a)+$/"}, {"day": "a" * 40 + "!"}, timeout_s=0.05)
    assert "deadline" in slow.misses[0]


def test_tool_name_passes_with_its_arguments_and_cites_the_call() -> None:
    passed, reason, evidence = _judge(
        {
            "tool_name": "book_appointment",
            "args_match": {"day": "(?i)tue", "patient": {"name": "$present"}},
        }
    )
    assert passed, reason
    assert reason == "book_appointment was called once, with day='Tuesday', patient.name='Alex'"
    assert [(e.tool_call_index, e.at_ms, e.turn_index) for e in evidence] == [(1, 7200, 4)]


def test_tool_name_says_which_argument_is_wrong_or_missing() -> None:
    passed, reason, evidence = _judge(
        {"tool_name": "book_appointment", "args_match": {"day": "(?i)tue", "name": "$present"}}
    )
    assert not passed
    assert reason == "book_appointment was called once, with day='Tuesday' but name missing"
    assert evidence[0].tool_call_index == 1
    passed, reason, _ = _judge({"tool_name": "cancel_booking"})
    assert not passed
    assert reason == (
        "cancel_booking was never called (tools called: book_appointment, check_availability)"
    )
    passed, reason, _ = _judge({"tool_name": "cancel_booking", "times": {"max": 0}})
    assert passed and "as allowed" in reason


def test_times_and_after_bound_the_calls_and_their_order() -> None:
    twice = [*CALLS, CALLS[1].model_copy(update={"at_ms": 8000.0})]
    passed, reason, evidence = _judge({"tool_name": "book_appointment", "times": {"max": 1}}, twice)
    assert not passed and reason == "book_appointment was called twice: more than the maximum 1"
    assert [e.tool_call_index for e in evidence] == [1, 2]
    assert _judge({"tool_name": "book_appointment", "times": {"min": 2, "max": 2}}, twice)[0]
    passed, reason, _ = _judge({"tool_name": "book_appointment", "after": "check_availability"})
    assert passed and reason.endswith("after check_availability (at 1 s)")
    passed, reason, _ = _judge({"tool_name": "check_availability", "after": "book_appointment"})
    assert not passed and "not after book_appointment (at 7.2 s)" in reason
    passed, reason, _ = _judge({"tool_name": "book_appointment", "after": "collect_details"})
    assert passed  # a node counts as well as a tool
    passed, reason, _ = _judge({"tool_name": "book_appointment", "after": "verify_identity"})
    assert not passed and reason.endswith("but verify_identity never happened")


def test_node_id_counts_node_events_only() -> None:
    passed, reason, evidence = _judge({"node_id": "confirm_booking", "after": "book_appointment"})
    assert passed, reason
    assert (
        reason == "the agent reached node confirm_booking once, after book_appointment (at 7.2 s)"
    )
    assert [(e.agent_event_index, e.at_ms, e.turn_index) for e in evidence] == [(3, 7400, 4)]
    passed, reason, _ = _judge({"node_id": "transfer"})
    assert not passed
    assert reason == (
        "the agent never reached node transfer (nodes reported: greet, collect_details, "
        "confirm_booking)"
    )
    passed, reason, _ = _judge({"node_id": "greet", "after": "collect_details"})
    assert not passed and "not after collect_details" in reason
