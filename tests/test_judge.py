"""The ``rubric`` criterion: an LLM judge on a local OpenAI-compatible endpoint.

The endpoint (``tests/fake_openai.py``) runs on 127.0.0.1 and answers as the
OpenAI API documents; the judge talks to it through the real ``openai`` client.
Each test scores a real-shaped call (turns, a tool call, a flow node) through
``evaluate_off_loop``, the path the orchestrator takes.
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fake_openai import FakeOpenAI
from pydantic import SecretStr

from harness.models import AgentEvent, Case, Criterion, Metrics, Persona, ToolCall, Turn, Usage
from harness.orchestrator import RunOptions, run_case
from harness.scoring import CallFacts, Judge, evaluate, evaluate_off_loop
from harness.scoring.judge import NOT_CONFIGURED, NOTHING_SAID
from harness.settings import JudgeConfig, Settings
from harness.store import RunStore

RUBRIC = "The agent read the date and time back before ending the call."
TURNS = [
    Turn(role="agent", text="Bright Smile Dental, this is Ava.", start_ms=300, end_ms=2000),
    Turn(role="persona", text="I'd like a cleaning on Tuesday.", start_ms=2500, end_ms=4000),
    Turn(
        role="agent",
        text="You're booked for Tuesday at ten a.m. Anything else?",
        start_ms=6000,
        end_ms=8500,
    ),
    Turn(role="persona", text="No, thanks. Goodbye.", start_ms=9000, end_ms=10000),
]
FACTS = CallFacts(
    TURNS,
    Metrics(),
    "persona_goodbye",
    tool_calls=[
        ToolCall(
            name="book_appointment",
            args={"day": "Tuesday", "time": "10:00"},
            response={"status": "booked"},
            status_code=200,
            at_ms=5200,
        )
    ],
    agent_events=[AgentEvent(type="node", name="confirm_booking", at_ms=5900)],
)


def verdict(passed: bool, reason: str = "It did.", quotes: list[str] | None = None) -> str:
    return json.dumps({"passed": passed, "reason": reason, "quotes": quotes or []})


@pytest.fixture
async def fake(http_stub) -> AsyncIterator[FakeOpenAI]:
    fake = FakeOpenAI()
    fake.base_url = "http://" + await http_stub("POST", "/v1/chat/completions", fake.handle) + "/v1"
    yield fake
    fake.released.set()  # a hung request ends before the server shuts down


def make_judge(base_url: str, **kw: Any) -> Judge:
    config = JudgeConfig(
        base_url=base_url,
        api_key=SecretStr("sk-judge"),
        model="judge-model",
        timeout_s=kw.pop("timeout_s", 5.0),
        max_retries=0,
    )
    return Judge(config, **kw)


def case(*criteria: dict[str, Any]) -> Case:
    listed = criteria or ({"rubric": RUBRIC},)
    return Case(
        name="booking",
        persona=Persona(name="Alex"),
        success_criteria=[Criterion.model_validate(c) for c in listed],
    )


async def test_a_passing_verdict_with_its_quote_as_evidence_and_its_tokens(fake) -> None:
    fake.replies = [verdict(True, "It read back Tuesday at ten.", ["booked for Tuesday at ten"])]
    usage = Usage()
    evaluation = await evaluate_off_loop(case(), FACTS, make_judge(fake.base_url), usage)
    (result,) = evaluation.results
    assert result.passed and evaluation.score == 100
    assert result.reason == "judge (judge-model): It read back Tuesday at ten."
    (evidence,) = result.evidence
    assert (evidence.turn_index, evidence.at_ms) == (2, 6000)
    assert evidence.quote == "booked for Tuesday at ten"
    assert (usage.judge_input_tokens, usage.judge_output_tokens) == (10, 5)
    (request,) = fake.requests
    assert fake.auth == ["Bearer sk-judge"]
    assert request["model"] == "judge-model" and request["temperature"] == 0
    assert request["response_format"]["type"] == "json_schema"
    prompt = request["messages"][1]["content"]
    assert RUBRIC in prompt
    # Two-sided, timestamped, with the tool call and the node, in time order.
    lines = prompt.split("Transcript:\n")[1].splitlines()
    assert lines == [
        "[00:00.3] AGENT: Bright Smile Dental, this is Ava.",
        "[00:02.5] CALLER: I'd like a cleaning on Tuesday.",
        '[00:05.2] TOOL CALL book_appointment({"day": "Tuesday", "time": "10:00"})'
        ' -> {"status": "booked"}',
        "[00:05.9] AGENT EVENT node confirm_booking",
        "[00:06.0] AGENT: You're booked for Tuesday at ten a.m. Anything else?",
        "[00:09.0] CALLER: No, thanks. Goodbye.",
    ]


async def test_a_failing_verdict_fails_the_criterion_with_the_judges_reason(fake) -> None:
    fake.replies = [verdict(False, "No date was read back.", ["Anything else?"])]
    evaluation = await evaluate_off_loop(
        case({"rubric": RUBRIC}, {"pattern": "Tuesday"}), FACTS, make_judge(fake.base_url)
    )
    rubric, pattern = evaluation.results
    assert not rubric.passed and rubric.reason.endswith("No date was read back.")
    assert rubric.evidence[0].turn_index == 2
    assert pattern.passed and evaluation.score == 50


async def test_the_same_rubric_on_the_same_call_is_answered_from_the_cache(fake) -> None:
    fake.replies = [verdict(True), verdict(False)]
    judge, usage = make_judge(fake.base_url), Usage()
    first = await evaluate_off_loop(case(), FACTS, judge, usage)
    again = await evaluate_off_loop(case(), FACTS, judge, usage)
    assert len(fake.requests) == 1
    assert again.results[0].passed == first.results[0].passed is True
    assert "cached" in again.results[0].reason
    assert usage.judge_input_tokens == 10  # a cached verdict costs nothing
    other_call = CallFacts(TURNS[:2], Metrics(), "persona_goodbye")
    changed = await evaluate_off_loop(case(), other_call, judge, usage)
    assert len(fake.requests) == 2 and not changed.results[0].passed


async def test_the_cache_is_bounded(fake) -> None:
    fake.default = verdict(True)
    judge = make_judge(fake.base_url, cache_size=1)
    for rubric in ("A", "B", "A"):
        await evaluate_off_loop(case({"rubric": rubric}), FACTS, judge)
    assert len(fake.requests) == 3  # "A" was evicted by "B"


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/v1"


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        ("unreachable", "could not reach http://127.0.0.1:"),
        ("timeout", "did not answer within 0.5 s"),
        ("http_401", "answered HTTP 401: Incorrect API key provided"),
        ("not_json", "answered without a JSON verdict: 'I think it passed.'"),
        ("malformed", "gave a malformed verdict (passed: Input should be a valid boolean; reason"),
    ],
)
async def test_a_judge_failure_fails_that_criterion_only(fake, setup: str, expected: str) -> None:
    base_url = closed_port_url() if setup == "unreachable" else fake.base_url
    fake.hang = setup == "timeout"
    fake.status = 401 if setup == "http_401" else 200
    fake.default = {"not_json": "I think it passed.", "malformed": '{"passed": "maybe"}'}.get(
        setup, verdict(True)
    )
    judge = make_judge(base_url, timeout_s=0.5)
    usage = Usage()
    evaluation = await evaluate_off_loop(
        case({"rubric": RUBRIC}, {"pattern": "Tuesday"}), FACTS, judge, usage
    )
    rubric, pattern = evaluation.results
    assert not rubric.passed
    assert rubric.reason.startswith("the judge gave no verdict: ") and expected in rubric.reason
    assert pattern.passed  # the rest of the case is judged as ever
    # Tokens spent on an unusable answer still count; none when nothing answered.
    answered = setup in ("not_json", "malformed")
    assert usage.judge_input_tokens == (10 if answered else 0)
    fake.hang, fake.status, fake.default = False, 200, verdict(True)
    if setup != "unreachable":  # a failure is not cached: the next scoring asks again
        assert (await evaluate_off_loop(case(), FACTS, judge)).results[0].passed


async def test_an_endpoint_without_json_schema_is_asked_again_and_its_text_parsed(fake) -> None:
    fake.refuse_response_format = True
    fake.replies = [
        "Sure.\n```json\n" + verdict(True, "Read back.", ["Tuesday at ten a.m."]) + "\n```",
        verdict(False, "Not read back."),
    ]
    judge = make_judge(fake.base_url)
    evaluation = await evaluate_off_loop(case(), FACTS, judge)
    assert evaluation.results[0].passed
    assert evaluation.results[0].evidence[0].turn_index == 2
    assert ["response_format" in r for r in fake.requests] == [True, False]
    await evaluate_off_loop(case({"rubric": "another"}), FACTS, judge)
    assert "response_format" not in fake.requests[-1]  # not offered again


def test_without_a_judge_a_rubric_fails_saying_how_to_configure_one() -> None:
    (result,) = evaluate(case(), TURNS, Metrics(), "persona_goodbye").results
    assert not result.passed and result.reason == NOT_CONFIGURED
    assert "LOOPCALL_JUDGE_BASE_URL" in result.reason


def test_the_judge_falls_back_to_the_personas_llm_but_not_its_key_elsewhere() -> None:
    assert Settings(_env_file=None).judge_config() is None
    llm = {"llm_base_url": "http://llm.local/v1", "llm_api_key": "sk-llm", "llm_model": "m1"}
    shared = Settings(_env_file=None, **llm).judge_config()
    assert shared is not None and shared.base_url == "http://llm.local/v1"
    assert shared.api_key is not None and shared.api_key.get_secret_value() == "sk-llm"
    assert shared.model == "m1"
    elsewhere = Settings(_env_file=None, judge_base_url="http://judge.local/v1", **llm)
    config = elsewhere.judge_config()
    assert config is not None and config.api_key is None  # sk-llm never goes to judge.local
    own = Settings(_env_file=None, judge_api_key="sk-own", judge_model="big", **llm)
    assert own.judge_config() == JudgeConfig(
        "http://llm.local/v1", SecretStr("sk-own"), "big", timeout_s=30.0
    )
    assert "sk-own" not in repr(own.judge_config()) and "sk-own" in own.secret_values()
    judge = Judge(own.judge_config())  # type: ignore[arg-type]
    assert "sk-own" in RunOptions(judge=judge).secrets()


async def test_a_run_hands_its_rubrics_to_the_judge_and_stores_the_verdict(
    fake, tmp_path: Path
) -> None:
    # The orchestrator's path, on a call that fails at once (nothing listens on
    # port 9): the run is stored failed, its rubric judged by the options' judge,
    # which is not asked (nor paid) when nothing was said.
    store = RunStore(tmp_path)
    options = RunOptions(calibrate=False, judge=make_judge(fake.base_url))
    run = await run_case(case(), "webrtc://127.0.0.1:9/api/offer", store, options=options)
    assert run.status == "failed"
    stored = store.load(run.id)
    assert stored.evaluation is not None
    assert stored.evaluation.results[0].reason == NOTHING_SAID
    assert fake.requests == [] and stored.usage.judge_input_tokens == 0
