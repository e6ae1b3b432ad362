"""Pipecat's spans -> replies: its ``turn`` spans and their ``stt``, ``llm`` and ``tts`` children.

Stage: one of the two framework readers ``join`` runs.  What pipecat 1.14 records
(``pipecat/utils/tracing/``): a ``conversation`` root (``conversation.id``), a
``turn`` span per turn (``turn.number``, ``turn.user_bot_latency_seconds``: from
the end of the user's speech as its VAD placed it to ``BotStartedSpeakingFrame``),
and under each turn the services' spans: ``stt`` (one per finalized segment,
``metrics.ttfb``: from that speech end to the final transcript; ``transcript``),
``llm`` (one per LLM call, ``metrics.ttfb`` from the request to the first token,
``gen_ai.usage.input_tokens``/``output_tokens``, ``input``: the chat context as
the provider gets it, which carries earlier tool calls and their results) and
``tts`` (one per audio context, ``metrics.ttfb`` from the text to the first audio).

A reply is a ``turn`` span that has TTS (the greeting sits in turn 1, before any
user speech).  Pipecat records no span per tool call: a call shows in the
``input`` of the next LLM call (the assistant's ``tool_calls`` and the ``tool``
message with its result; OpenAI's shape, and Anthropic's ``tool_use`` and
``tool_result`` blocks).  It is placed from the end of the LLM call before it
(that call asked for it) to the start of the one that carries its result.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from harness.ingest.otel.replies import (
    Reply,
    ToolSpan,
    after,
    gap_ms,
    number,
    parse_json,
    seconds_ms,
    tokens,
)
from harness.ingest.otel.spans import Span

__all__ = ["read", "tool_calls_in"]

_SERVICES = ("stt", "llm", "tts")


def _ttfb_ns(span: Span) -> int | None:
    ttfb = number(span.attributes, "metrics.ttfb")
    return None if ttfb is None else span.start_ns + round(ttfb * 1e9)


def tool_calls_in(messages: Any) -> tuple[dict[str, tuple[str, Any]], dict[str, Any]]:
    """(call id -> (name, arguments), call id -> result) in a chat context's messages."""
    calls: dict[str, tuple[str, Any]] = {}
    results: dict[str, Any] = {}
    if not isinstance(messages, list):
        return calls, results
    for message in messages:
        if not isinstance(message, dict):
            continue
        for call in message.get("tool_calls") or []:  # OpenAI
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict) and call.get("id") and function.get("name"):
                calls[call["id"]] = (function["name"], parse_json(function.get("arguments")))
        if message.get("role") == "tool" and message.get("tool_call_id"):
            results[message["tool_call_id"]] = parse_json(message.get("content"))
        content = message.get("content")
        for block in content if isinstance(content, list) else []:  # Anthropic
            if not isinstance(block, dict):
                continue
            if block.get("type") == "tool_use" and block.get("id") and block.get("name"):
                calls[block["id"]] = (block["name"], block.get("input"))
            elif block.get("type") == "tool_result" and block.get("tool_use_id"):
                results[block["tool_use_id"]] = parse_json(block.get("content"))
    return calls, results


def _tools(llms: Sequence[Span], group_of: dict[str, str]) -> dict[str, list[ToolSpan]]:
    """Tool calls by the turn span id they belong to, each once (the first LLM call
    whose input carries it)."""
    found: dict[str, list[ToolSpan]] = defaultdict(list)
    seen: set[str] = set()
    previous_end: dict[str, int] = {}  # trace -> end of the last LLM call before
    for llm in sorted(llms, key=lambda span: span.start_ns):
        calls, results = tool_calls_in(parse_json(llm.attributes.get("input")))
        for call_id, (name, args) in calls.items():
            if call_id in seen:
                continue
            seen.add(call_id)
            asked = previous_end.get(llm.trace_id)
            found[group_of.get(llm.span_id, "")].append(
                ToolSpan(
                    name=name,
                    args=args,
                    response=results.get(call_id),
                    start_ns=asked if asked is not None else llm.start_ns,
                    end_ns=llm.start_ns,
                    call_id=call_id,
                )
            )
        previous_end[llm.trace_id] = llm.end_ns
    return found


def read(spans: Sequence[Span]) -> tuple[list[Reply], list[ToolSpan]]:
    """Pipecat's replies, one per ``turn`` span that has TTS; and the tool calls that
    belong to none of them."""
    turns = {span.span_id: span for span in spans if span.name == "turn"}
    children: dict[str, dict[str, list[Span]]] = defaultdict(lambda: defaultdict(list))
    group_of: dict[str, str] = {}
    for span in spans:
        if span.name in _SERVICES and span.parent_span_id in turns:
            children[span.parent_span_id][span.name].append(span)
            group_of[span.span_id] = span.parent_span_id
    tools = _tools([s for s in spans if s.name == "llm"], group_of)
    found: list[Reply] = []
    for turn_id, services in children.items():
        reply = _reply(turns[turn_id], services, tools.get(turn_id, []))
        if reply is not None:
            found.append(reply)
            tools.pop(turn_id, None)
    return found, [tool for rest in tools.values() for tool in rest]


def _reply(turn: Span, services: dict[str, list[Span]], tools: list[ToolSpan]) -> Reply | None:
    tts = sorted(services["tts"], key=lambda span: span.start_ns)
    if not tts:
        return None
    llms = sorted(services["llm"], key=lambda span: span.start_ns)
    first_tts = tts[0]
    first_audio = _ttfb_ns(first_tts)
    spoken = [llm for llm in llms if llm.start_ns <= first_tts.start_ns]
    llm = spoken[-1] if spoken else None
    # The STT's final before the turn's first LLM request (its span ends at the transcript).
    stts = [s for s in services["stt"] if not llms or s.end_ns <= llms[0].start_ns]
    stt = max(stts, key=lambda span: span.end_ns) if stts else None
    stt_ttfb = seconds_ms(stt.attributes, "metrics.ttfb") if stt else None
    accounted = seconds_ms(turn.attributes, "turn.user_bot_latency_seconds")
    # Where its VAD placed the end of speech: the STT's final minus its TTFB (pipecat
    # starts that clock at VAD stop - stop_secs).  An STT that saw no VAD frames reports
    # no TTFB: then the turn's own latency counts back from the first audio.
    speech_end = after(stt.end_ns, -stt_ttfb) if stt and stt_ttfb is not None else None
    if speech_end is None and accounted is not None:
        speech_end = after(first_audio, -accounted)
    if accounted is None:
        accounted = gap_ms(first_audio, speech_end)
    stt_final = stt.end_ns if stt else None
    detected = llms[0].start_ns if llms else None
    input_tokens, output_tokens = tokens(llms)
    return Reply(
        framework="pipecat",
        anchor_ns=first_audio if first_audio is not None else first_tts.start_ns,
        first_audio_ns=first_audio,
        speech_end_ns=speech_end,
        turn_detected_ns=detected,
        stt_final_ns=stt_final,
        llm_first_token_ns=_ttfb_ns(llm) if llm else None,
        end_of_speech_ms=gap_ms(detected, speech_end),
        stt_ms=stt_ttfb if stt_ttfb is not None else gap_ms(stt_final, speech_end),
        llm_ttfb_ms=seconds_ms(llm.attributes, "metrics.ttfb") if llm else None,
        tts_ttfb_ms=seconds_ms(first_tts.attributes, "metrics.ttfb"),
        accounted_ms=accounted,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        tools=tuple(tools),
    )
