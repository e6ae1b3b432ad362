"""The peer views: a Run read as Vapi, Yappr and Cekura shapes, checked against their docs."""

from __future__ import annotations

import copy
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from harness.models import (
    CallEvent,
    Case,
    Criterion,
    CriterionResult,
    Evaluation,
    LatencyCheck,
    LatencySummary,
    Metrics,
    Persona,
    Run,
    ScriptLine,
    TerminationReason,
    Turn,
)
from harness.views import (
    render,
    to_cekura_result,
    to_vapi_eval_run,
    to_yappr_evaluation,
    to_yappr_run,
    to_yappr_turns,
)

VAPI_SCHEMA = Path(__file__).resolve().parent / "fixtures" / "vapi_eval_run.schema.json"
T0 = datetime(2025, 3, 4, 9, 30, 0, tzinfo=UTC)

# ------------------------------------------------------------------ runs by hand

BOOKED = Criterion(weight=2, description="Agent confirms the booking", pattern=r"booked")
NO_LAWYER = Criterion(
    description="Agent never mentions lawyers", pattern="lawyer", must_match=False
)
FAST = Criterion(
    description="p90 latency under 1.5 s", latency_ms=LatencyCheck(stat="p90", max_ms=1500)
)


def make_case() -> Case:
    return Case(
        id="dental-booking",
        name="Book a cleaning",
        description="Happy path booking",
        scenario="The caller wants a cleaning next Tuesday morning.",
        persona=Persona(
            name="Busy parent",
            identity_prompt="You are a parent with little time.",
            behavior_traits={"patience": "low"},
            voice="piper:joe",
        ),
        success_criteria=[BOOKED, NO_LAWYER, FAST],
        pass_threshold=80,
        script=[
            ScriptLine(say="I'd like a cleaning next Tuesday."),
            ScriptLine(say="Jane Doe", when="name"),
        ],
    )


TURNS = [
    Turn(role="agent", text="Acme Dental, how can I help?", start_ms=420, end_ms=2200),
    Turn(role="persona", text="I'd like a cleaning next Tuesday.", start_ms=2700, end_ms=4600),
    Turn(
        role="agent",
        text="You're booked for Tuesday at nine.",
        start_ms=5290,
        end_ms=7400,
        latency_ms=690,
    ),
    Turn(role="persona", text="Thanks, that's all. Goodbye.", start_ms=7900, end_ms=9500),
]


def make_metrics(p50: float = 690, ttfa: float = 420) -> Metrics:
    return Metrics(
        latency_ms=LatencySummary(
            n=1, min=p50, p50=p50, p90=p50, p95=p50, p99=p50, max=p50, mean=p50
        ),
        time_to_first_audio_ms=ttfa,
        transport_rtt_ms=2.5,
        agent_speech_ms=3890,
        persona_speech_ms=3500,
        agent_turns=2,
        persona_turns=2,
    )


def make_evaluation(booked: bool = True) -> Evaluation:
    results = [
        CriterionResult(
            assertion=BOOKED,
            passed=booked,
            weight=2,
            reason='agent said /booked/ ("booked")' if booked else "agent never said /booked/",
        ),
        CriterionResult(
            assertion=NO_LAWYER, passed=True, weight=1, reason="agent never said /lawyer/"
        ),
        CriterionResult(
            assertion=FAST, passed=True, weight=1, reason="p90 latency 690 ms <= 1500 ms"
        ),
    ]
    score = 100.0 if booked else 50.0
    return Evaluation(score=score, pass_fail=score >= 80, results=results)


def completed_run(**overrides: Any) -> Run:
    fields: dict[str, Any] = {
        "status": "completed",
        "termination_reason": "persona_goodbye",
        "created_at": T0,
        "started_at": T0 + timedelta(seconds=1),
        "ended_at": T0 + timedelta(seconds=11, milliseconds=500),
        "duration_ms": 10_500.4,
        "channel": "webrtc",
        "target": "webrtc://localhost:7860/offer",
        "case": make_case(),
        "suite_name": "dental",
        "suite_run_id": "2f1c7c3e-5a57-4e39-9d4a-8a0f1f3b9c11",
        "turns": TURNS,
        "metrics": make_metrics(),
        "evaluation": make_evaluation(),
        "recording": "runs/abc/call.wav",
        "events": [CallEvent(t_ms=0, kind="connected"), CallEvent(t_ms=9500, kind="hangup")],
        "loopcall_version": "0.1.0",
    }
    fields.update(overrides)
    return Run(**fields)


def below_threshold_run() -> Run:
    slow = [t.model_copy(update={"latency_ms": 910}) if t.latency_ms else t for t in TURNS]
    return completed_run(
        evaluation=make_evaluation(booked=False),
        metrics=make_metrics(p50=910, ttfa=600),
        turns=slow,
        duration_ms=30_000,
    )


def failed_run(termination: TerminationReason = "error") -> Run:
    return Run(
        status="failed",
        termination_reason=termination,
        created_at=T0,
        started_at=T0 + timedelta(seconds=1),
        ended_at=T0 + timedelta(seconds=3),
        duration_ms=2000,
        channel="webrtc",
        target="webrtc://localhost:7860/offer",
        case=make_case(),
        suite_name="dental",
        suite_run_id="2f1c7c3e-5a57-4e39-9d4a-8a0f1f3b9c11",
        error="ICE connection failed",
    )


def queued_run() -> Run:
    return Run(
        created_at=T0, channel="webrtc", target="webrtc://localhost:7860/offer", case=make_case()
    )


def running_run() -> Run:
    return Run(
        status="running",
        created_at=T0,
        started_at=T0 + timedelta(seconds=2),
        channel="webrtc",
        target="webrtc://localhost:7860/offer",
        case=make_case(),
        turns=TURNS[:1],
    )


def cancelled_run() -> Run:
    return failed_run().model_copy(
        update={"status": "cancelled", "termination_reason": "cancelled", "error": None}
    )


ALL_RUNS = {
    "completed": completed_run,
    "below_threshold": below_threshold_run,
    "failed": failed_run,
    "timeout": lambda: failed_run("timeout"),
    "cancelled": cancelled_run,
    "queued": queued_run,
    "running": running_run,
}


def _is_iso(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _is_uuid(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


# ------------------------------------------------------------------ Vapi


def vapi_validator() -> jsonschema.Validator:
    """The seed's EvalRun schema, with the $refs it does not define filled in.

    CreateEvalDTO and EvalRunResult become permissive objects.  The two target
    refs sit in a ``oneOf``, so they must not both accept everything: each is
    told apart by its ``type``.
    """
    schema = json.loads(VAPI_SCHEMA.read_text())
    schema = copy.deepcopy(schema)
    schema.pop("$id")  # a fragment-only $id would re-base the "#/components" refs

    def target(kind: str) -> dict[str, Any]:
        return {"type": "object", "properties": {"type": {"const": kind}}, "required": ["type"]}

    schema["components"] = {
        "schemas": {
            "CreateEvalDTO": {"type": "object"},
            "EvalRunResult": {"type": "object"},
            "EvalRunTargetAssistant": target("assistant"),
            "EvalRunTargetSquad": target("squad"),
        }
    }
    checker = jsonschema.FormatChecker()
    checker.checks("date-time", raises=ValueError)(lambda v: datetime.fromisoformat(v) is not None)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=checker)


@pytest.mark.parametrize("kind", sorted(ALL_RUNS))
def test_vapi_view_validates_against_seed_schema(kind: str) -> None:
    view = to_vapi_eval_run(ALL_RUNS[kind]())
    errors = [e.message for e in vapi_validator().iter_errors(view)]
    assert errors == []
    json.dumps(view)  # JSON-ready


def test_vapi_validator_rejects_a_broken_view() -> None:
    view = to_vapi_eval_run(completed_run())
    validator = vapi_validator()
    for key, bad in [("endedReason", None), ("status", "completed"), ("startedAt", "yesterday")]:
        broken = dict(view)
        if bad is None:
            del broken[key]
        else:
            broken[key] = bad
        assert not validator.is_valid(broken), key


@pytest.mark.parametrize(
    ("kind", "status", "ended_reason"),
    [
        ("completed", "ended", "mockConversation.done"),
        ("below_threshold", "ended", "mockConversation.done"),
        ("failed", "ended", "error"),
        ("timeout", "ended", "timeout"),
        ("cancelled", "ended", "cancelled"),
        ("queued", "queued", "mockConversation.done"),
        ("running", "running", "mockConversation.done"),
    ],
)
def test_vapi_status_and_ended_reason(kind: str, status: str, ended_reason: str) -> None:
    view = to_vapi_eval_run(ALL_RUNS[kind]())
    assert (view["status"], view["endedReason"]) == (status, ended_reason)


def test_vapi_completed_run_fields() -> None:
    run = completed_run()
    view = to_vapi_eval_run(run)
    assert view["id"] == run.id
    assert view["type"] == "eval" and view["orgId"] == "loopcall"
    assert view["cost"] == 0 and view["costs"] == []
    assert view["evalId"] == "dental-booking"
    assert view["target"] == {"type": "assistant", "assistantId": "webrtc://localhost:7860/offer"}
    assert view["createdAt"] == "2025-03-04T09:30:00Z"
    assert view["startedAt"] == "2025-03-04T09:30:01Z"
    assert view["endedAt"] == "2025-03-04T09:30:11.500000Z"
    assert "endedMessage" not in view
    messages = [
        {"role": "assistant", "content": "Acme Dental, how can I help?"},
        {"role": "user", "content": "I'd like a cleaning next Tuesday."},
        {"role": "assistant", "content": "You're booked for Tuesday at nine."},
        {"role": "user", "content": "Thanks, that's all. Goodbye."},
    ]
    assert view["eval"] == {
        "type": "chat.mockConversation",
        "name": "Book a cleaning",
        "description": "The caller wants a cleaning next Tuesday morning.",
        "messages": messages,
    }
    assert view["results"] == [
        {
            "status": "pass",
            "messages": messages,
            "startedAt": view["startedAt"],
            "endedAt": view["endedAt"],
        }
    ]


def test_vapi_result_fails_below_threshold_and_on_error() -> None:
    assert to_vapi_eval_run(below_threshold_run())["results"][0]["status"] == "fail"
    view = to_vapi_eval_run(failed_run())
    assert view["results"][0]["status"] == "fail"
    assert view["endedMessage"] == "ICE connection failed"


def test_vapi_queued_run_uses_created_at_as_stand_in() -> None:
    view = to_vapi_eval_run(queued_run())
    assert view["startedAt"] == view["endedAt"] == view["createdAt"] == "2025-03-04T09:30:00Z"
    assert view["results"] == []
    # The real (absent) times are kept.
    assert view["loopcall"]["started_at"] is None and view["loopcall"]["ended_at"] is None


def test_vapi_running_run_ends_at_its_start() -> None:
    view = to_vapi_eval_run(running_run())
    assert view["startedAt"] == view["endedAt"] == "2025-03-04T09:30:02Z"


@pytest.mark.parametrize("kind", sorted(ALL_RUNS))
def test_vapi_view_loses_nothing(kind: str) -> None:
    run = ALL_RUNS[kind]()
    view = to_vapi_eval_run(run)
    rebuilt = Run.model_validate(
        {
            **view["loopcall"],
            "id": view["id"],
            "target": view["target"]["assistantId"],
            "created_at": view["createdAt"],
        }
    )
    assert rebuilt == run


# ------------------------------------------------------------------ Yappr

# Every field documented in seed 002 (GET /agent-eval/runs/{id}).
YAPPR_RUN_FIELDS = {
    "id", "company_id", "status", "mode", "created_at", "case_id", "case", "suite_id",
    "suite_run_id", "queue_status", "agent_id", "persona_id", "agent_model", "persona_model",
    "started_at", "ended_at", "duration_ms", "score", "pass_fail", "termination_reason",
    "evaluation", "agent_input_tokens", "agent_output_tokens", "persona_input_tokens",
    "persona_output_tokens", "agent_cost_cents", "persona_cost_cents", "total_cost_cents",
    "error", "agent_overrides",
}  # fmt: skip
YAPPR_CASE_FIELDS = {
    "id", "company_id", "agent_id", "persona_id", "name", "scenario", "success_criteria",
    "max_turns", "pass_threshold", "tool_policy", "created_at", "agent", "persona", "suite_id",
    "description", "agent_overrides", "tool_allowlist", "updated_at", "deleted_at",
}  # fmt: skip
YAPPR_ASSERTION_FIELDS = {
    "weight", "description", "pattern", "tool_name", "args_match", "node_id", "rubric",
}  # fmt: skip
YAPPR_AGENT_FIELDS = {
    "id", "name", "type", "flow_config", "system_prompt", "description",
    "background_sound_volume", "temperature", "greeting_message", "agent_speaks_first",
    "vad_stop_secs", "vad_start_secs", "vad_confidence", "silence_timeout_secs",
    "max_continuous_speech_secs", "max_call_duration_secs", "lead_memory_enabled", "is_active",
    "webhook_url", "webhook_events", "extraction_parameters", "created_at", "updated_at",
}  # fmt: skip
YAPPR_PERSONA_FIELDS = {
    "id", "company_id", "name", "identity_prompt", "language", "created_at", "description",
    "behavior_traits", "voice_config", "updated_at", "deleted_at",
}  # fmt: skip
YAPPR_EVALUATION_FIELDS = {"score", "pass_fail", "results"}
YAPPR_RESULT_FIELDS = {"assertion", "passed", "weight", "reason"}
YAPPR_INT_FIELDS = (
    "agent_input_tokens", "agent_output_tokens", "persona_input_tokens",
    "persona_output_tokens", "agent_cost_cents", "persona_cost_cents", "total_cost_cents",
)  # fmt: skip
YAPPR_TERMINATION = {
    "persona_goodbye", "agent_ended", "max_turns", "timeout", "error", "cancelled",
}  # fmt: skip


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@pytest.mark.parametrize("kind", sorted(ALL_RUNS))
def test_yappr_view_has_every_documented_field_with_its_type(kind: str) -> None:
    view = to_yappr_run(ALL_RUNS[kind]())
    json.dumps(view)
    assert YAPPR_RUN_FIELDS - view.keys() == set()
    for key in ("id", "company_id", "case_id", "agent_id", "persona_id"):
        assert _is_uuid(view[key]), key
    for key in ("suite_id", "suite_run_id"):
        assert view[key] is None or _is_uuid(view[key]), key
    assert view["status"] in {"queued", "running", "completed", "failed", "cancelled"}
    assert view["mode"] == "voice"
    assert view["queue_status"] in {"pending", "claimed", "done"}
    assert _is_iso(view["created_at"])
    for key in ("started_at", "ended_at"):
        assert view[key] is None or _is_iso(view[key]), key
    assert view["duration_ms"] is None or _is_int(view["duration_ms"])
    assert view["score"] is None or 0 <= view["score"] <= 100
    assert view["pass_fail"] is None or isinstance(view["pass_fail"], bool)
    assert view["termination_reason"] is None or view["termination_reason"] in YAPPR_TERMINATION
    for key in YAPPR_INT_FIELDS:
        assert _is_int(view[key]), key
    assert view["error"] is None or isinstance(view["error"], str)
    assert isinstance(view["agent_overrides"], dict)

    case = view["case"]
    assert YAPPR_CASE_FIELDS - case.keys() == set()
    assert case["id"] == view["case_id"]
    assert _is_uuid(case["company_id"]) and _is_uuid(case["agent_id"])
    assert _is_iso(case["created_at"]) and _is_iso(case["updated_at"])
    assert _is_int(case["max_turns"])
    for criterion in case["success_criteria"]:
        assert YAPPR_ASSERTION_FIELDS - criterion.keys() == set()
    assert YAPPR_AGENT_FIELDS - case["agent"].keys() == set()
    assert case["agent"]["id"] == view["agent_id"]
    persona = case["persona"]
    assert YAPPR_PERSONA_FIELDS - persona.keys() == set()
    assert persona["id"] == view["persona_id"]
    assert isinstance(persona["behavior_traits"], dict)
    assert isinstance(persona["voice_config"], dict)

    if view["evaluation"] is not None:
        assert YAPPR_EVALUATION_FIELDS - view["evaluation"].keys() == set()
        for result in view["evaluation"]["results"]:
            assert YAPPR_RESULT_FIELDS - result.keys() == set()
            assert YAPPR_ASSERTION_FIELDS - result["assertion"].keys() == set()
            assert isinstance(result["passed"], bool)
            assert isinstance(result["reason"], str)


def test_yappr_completed_run_values() -> None:
    run = completed_run()
    view = to_yappr_run(run)
    assert view["id"] == run.id  # a UUID already: kept as is
    assert view["suite_run_id"] == run.suite_run_id
    assert view["queue_status"] == "done"
    assert view["duration_ms"] == 10_500
    assert view["score"] == 100.0 and view["pass_fail"] is True
    assert view["termination_reason"] == "persona_goodbye"
    assert view["started_at"] == "2025-03-04T09:30:01Z"
    results = view["evaluation"]["results"]
    assert [r["weight"] for r in results] == [2, 1, 1]
    assert results[0]["assertion"]["pattern"] == "booked"
    assert results[1]["assertion"]["must_match"] is False
    assert results[2]["assertion"]["latency_ms"] == {"stat": "p90", "max_ms": 1500}
    case = view["case"]
    assert case["name"] == "Book a cleaning" and case["pass_threshold"] == 80
    assert case["loopcall"]["id"] == "dental-booking"
    assert case["loopcall"]["script"][1] == {"say": "Jane Doe", "dtmf": None, "when": "name"}
    assert case["persona"]["voice_config"] == {"voice": "piper:joe", "speaking_rate": 1.0}
    assert view["loopcall"]["metrics"]["latency_ms"]["p90"] == 690
    assert view["loopcall"]["recording"] == "runs/abc/call.wav"


def test_yappr_ids_are_stable_uuid5_for_non_uuid_values() -> None:
    first, second = to_yappr_run(completed_run()), to_yappr_run(failed_run())
    assert first["case_id"] == second["case_id"]
    assert first["agent_id"] == second["agent_id"]
    assert first["company_id"] == second["company_id"]
    assert first["id"] != second["id"]
    assert uuid.UUID(first["case_id"]).version == 5
    other = completed_run(case=make_case().model_copy(update={"id": "other-case"}))
    assert to_yappr_run(other)["case_id"] != first["case_id"]
    assert _is_uuid(to_yappr_run(completed_run(id="run-7"))["id"])


@pytest.mark.parametrize(
    ("kind", "queue_status"),
    [("queued", "pending"), ("running", "claimed"), ("completed", "done"), ("failed", "done")],
)
def test_yappr_queue_status(kind: str, queue_status: str) -> None:
    assert to_yappr_run(ALL_RUNS[kind]())["queue_status"] == queue_status


def test_yappr_failed_run_has_error_and_no_score() -> None:
    view = to_yappr_run(failed_run())
    assert view["status"] == "failed" and view["error"] == "ICE connection failed"
    assert view["evaluation"] is None and view["score"] is None and view["pass_fail"] is None
    assert view["termination_reason"] == "error"


def test_yappr_turns_sub_resource() -> None:
    run = completed_run()
    turns = to_yappr_turns(run)
    assert turns["run_id"] == run.id
    assert [t["index"] for t in turns["turns"]] == [0, 1, 2, 3]
    assert [t["role"] for t in turns["turns"]] == ["agent", "persona", "agent", "persona"]
    third = turns["turns"][2]
    assert third["text"] == "You're booked for Tuesday at nine."
    assert (third["start_ms"], third["end_ms"], third["latency_ms"]) == (5290, 7400, 690)
    assert to_yappr_turns(queued_run())["turns"] == []


def test_yappr_evaluation_sub_resource() -> None:
    evaluation = to_yappr_evaluation(below_threshold_run())
    assert evaluation["score"] == 50.0 and evaluation["pass_fail"] is False
    assert evaluation["queue_status"] == "done"
    assert [r["passed"] for r in evaluation["evaluation"]["results"]] == [False, True, True]
    assert to_yappr_evaluation(queued_run())["evaluation"] is None


# ------------------------------------------------------------------ Cekura


def suite_runs() -> list[Run]:
    return [completed_run(), below_threshold_run(), failed_run()]


def test_cekura_counts_and_rates_across_outcomes() -> None:
    passed, below, errored = runs = suite_runs()
    result = to_cekura_result(runs)
    assert result["total_runs_count"] == 3
    assert result["completed_runs_count"] == 2
    assert result["success_runs_count"] == 1
    assert result["failed_runs_count"] == 2
    assert result["met_expected_outcome_count"] == 1
    assert result["total_expected_outcome_count"] == 3
    assert result["success_rate"] == pytest.approx(1 / 3, abs=1e-4)
    assert result["overall_evaluation"]["success_rate"] == result["success_rate"]
    assert result["status"] == "completed"
    assert result["connected_run_ids"] == [passed.id, below.id]
    assert result["infra_failed_run_ids"] == [errored.id]
    assert result["expected_outcome_failed_run_ids"] == [below.id]
    assert result["success_run_ids"] == [passed.id]
    # 10.5 s + 30 s + 2 s
    assert result["total_duration"] == "00:42"
    assert result["id"] == passed.suite_run_id and result["name"] == "dental"


def test_cekura_runs_keyed_by_id() -> None:
    passed, below, errored = runs = suite_runs()
    result = to_cekura_result(runs)
    assert list(result["runs"]) == [passed.id, below.id, errored.id]
    one = result["runs"][passed.id]
    assert one["success"] is True and one["expected_outcome"]["score"] == 100
    assert one["status"] == "completed" and one["duration"] == "00:10"
    assert one["scenario"] == "dental-booking" and one["scenario_name"] == "Book a cleaning"
    assert one["personality_name"] == "Busy parent"
    assert one["transcript"][0] == {
        "role": "Main Agent",
        "content": "Acme Dental, how can I help?",
        "start_ms": 420,
        "end_ms": 2200,
    }
    latency = next(m for m in one["evaluation"]["metrics"] if m["id"] == "latency")
    assert latency["extra"]["percentiles"]["p50"] == 690
    low = result["runs"][below.id]
    assert low["success"] is False and low["expected_outcome"]["score"] == 50.0
    assert (
        "FAIL Agent confirms the booking: agent never said /booked/"
        in (low["expected_outcome"]["explanation"])
    )
    bad = result["runs"][errored.id]
    assert bad["success"] is False and bad["expected_outcome"]["score"] == 0
    assert bad["error_message"] == "ICE connection failed" and bad["transcript"] == []
    timeout = failed_run("timeout")
    assert to_cekura_result([timeout])["runs"][timeout.id]["status"] == "timeout"


def test_cekura_overall_evaluation_metrics() -> None:
    overall = to_cekura_result(suite_runs())["overall_evaluation"]
    summary = overall["metric_summary"]
    # median of every agent turn's latency across runs (690, 910); the failed run has none
    assert summary["latency"]["p50"] == 800
    assert summary["time_to_first_audio"]["p50"] == 510
    criteria = {m["name"]: m for m in summary.values() if m["type"] == "binary_qualitative"}
    assert set(criteria) == {
        "Agent confirms the booking",
        "Agent never mentions lawyers",
        "p90 latency under 1.5 s",
    }
    booking = criteria["Agent confirms the booking"]
    assert booking["score"] == 50.0  # passed in 1 of the 2 evaluated runs
    assert booking["function_name"] == "pattern"
    assert criteria["Agent never mentions lawyers"]["score"] == 100.0
    assert overall["worst_performing_metrics"]["binary_adherence"] == [booking["id"]]
    numeric = {m["name"]: m for m in overall["numeric_metrics"]}
    assert numeric["Latency"]["percentiles"]["p50"] == 800
    assert numeric["Time to First Audio"]["value"] == 510
    outcome = next(m for m in overall["extra_metrics"] if m["name"] == "Expected Outcome")
    assert outcome["value"] == 50.0  # (100 + 50 + 0) / 3


def test_cekura_pools_only_the_turns_the_runs_vouch_for() -> None:
    # A turn measured while the harness ran late is degraded: the run's own latency
    # figure leaves it out, and so must the pooled p50 across runs.
    late = Turn(
        role="agent", text="Sorry?", start_ms=14_000, end_ms=15_000, latency_ms=4000, degraded=True
    )
    persona = Turn(role="persona", text="Hello?", start_ms=10_000, end_ms=10_000 + 3_000)
    stalled = completed_run(turns=[*TURNS, persona, late])
    runs = [stalled, below_threshold_run()]
    overall = to_cekura_result(runs)["overall_evaluation"]
    # vouched for: 690 and 910; with the degraded 4000 ms turn the median would be 910
    assert overall["metric_summary"]["latency"]["p50"] == 800
    assert overall["metric_summary"]["latency"]["score"] == 800
    numeric = {m["name"]: m for m in overall["numeric_metrics"]}
    assert numeric["Latency"]["value"] == 800
    assert "degraded" in overall["metric_summary"]["latency"]["explanation"]
    # ... consistently with each run's own figure (made without the degraded turn)
    one = to_cekura_result([stalled])["runs"][stalled.id]
    latency = next(m for m in one["evaluation"]["metrics"] if m["id"] == "latency")
    assert latency["score"] == stalled.metrics.latency_ms.p50 == 690


def test_cekura_failed_reasons_group_criteria_and_errors() -> None:
    runs = [*suite_runs(), below_threshold_run()]
    reasons = to_cekura_result(runs)["failed_reasons"]
    assert reasons["total_failed_runs"] == 3
    first, second = reasons["issues"]
    assert first["rank"] == 1 and first["description"] == "Agent confirms the booking"
    assert first["affected_count"] == 2 and first["run_ids"] == [runs[1].id, runs[3].id]
    assert second["rank"] == 2 and second["run_ids"] == [runs[2].id]
    assert "ICE connection failed" in second["description"]


def test_cekura_single_run_and_in_progress_results() -> None:
    run = completed_run(suite_run_id=None, suite_name=None)
    single = to_cekura_result([run])
    assert single["id"] == run.id and single["name"] == "Book a cleaning"
    assert single["success_rate"] == 1.0 and single["failed_reasons"]["issues"] == []
    assert to_cekura_result([run], name="nightly", result_id=42)["id"] == 42
    assert to_cekura_result([queued_run()])["status"] == "pending"
    pending = to_cekura_result([completed_run(), queued_run()])
    assert pending["status"] == "running"
    assert pending["success_rate"] == 1.0  # of the finished runs
    assert pending["total_runs_count"] == 2
    assert to_cekura_result([failed_run()])["status"] == "failed"
    with pytest.raises(ValueError, match="at least one run"):
        to_cekura_result([])


# ------------------------------------------------------------------ render


def test_render_dispatches_to_each_view() -> None:
    run = completed_run()
    assert render(run, "loopcall") == run.model_dump(mode="json")
    assert render(run, "vapi") == to_vapi_eval_run(run)
    assert render(run, "yappr") == to_yappr_run(run)
    assert render(run, "cekura") == to_cekura_result([run])
    runs = suite_runs()
    assert render(runs, "cekura") == to_cekura_result(runs)
    assert render([run], "vapi") == to_vapi_eval_run(run)


def test_render_rejects_unknown_view_and_many_runs_for_single_views() -> None:
    with pytest.raises(ValueError, match="loopcall, vapi, yappr, cekura"):
        render(completed_run(), "retell")
    with pytest.raises(ValueError, match="exactly one run"):
        render(suite_runs(), "yappr")


def test_text_view_shows_transcript_latency_and_verdicts() -> None:
    from harness.views.text import to_text

    run = completed_run()
    text = to_text(run)
    for turn in run.turns:
        assert turn.text in text
    assert run.evaluation is not None
    assert ("PASS" if run.evaluation.pass_fail else "FAIL") in text
    for result in run.evaluation.results:
        assert result.reason in text
    latencies = [t.latency_ms for t in run.turns if t.latency_ms is not None]
    assert f"(+{latencies[0]:.0f} ms)" in text


def test_text_view_shows_the_error_of_a_failed_run() -> None:
    from harness.views.text import to_text

    run = failed_run()
    assert run.error is not None
    assert f"error: {run.error}" in to_text(run)


def test_cekura_latency_p50_pools_every_turn_of_every_run() -> None:
    def run_with(latencies: list[float]) -> Run:
        turns = [
            Turn(
                role="agent",
                text="a",
                start_ms=i * 1000.0,
                end_ms=i * 1000.0 + 500,
                latency_ms=latency,
            )
            for i, latency in enumerate(latencies)
        ]
        return completed_run(turns=turns)

    overall = to_cekura_result([run_with([100, 200, 300]), run_with([1000])])["overall_evaluation"]
    # pooled: median(100, 200, 300, 1000) = 250; a median of the runs' p50s would say 600
    assert overall["metric_summary"]["latency"]["p50"] == 250
