"""Show (issue 14): a stock pipecat bot, not ours, with tracing on and a function call.

The bot (``traced_bot.py``) runs pipecat's own OpenAI STT, LLM and TTS services
against a local OpenAI-compatible endpoint, with ``enable_tracing=True`` and the
run id as ``conversation_id``; pipecat's ``setup_tracing`` exports its spans over
OTLP/HTTP to a loopcall ``/v1/traces`` route.  The run then holds the bot's tool
call (from its LLM spans, source ``otel``), each reply's stage breakdown beside
the latency heard, and the bot's tokens.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from fastapi import FastAPI, Request
from traced_bot import (
    TOOL,
    TOOL_ARGS,
    USAGE,
    VoiceCloud,
    export_spans_to,
    serve_app,
    stop_exporting,
    traced_bot_app,
)

from harness.ingest import serve_ingest
from harness.ingest.otel import ALL_RUNS, UNTRACED, Accepted, Span, TraceDesk, traces_router
from harness.models import Case, Criterion, MockTool, Persona
from harness.orchestrator import EchoCalibrator, RunOptions, run_case
from harness.pricing import PriceTable
from harness.store import RunStore

pytestmark = pytest.mark.e2e

PRICES = PriceTable.model_validate(
    {"models": {"gpt-4o-mini*": {"input_per_million_usd": 0.15, "output_per_million_usd": 0.6}}}
)


async def _anyone(_request: Request) -> str:
    return ALL_RUNS  # loopback: what `loopcall run` serves


@pytest.fixture
async def voice_cloud() -> AsyncIterator[VoiceCloud]:
    cloud = VoiceCloud()
    runner = web.AppRunner(cloud.app(), shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    cloud.base_url = f"http://127.0.0.1:{port}/v1"
    yield cloud
    await runner.cleanup()


async def test_a_stock_pipecat_bot_shows_its_tool_call_and_stages(
    voice_cloud: VoiceCloud, tmp_path: Path
) -> None:
    desk = TraceDesk()
    ingest = FastAPI(telemetry=UNTRACED)
    received: list[Span] = []

    def deliver(spans: list[Span], only_run: str | None) -> Accepted:
        received.extend(spans)
        return desk.accept(spans, only_run)

    ingest.include_router(traces_router(deliver, _anyone))
    case = Case(
        name="Order status, traced",
        persona=Persona(name="Caller", voice="flite:slt"),
        script=["I would like to check my order."],  # type: ignore[list-item]
        goodbye="Thanks, goodbye.",
        # The bot's function call posts to the tools URL loopcall hands it: a mock tool.
        tools=[MockTool(name=TOOL, response={"status": "shipped"})],
        success_criteria=[
            Criterion(description="answers", pattern="shipped"),
            Criterion(tool_name=TOOL, args_match=dict(TOOL_ARGS)),
        ],
        max_duration_s=60,
    )
    async with (
        serve_ingest() as tools,
        serve_app(ingest) as ingest_at,
        serve_app(traced_bot_app(voice_cloud.base_url)) as bot_at,
    ):
        export_spans_to(f"http://{ingest_at}/v1/traces")
        try:
            async with EchoCalibrator() as calibrator:
                run = await run_case(
                    case,
                    f"webrtc://{bot_at}/api/offer",
                    RunStore(tmp_path),
                    calibrator=calibrator,
                    options=RunOptions(
                        traces=desk,
                        expect_traces=True,
                        inboxes=tools.inboxes,
                        agent_base_url=tools.base_url,
                        prices=PRICES,
                    ),
                )
        finally:
            await asyncio.to_thread(stop_exporting)
    for span in received:  # what the bot sent, for the reader of a failure
        print(
            "span:",
            span.name,
            span.span_id,
            span.parent_span_id,
            span.attributes.get("turn.number"),
        )
    assert run.status == "completed", run.error
    assert run.evaluation is not None and run.evaluation.pass_fail, run.evaluation
    assert desk.dropped == 0
    # Its tool call, made on loopcall's tools URL and seen again in its LLM spans:
    # recorded once (the spans' copy is the same call), on the turn that answered.
    calls = run.tool_calls
    assert [(c.name, c.args, c.response, c.source) for c in calls] == [
        (TOOL, TOOL_ARGS, {"status": "shipped"}, "tools_url")
    ], run.tool_calls
    answer = run.turns[calls[0].turn_index or 0]
    assert answer.role == "agent" and "shipped" in answer.text.lower(), answer
    assert calls[0].at_ms is not None and calls[0].at_ms < answer.start_ms
    # Its stage breakdown beside the latency heard: the greeting's and the answer's.
    agent = [t for t in run.turns if t.role == "agent"]
    assert agent[0].agent_timing is not None, agent[0]
    timing = answer.agent_timing
    assert timing is not None and timing.framework == "pipecat"
    for figure in ("stt_ms", "llm_ttfb_ms", "tts_ttfb_ms", "end_of_speech_ms", "accounted_ms"):
        assert getattr(timing, figure) is not None, (figure, timing)
    assert answer.latency_ms is not None and timing.accounted_ms is not None
    assert timing.unaccounted_ms == pytest.approx(answer.latency_ms - timing.accounted_ms, abs=0.11)
    # The agent's milestones on the recording's clock: after the persona stopped, in order.
    persona_end = run.turns[run.turns.index(answer) - 1].end_ms
    milestones = [
        timing.stt_final_at_ms,
        timing.turn_detected_at_ms,
        timing.llm_first_token_at_ms,
        timing.first_audio_at_ms,
    ]
    assert all(m is not None for m in milestones), timing
    assert persona_end < milestones[0] <= milestones[1] <= milestones[2] <= milestones[3]  # type: ignore[operator]
    # Its first audio is pipecat's TTS figure, stamped by the bot's own event loop when
    # the first chunk is handled: alone it came before the heard onset, but beside a
    # second test worker it was once stamped 68 ms after it.  So: within the answer as
    # heard (a wrong clock join would be seconds off), not necessarily before it.
    assert milestones[3] < answer.end_ms  # type: ignore[operator]
    # Its tokens: the usage of its LLM calls (the endpoint reports the same for each): the
    # greeting's, the tool call's and the answer's at least; a call the hang-up cut short
    # may have none.
    calls_counted, rest = divmod(run.usage.agent_input_tokens, USAGE["prompt_tokens"])
    assert rest == 0 and 3 <= calls_counted <= len(voice_cloud.chats), run.usage
    assert run.usage.agent_output_tokens == USAGE["completion_tokens"] * calls_counted
    # Priced by the model its spans named (pipecat's gen_ai.request.model).
    assert run.usage.agent_model == "gpt-4o-mini"
    expected = (run.usage.agent_input_tokens * 0.15 + run.usage.agent_output_tokens * 0.6) / 1e4
    # The bill keeps cents to 4 decimals (harness/pricing.py).
    assert run.usage.agent_cost_cents == pytest.approx(expected, abs=1e-4), run.usage
    for turn in agent:
        shown = turn.agent_timing.model_dump(exclude_none=True) if turn.agent_timing else None
        print(f"traced stock bot: {turn.text!r} heard {turn.latency_ms} ms, own account {shown}")
