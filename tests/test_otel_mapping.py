"""Spans -> the agent's account of each turn, its tool calls and tokens, on the recording's clock.

Pipecat: on the spans of a real run (``fixtures/pipecat_spans.json``, recorded by
``test_traced_stock_bot.py`` with ``LOOPCALL_OTEL_FIXTURE``: a stock pipecat bot
with OpenAI STT, LLM with a function, and TTS services, and the turns loopcall
measured from that call's audio).  LiveKit: spans written from LiveKit's
documented span names and attributes (no LiveKit server runs here).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.ingest.otel import Span
from harness.ingest.otel.join import join, read_replies
from harness.ingest.otel.pipecat import tool_calls_in
from harness.models import Turn

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "pipecat_spans.json"
TRACE = "ab" * 16


def _recorded() -> tuple[list[Span], list[Turn], float]:
    document = json.loads(FIXTURE.read_text())
    spans = [Span(**span) for span in document["spans"]]
    turns = [Turn(**turn) for turn in document["turns"]]
    return spans, turns, document["recording_epoch_s"]


def test_a_real_pipecat_run_gives_each_reply_its_stages_on_the_recording_clock() -> None:
    spans, turns, origin = _recorded()
    joined = join(spans, turns, origin)
    agent = [i for i, turn in enumerate(turns) if turn.role == "agent"]
    assert sorted(joined.timings) == agent  # every heard reply has the bot's account
    greeting, answer = (joined.timings[i] for i in agent[:2])
    # The greeting answers nobody: no STT, no end of speech, nothing to account for.
    assert greeting.stt_ms is None and greeting.accounted_ms is None
    assert greeting.tts_ttfb_ms is not None and greeting.llm_ttfb_ms is not None
    # The answer: each stage the bot measured, and the part nobody accounts for.
    heard = turns[agent[1]].latency_ms
    assert heard is not None and answer.accounted_ms is not None
    assert answer.unaccounted_ms == pytest.approx(heard - answer.accounted_ms, abs=0.11)
    assert 0 < answer.stt_ms < answer.end_of_speech_ms < answer.accounted_ms  # type: ignore[operator]
    persona_end = turns[agent[1] - 1].end_ms
    assert answer.speech_end_at_ms is not None and answer.first_audio_at_ms is not None
    # Its VAD's end of speech lies after the persona stopped (the audio had to reach it)
    # and its first audio before the ear heard it (it had to come back).
    assert (
        persona_end < answer.speech_end_at_ms < answer.first_audio_at_ms < turns[agent[1]].start_ms
    )
    # The function call, from the LLM span that carried its result, on the answer's turn.
    [call] = joined.tool_calls
    assert (call.name, call.args, call.response, call.source) == (
        "check_order",
        {"order_id": "A1"},
        {"status": "shipped"},
        "otel",
    )
    assert call.turn_index == agent[1] and call.at_ms is not None
    assert persona_end < call.at_ms < turns[agent[1]].start_ms
    llm_calls = [s for s in spans if s.name == "llm"]
    assert joined.input_tokens == 42 * len(llm_calls) and joined.output_tokens == 9 * len(llm_calls)


def test_a_clock_too_far_off_matches_nothing_rather_than_the_wrong_turn() -> None:
    spans, turns, origin = _recorded()
    joined = join(spans, turns, origin + 30.0)
    assert joined.timings == {} and joined.replies >= 2
    assert [call.turn_index for call in joined.tool_calls] == [None]


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
