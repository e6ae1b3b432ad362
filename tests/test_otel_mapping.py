"""Spans -> the agent's account of each turn, its tool calls and tokens, on the recording's clock.

Pipecat: on real spans, captured in-process from the stock bot of ``traced_bot.py``
(pipecat's OpenAI STT, LLM with a function, and TTS services against a local
OpenAI-compatible endpoint; ``pipecat_capture.py`` plays the caller's line in and
the bot's audio out in real time).  LiveKit: spans written from LiveKit's
documented span names and attributes (no LiveKit server runs here).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from pipecat_capture import capture
from traced_bot import TOOL, TOOL_ARGS, VoiceCloud

from harness.ingest.otel import Span
from harness.ingest.otel.join import join, read_replies
from harness.ingest.otel.pipecat import tool_calls_in
from harness.models import Turn

TRACE = "ab" * 16


def _lk(
    name: str, span_id: str, parent: str | None, start: float, end: float, **attrs: Any
) -> Span:
    return Span(name, TRACE, span_id, parent, round(start * 1e9), round(end * 1e9), attrs)


def livekit_spans(run_id: str = "run-1") -> list[Span]:
    """One LiveKit turn with a tool call, as LiveKit's session-traces page names things
    (times in s since the epoch; the recording started at t=1000)."""
    run = {"loopcall.run_id": run_id}  # set_tracer_provider(..., metadata=...)
    return [
        _lk("agent_session", "10" * 8, None, 1000.0, 1020.0, **run),
        _lk("user_turn", "11" * 8, "10" * 8, 1009.0, 1011.2, **run),
        _lk(
            "eou_detection",
            "12" * 8,
            "11" * 8,
            1010.7,
            1011.2,
            **{"lk.end_of_turn_delay": 0.45, "lk.transcription_delay": 0.30},
            **run,
        ),
        _lk("agent_turn", "20" * 8, "10" * 8, 1011.2, 1014.0, **{"lk.e2e_latency": 1.1}, **run),
        _lk("llm_node", "21" * 8, "20" * 8, 1011.25, 1011.7, **{"lk.response.ttft": 0.35}, **run),
        _lk(
            "llm_request",
            "22" * 8,
            "21" * 8,
            1011.25,
            1011.7,
            **{"gen_ai.usage.input_tokens": 100, "gen_ai.usage.output_tokens": 20},
            **run,
        ),
        _lk(
            "function_tool",
            "23" * 8,
            "20" * 8,
            1011.7,
            1011.8,
            **{
                "lk.function_tool.name": "book_appointment",
                "lk.pii.function_tool.arguments": '{"day": "Tuesday"}',
                "lk.pii.function_tool.output": '{"status": "booked"}',
                "lk.function_tool.is_error": False,
            },
            **run,
        ),
        _lk("llm_node", "24" * 8, "20" * 8, 1011.8, 1012.3, **{"lk.response.ttft": 0.2}, **run),
        _lk(
            "llm_request",
            "25" * 8,
            "24" * 8,
            1011.8,
            1012.3,
            **{"gen_ai.usage.input_tokens": 130, "gen_ai.usage.output_tokens": 12},
            **run,
        ),
        _lk("tts_node", "26" * 8, "20" * 8, 1012.0, 1013.5, **{"lk.response.ttfb": 0.15}, **run),
    ]


def heard_turns() -> list[Turn]:
    return [
        Turn(role="agent", text="Hello.", start_ms=500.0, end_ms=1500.0),
        Turn(role="persona", text="Tuesday please.", start_ms=9000.0, end_ms=10750.0),
        Turn(role="agent", text="Booked.", start_ms=12300.0, end_ms=13600.0, latency_ms=1550.0),
    ]


def test_livekit_turn_as_documented() -> None:
    joined = join(livekit_spans(), heard_turns(), 1000.0)
    assert list(joined.timings) == [2]
    timing = joined.timings[2]
    assert timing.model_dump(exclude_none=True) == {
        "source": "otel",
        "framework": "livekit",
        "end_of_speech_ms": 450.0,
        "stt_ms": 300.0,
        "llm_ttfb_ms": 200.0,  # the call whose text was spoken (after the tool)
        "tts_ttfb_ms": 150.0,
        "accounted_ms": 1100.0,
        "unaccounted_ms": 450.0,  # heard 1550 - the agent's own 1100
        "input_tokens": 230,
        "output_tokens": 32,
        "speech_end_at_ms": 10750.0,
        "turn_detected_at_ms": 11200.0,
        "stt_final_at_ms": 11050.0,
        "llm_first_token_at_ms": 12000.0,
        "first_audio_at_ms": 12150.0,
    }
    [call] = joined.tool_calls
    assert (call.name, call.args, call.response, call.at_ms, call.duration_ms, call.turn_index) == (
        "book_appointment",
        {"day": "Tuesday"},
        {"status": "booked"},
        11700.0,
        100.0,
        2,
    )
    assert (joined.input_tokens, joined.output_tokens) == (230, 32)


def test_livekit_stages_on_the_agent_turn_itself() -> None:
    spans = [
        s
        if s.name != "agent_turn"
        else Span(
            s.name,
            s.trace_id,
            s.span_id,
            s.parent_span_id,
            s.start_ns,
            s.end_ns,
            {**s.attributes, "lk.end_of_turn_delay": 0.5, "lk.transcription_delay": 0.25},
        )
        for s in livekit_spans()
        if s.name != "eou_detection"
    ]
    timing = join(spans, heard_turns(), 1000.0).timings[2]
    assert (timing.end_of_speech_ms, timing.stt_ms, timing.speech_end_at_ms) == (
        500.0,
        250.0,
        10700.0,
    )


def test_a_failed_livekit_tool_keeps_its_error() -> None:
    spans = [
        _lk(
            "function_tool",
            "23" * 8,
            None,
            1011.7,
            1011.8,
            **{
                "lk.function_tool.name": "lookup",
                "lk.function_tool.arguments": "{}",  # before 1.7: no .pii. segment
                "lk.function_tool.output": "order not found",
                "lk.function_tool.is_error": True,
            },
        )
    ]
    [call] = join(spans, [], 1000.0).tool_calls
    assert (call.name, call.args, call.response, call.error, call.turn_index) == (
        "lookup",
        {},
        None,
        "order not found",
        None,
    )


def test_each_heard_turn_takes_one_reply_nearest_its_first_audio() -> None:
    replies, _ = read_replies(livekit_spans())
    assert len(replies) == 1
    # Two agent turns near the reply: the one starting nearest its first audio wins.
    turns = [
        *heard_turns()[:2],
        Turn(role="agent", text="Um.", start_ms=11000.0, end_ms=11100.0),
        Turn(role="agent", text="Booked.", start_ms=12300.0, end_ms=13600.0, latency_ms=1550.0),
    ]
    assert list(join(livekit_spans(), turns, 1000.0).timings) == [3]


def test_tool_calls_in_openai_and_anthropic_contexts() -> None:
    openai = [
        {"role": "user", "content": "where is A1"},
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": '{"ok": true}'},
    ]
    anthropic = [
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "t1", "name": "g", "input": {}}],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "done"}],
        },
    ]
    assert tool_calls_in(openai) == ({"c1": ("f", {"a": 1})}, {"c1": {"ok": True}})
    assert tool_calls_in(anthropic) == ({"t1": ("g", {})}, {"t1": "done"})
    assert tool_calls_in("not a list") == ({}, {})


@pytest.fixture
async def cloud_url() -> AsyncIterator[str]:
    cloud = VoiceCloud()
    runner = web.AppRunner(cloud.app(), shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/v1"  # type: ignore[union-attr]
    await runner.cleanup()


async def test_real_pipecat_spans_give_each_reply_its_stages_and_tool_call(cloud_url: str) -> None:
    captured = await capture(cloud_url, "I would like to check my order.")
    spans, turns = captured.spans, captured.turns
    assert {s.name for s in spans} == {"conversation", "turn", "stt", "llm", "tts"}
    joined = join(spans, turns, captured.origin_epoch_s)
    assert sorted(joined.timings) == [0, 2]  # both replies heard, each with its account
    greeting, answer = joined.timings[0], joined.timings[2]
    # The greeting answers nobody: no STT, no end of speech, nothing to account for.
    assert greeting.stt_ms is None and greeting.accounted_ms is None
    assert greeting.llm_ttfb_ms is not None and greeting.tts_ttfb_ms is not None
    # The answer: each stage the bot measured, and the part nobody accounts for.
    heard = turns[2].latency_ms
    assert heard is not None and answer.accounted_ms is not None
    assert answer.unaccounted_ms == pytest.approx(heard - answer.accounted_ms, abs=0.11)
    assert 0 < answer.stt_ms < answer.end_of_speech_ms < answer.accounted_ms  # type: ignore[operator]
    assert answer.llm_ttfb_ms is not None and answer.tts_ttfb_ms is not None
    # On one clock: its STT final, its decision, the LLM's first token, the TTS's first
    # audio, in that order, after the caller stopped and before the loudspeaker played.
    instants = [
        answer.stt_final_at_ms,
        answer.turn_detected_at_ms,
        answer.llm_first_token_at_ms,
        answer.first_audio_at_ms,
    ]
    assert all(t is not None for t in instants), answer
    assert turns[1].end_ms < instants[0] <= instants[1] <= instants[2] <= instants[3]  # type: ignore[operator]
    assert instants[3] <= turns[2].start_ms  # type: ignore[operator]
    # The function call, from the LLM span that carried its result, on the answer's turn.
    [call] = joined.tool_calls
    assert (call.name, call.args, call.response, call.source, call.turn_index) == (
        TOOL,
        TOOL_ARGS,
        {"status": "shipped"},
        "otel",
        2,
    )
    assert call.at_ms is not None and instants[1] <= call.at_ms <= instants[2]  # type: ignore[operator]
    # Tokens: every LLM call's usage (the endpoint reports 42 in, 9 out for each).
    llm_calls = len([s for s in spans if s.name == "llm"])
    assert llm_calls == 3  # greeting, the tool call, the answer
    assert (joined.input_tokens, joined.output_tokens) == (42 * llm_calls, 9 * llm_calls)
    # Clocks too far apart match nothing rather than the wrong turn.
    off = join(spans, turns, captured.origin_epoch_s + 30.0)
    assert off.timings == {} and [c.turn_index for c in off.tool_calls] == [None]


def test_the_run_takes_timings_tool_calls_and_tokens() -> None:
    from harness.models import Case, Persona, Run, ToolCall
    from harness.orchestrator.traces import apply_spans

    run = Run(
        channel="webrtc",
        target="webrtc://x",
        case=Case(name="c", persona=Persona(name="p"), script=["hi"]),  # type: ignore[list-item]
        turns=heard_turns(),
        tool_calls=[ToolCall(name="check_availability", at_ms=11650.0)],  # from the tools URL
    )
    run.usage.agent_input_tokens = 1
    apply_spans(run, livekit_spans(), 1000.0)
    assert run.turns[2].agent_timing is not None and run.turns[0].agent_timing is None
    assert [(c.name, c.source) for c in run.tool_calls] == [
        ("check_availability", "tools_url"),
        ("book_appointment", "otel"),
    ]
    assert (run.usage.agent_input_tokens, run.usage.agent_output_tokens) == (231, 32)
    apply_spans(run, [], 1000.0)  # no spans: nothing changes
    assert len(run.tool_calls) == 2
    # A call the tools URL recorded (inside the span's window) is not recorded twice.
    again = run.model_copy(deep=True)
    again.tool_calls = [
        ToolCall(name="book_appointment", args={"day": "Tuesday"}, at_ms=11760.0),
    ]
    apply_spans(again, livekit_spans(), 1000.0)
    assert [(c.name, c.source) for c in again.tool_calls] == [("book_appointment", "tools_url")]
