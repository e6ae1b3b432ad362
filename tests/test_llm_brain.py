"""The LLM brain against a local OpenAI-compatible endpoint.

No cloud is reachable here, so the endpoint is a small server on 127.0.0.1 that
answers ``POST /v1/chat/completions`` as the OpenAI API documents it (response
object, error object, bearer auth).  The brain talks to it through the real
``openai`` client, exactly as it would talk to any hosted endpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fake_openai import FakeOpenAI

from harness.cases import load_cases
from harness.models import Case
from harness.orchestrator import RunOptions, run_case
from harness.store import RunStore
from personas.brains import BrainError
from personas.factory import make_brain
from personas.llm_brain import END_CALL, OPENING, LLMBrain, LLMConfig, system_prompt

EXAMPLES = Path(__file__).resolve().parents[1] / "harness" / "examples"


@pytest.fixture
async def fake_openai(http_stub) -> FakeOpenAI:
    fake = FakeOpenAI()
    fake.base_url = "http://" + await http_stub("POST", "/v1/chat/completions", fake.handle) + "/v1"
    return fake


def booking_case(**update: Any) -> Case:
    case = load_cases(EXAMPLES / "dental_suite.yaml").cases[0]
    return case.model_copy(update={"brain": "llm", **update})


def config(fake: FakeOpenAI, key: str | None = "sk-test") -> LLMConfig:
    return LLMConfig(base_url=fake.base_url, api_key=key, model="test-model", timeout_s=5)


def test_system_prompt_carries_the_persona_scenario_and_script() -> None:
    case = booking_case()
    prompt = system_prompt(case)
    assert case.persona.identity_prompt in prompt
    assert case.scenario in prompt
    assert "patience: low" in prompt
    assert "Your goal: Book a cleaning next week" in prompt
    assert all(line.say in prompt for line in case.script)
    assert END_CALL in prompt


async def test_the_agent_speaks_as_user_and_the_persona_as_assistant(fake_openai) -> None:
    fake_openai.replies = ["Hi, this is Alex.", "Tuesday works."]
    fake_openai.prompt_tokens, fake_openai.completion_tokens = 13, 4
    brain = LLMBrain(booking_case(), config(fake_openai))
    first = await brain.next_reply("Thanks for calling, may I have your name?")
    second = await brain.next_reply("I have Tuesday at ten.")
    assert (first.text, first.hang_up) == ("Hi, this is Alex.", False)
    assert second.text == "Tuesday works."
    last = fake_openai.requests[-1]
    assert last["model"] == "test-model"
    assert [m["role"] for m in last["messages"]] == ["system", "user", "assistant", "user"]
    assert last["messages"][1]["content"] == "Thanks for calling, may I have your name?"
    assert fake_openai.auth[0] == "Bearer sk-test"
    assert (brain.input_tokens, brain.output_tokens) == (26, 8)  # each answer's usage, summed


async def test_end_call_marker_hangs_up_and_is_not_spoken(fake_openai) -> None:
    fake_openai.replies = [f"That's all, goodbye! {END_CALL}"]
    reply = await LLMBrain(booking_case(), config(fake_openai)).next_reply("Anything else?")
    assert reply.text == "That's all, goodbye!"
    assert reply.hang_up and reply.reason == "persona_goodbye"


async def test_speaking_first_sends_an_explicit_opening(fake_openai) -> None:
    await LLMBrain(booking_case(), config(fake_openai)).next_reply("")
    assert fake_openai.requests[0]["messages"][1]["content"] == OPENING


async def test_max_turns_says_goodbye_without_asking_the_model(fake_openai) -> None:
    brain = LLMBrain(booking_case(max_turns=2), config(fake_openai))
    await brain.next_reply("Hello?")
    reply = await brain.next_reply("Still there?")
    assert reply.hang_up and reply.reason == "max_turns"
    assert reply.text == booking_case().goodbye
    assert len(fake_openai.requests) == 1


async def test_a_rejected_key_is_a_readable_brain_error(fake_openai) -> None:
    fake_openai.status = 401
    brain = LLMBrain(booking_case(), config(fake_openai, key="sk-wrong"))
    with pytest.raises(BrainError, match="HTTP 401.*Incorrect API key"):
        await brain.next_reply("Hello?")


async def test_an_unreachable_endpoint_is_a_brain_error() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cfg = LLMConfig(base_url=f"http://127.0.0.1:{port}/v1", api_key=None, model="m", timeout_s=2)
    with pytest.raises(BrainError, match=f"127.0.0.1:{port}"):
        await LLMBrain(booking_case(), cfg).next_reply("Hello?")


def test_an_llm_case_without_an_endpoint_says_what_to_configure() -> None:
    with pytest.raises(BrainError, match="LOOPCALL_LLM_BASE_URL"):
        make_brain(booking_case(), None)


async def test_run_without_an_llm_endpoint_is_a_stored_failed_run(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    run = await run_case(
        booking_case(), "webrtc://127.0.0.1:9/api/offer", store, options=RunOptions(calibrate=False)
    )
    assert run.status == "failed" and run.termination_reason == "error"
    assert run.error is not None and "LOOPCALL_LLM_BASE_URL" in run.error
    assert store.load(run.id).status == "failed"


@pytest.mark.e2e
async def test_llm_persona_converses_with_the_reference_agent(
    shared_agent, fake_openai, tmp_path: Path
) -> None:
    agent = shared_agent
    fake_openai.replies = [
        "Hi, this is Jordan Lee.",
        "Tuesday at ten is perfect.",
        f"No, that's everything. Bye! {END_CALL}",
    ]
    run = await run_case(
        booking_case(),
        agent.target,
        RunStore(tmp_path),
        options=RunOptions(calibrate=False, llm=config(fake_openai)),
    )
    assert run.status == "completed", run.error
    assert run.termination_reason in ("persona_goodbye", "agent_ended")
    persona_text = " ".join(t.text for t in run.turns if t.role == "persona")
    assert "Jordan Lee" in persona_text and "Tuesday at ten is perfect." in persona_text
    # The model was given what the agent actually said, as heard over the call.
    first_user = fake_openai.requests[0]["messages"][1]["content"].lower()
    assert "bright smile" in first_user and "name" in first_user
    # The persona's tokens, summed from each answer's usage, are in the run.
    asked = len(fake_openai.requests)
    assert asked >= 2
    assert run.usage.persona_input_tokens == asked * fake_openai.prompt_tokens
    assert run.usage.persona_output_tokens == asked * fake_openai.completion_tokens
