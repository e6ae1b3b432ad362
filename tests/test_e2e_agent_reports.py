"""End to end over real WebRTC: the reference agent books through its mock tools and
reports its flow, and the run judges both, without moving a reply by a millisecond.

The agent is ``loopcall agent`` in its own process (pipecat SmallWebRTC); the tools URL
and the event webhook are ``loopcall run``'s loopback server (``serve_ingest``), handed
to the agent in the offer's ``request_data``; its spans go to an OTLP/HTTP
``/v1/traces`` route on loopback, as ``loopcall demo`` wires them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dental import EXAMPLES, booking_case
from fake_openai import FakeOpenAI
from fastapi import FastAPI, Request
from pydantic import SecretStr
from traced_bot import serve_app

from harness.cases import load_cases
from harness.ingest import RunInbox, serve_ingest
from harness.ingest.otel import ALL_RUNS, UNTRACED, TraceDesk, traces_router
from harness.models import Case
from harness.orchestrator import EchoCalibrator, RunOptions, run_case
from harness.scoring import Judge
from harness.settings import JudgeConfig
from harness.store import RunStore

pytestmark = pytest.mark.e2e
DELAY_MS = 400


def _case_with_tools() -> Case:
    data = booking_case().model_dump(mode="json", exclude_none=True)
    data["tools"] = [
        {"name": "check_availability", "response": {"slots": ["Tuesday 10:00"]}},
        {"name": "book_appointment", "responses": [{"status": "booked", "confirmation": "A12"}]},
    ]
    data["success_criteria"] += [
        {
            "tool_name": "book_appointment",
            "args_match": {"day": "(?i)tue", "time": "10:00", "name": "$present"},
            "after": "check_availability",
            "weight": 2,
        },
        {"tool_name": "check_availability", "times": {"min": 1, "max": 1}},
        {"node_id": "collect_details"},
        {"node_id": "confirm_booking", "after": "book_appointment"},
        {"tool_name": "cancel_booking", "weight": 0},  # fails, for the right reason
        {"semantic": "the agent offers an appointment on Thursday", "weight": 0},  # so does this
    ]
    # The demo suite's judgement of meaning, flow and manner, as it ships.
    judged = load_cases(EXAMPLES / "dental_suite.yaml").cases[2]
    data["success_criteria"] += [
        c.model_dump(mode="json", exclude_none=True)
        for c in judged.success_criteria
        if c.kind in ("semantic", "dynamics", "rubric")
    ]
    return Case.model_validate(data)


@pytest.fixture
async def judge(http_stub) -> tuple[Judge, FakeOpenAI]:
    """An LLM judge on a local OpenAI-compatible endpoint that finds the rubric met."""
    fake = FakeOpenAI()
    fake.base_url = "http://" + await http_stub("POST", "/v1/chat/completions", fake.handle) + "/v1"
    fake.default = json.dumps(
        {"passed": True, "reason": "It read the slot back.", "quotes": ["Tuesday at ten"]}
    )
    config = JudgeConfig(base_url=fake.base_url, api_key=SecretStr("sk-t"), model="judge")
    return Judge(config), fake


async def _anyone(_request: Request) -> str:
    return ALL_RUNS  # loopback: what `loopcall run` serves


async def test_the_reference_agent_books_through_its_tools_url(
    start_agent, tmp_path: Path, judge: tuple[Judge, FakeOpenAI]
) -> None:
    desk = TraceDesk()
    otlp = FastAPI(telemetry=UNTRACED)
    otlp.include_router(traces_router(desk.accept, _anyone))
    store = RunStore(tmp_path / "runs")
    opened: list[RunInbox] = []
    async with (
        serve_app(otlp) as otlp_at,
        serve_ingest() as ingest,
        EchoCalibrator() as calibrator,
    ):
        # The agent exports its spans to loopcall, as `loopcall demo` starts it.
        endpoint = f"http://{otlp_at}/v1/traces"
        agent = start_agent("--reply-delay-ms", str(DELAY_MS), "--otlp-endpoint", endpoint)
        open_inbox = ingest.inboxes.open

        def spy(run_id: str, case: Case) -> RunInbox:
            opened.append(open_inbox(run_id, case))
            return opened[-1]

        ingest.inboxes.open = spy  # type: ignore[method-assign]
        options = RunOptions(
            inboxes=ingest.inboxes,
            agent_base_url=ingest.base_url,
            judge=judge[0],
            traces=desk,
            expect_traces=True,
        )
        run = await run_case(
            _case_with_tools(), agent.target, store, options=options, calibrator=calibrator
        )

    assert run.status == "completed", run.error
    agent_turns = [t for t in run.turns if t.role == "agent"]
    persona_turns = [t for t in run.turns if t.role == "persona"]
    assert len(agent_turns) == 4 and len(persona_turns) == 3
    # The tools, as the agent called them: availability as it greeted, the booking once
    # the caller accepted, made for the confirmation that follows.
    [check, book] = run.tool_calls
    assert (check.name, check.status_code, check.response) == (
        "check_availability",
        200,
        {"slots": ["Tuesday 10:00"]},
    )
    assert check.at_ms is not None and 0 <= check.at_ms <= agent_turns[0].end_ms
    assert book.name == "book_appointment" and book.status_code == 200
    assert book.args["day"] == "Tuesday" and book.args["time"] == "10:00" and book.args["name"]
    assert book.at_ms is not None
    assert persona_turns[1].end_ms < book.at_ms < agent_turns[2].start_ms
    assert book.turn_index == run.turns.index(agent_turns[2])
    # Its flow, on the recording's clock: each node between what caused it and what follows.
    nodes = {e.name: e.at_ms for e in run.agent_events if e.type == "node"}
    assert list(nodes) == ["greet", "collect_details", "confirm_booking", "goodbye"]
    assert all(at is not None for at in nodes.values())
    # The agent decides the caller is done after its hangover, before its reply is due.
    assert persona_turns[0].end_ms < nodes["collect_details"] < agent_turns[1].start_ms  # type: ignore[operator]
    assert book.at_ms < nodes["confirm_booking"] < agent_turns[3].start_ms  # type: ignore[operator]
    assert persona_turns[2].end_ms < nodes["goodbye"] < agent_turns[3].start_ms  # type: ignore[operator]
    # Judged: the action criteria pass; the one about a tool never called fails, saying so.
    assert run.evaluation is not None
    results = {
        r.assertion.kind + ":" + str(r.assertion.tool_name or r.assertion.node_id): r
        for r in run.evaluation.results
    }
    for key in (
        "tool_name:book_appointment",
        "tool_name:check_availability",
        "node_id:collect_details",
        "node_id:confirm_booking",
    ):
        assert results[key].passed, results[key].reason
    cancel = results["tool_name:cancel_booking"]
    assert not cancel.passed
    assert cancel.reason == (
        "cancel_booking was never called (tools called: book_appointment, check_availability)"
    )
    # The demo's judgement of meaning, manner and the whole call, on this real call.
    by_kind = {r.assertion.kind: r for r in run.evaluation.results if r.assertion.weight}
    for kind in ("semantic", "dynamics", "rubric"):
        assert by_kind[kind].passed, (kind, by_kind[kind].reason)
    assert by_kind["semantic"].evidence and by_kind["semantic"].evidence[0].quote
    assert "tuesday" in (by_kind["semantic"].evidence[0].quote or "").lower()
    assert run.metrics.dynamics is not None and run.metrics.dynamics.agent_interruptions == []
    thursday = next(
        r
        for r in run.evaluation.results
        if r.assertion.semantic and "Thursday" in r.assertion.semantic
    )
    assert not thursday.passed and "thursday" in thursday.reason.lower(), thursday.reason
    [asked] = judge[1].requests  # once: the transcript the judge read carries the tool calls
    prompt = json.dumps(asked["messages"])
    assert "book_appointment" in prompt and "Tuesday" in prompt
    assert run.usage.judge_input_tokens == judge[1].prompt_tokens
    assert run.usage.judge_model == "judge"
    # No price table: the judge's tokens are unpriced, and the run says so.
    assert run.usage.judge_cost_cents is None
    assert any(gap.startswith("judge:") for gap in run.usage.unpriced), run.usage.unpriced
    assert run.usage.judge_model == "judge"
    # No price table: the judge's tokens are unpriced, and the run says so.
    assert run.usage.judge_cost_cents is None
    assert any(gap.startswith("judge:") for gap in run.usage.unpriced), run.usage.unpriced
    assert run.evaluation.pass_fail
    # The replies kept the oracle's timing (test_e2e_webrtc.py's bound: 5 ms).
    rtt = run.metrics.transport_rtt_ms
    assert rtt is not None
    errors = [(t.latency_ms - DELAY_MS - rtt, t.degraded) for t in agent_turns[1:]]  # type: ignore[operator]
    vouched = [e for e, degraded in errors if not degraded]
    assert len(vouched) >= 2 and all(abs(e) <= 5 for e in vouched), errors
    # The run shows its tools URL, never the token; and the inbox is closed.
    [inbox] = opened
    assert run.tools_url == f"{ingest.base_url}/runs/{run.id}/tools/[redacted]"
    stored = (tmp_path / "runs").rglob("run.json")
    text = "".join(path.read_text() for path in stored)
    assert inbox.token not in text and "/tools/[redacted]" in text
    assert ingest.inboxes.get(run.id) is None
    # Its own account joined the run (its spans, refagent/tracing.py): every reply's
    # delay as it kept it (the oracle's 400 ms), beside the latency heard; what is
    # left is the transport (the calibration's round trip, within the 5 ms above).
    assert desk.dropped == 0
    for turn in agent_turns:
        timing = turn.agent_timing
        assert timing is not None and timing.framework == "pipecat", turn
        assert timing.tts_ttfb_ms == 0.0 and timing.first_audio_at_ms is not None
    for turn in agent_turns[1:]:
        timing = turn.agent_timing
        assert timing is not None and timing.accounted_ms is not None
        # The agent's own log holds its gaps within 10 ms of D (test_e2e_webrtc.py);
        # the spans carry the same two instants.
        assert turn.degraded or abs(timing.accounted_ms - DELAY_MS) <= 10, timing
        # heard = D + rtt within 5 ms (above), accounted = D within 10 ms: so 15 ms.
        assert timing.unaccounted_ms is not None
        assert turn.degraded or abs(timing.unaccounted_ms - rtt) <= 15, (timing, rtt)
