"""The agent's replies placed on the recording's clock and matched to the Run's agent turns.

Stage: the orchestrator's analysis, once the turns are measured.  In: the run's
spans, its turns, and the Unix time of the recording's sample 0.  Out: an
``AgentTurnTiming`` per matched agent turn (its index in ``turns``), every tool
call as a ``ToolCall`` (source ``otel``) and the agent's tokens, model by model.

A reply is matched by the instant its first audio left the agent (its TTS's
first byte): the heard agent turn that starts nearest it, from ``EARLY_MS``
before (the two clocks may disagree a little) to ``LATE_MS`` after (transport,
jitter buffers and playout delay the heard onset).  Each turn takes at most one
reply, in time order.  An agent turn with no matching reply has no timing; a
reply that matches no turn (the agent spoke nothing loopcall heard) is left out,
its tool calls kept without a turn.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from harness.ingest.otel import livekit, pipecat
from harness.ingest.otel.replies import Reply, ToolSpan, model_of, tokens
from harness.ingest.otel.spans import Span
from harness.models import AgentTurnTiming, ToolCall, Turn

__all__ = ["EARLY_MS", "LATE_MS", "TraceJoin", "join", "read_replies"]

EARLY_MS = 500.0
LATE_MS = 2000.0


@dataclass(frozen=True)
class TraceJoin:
    """What a run's spans add to it."""

    timings: dict[int, AgentTurnTiming]
    tool_calls: list[ToolCall]
    input_tokens: int
    output_tokens: int
    replies: int
    by_model: dict[str | None, tuple[int, int]]  # model (None: unnamed) -> (input, output)


def read_replies(spans: Sequence[Span]) -> tuple[list[Reply], list[ToolSpan]]:
    """Every reply the spans account for (pipecat's and LiveKit's), in time order, and
    the tool calls outside any reply."""
    found, loose = pipecat.read(spans)
    more, loose_more = livekit.read(spans)
    return sorted(found + more, key=lambda reply: reply.anchor_ns), loose + loose_more


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _match(
    replies: Sequence[Reply], turns: Sequence[Turn], clock: Callable[[int], float]
) -> dict[int, int]:
    """reply index -> turn index."""
    agent = [i for i, turn in enumerate(turns) if turn.role == "agent"]
    taken: set[int] = set()
    matched: dict[int, int] = {}
    for r, reply in enumerate(replies):
        anchor = clock(reply.anchor_ns)
        near = [
            i
            for i in agent
            if i not in taken and anchor - EARLY_MS <= turns[i].start_ms <= anchor + LATE_MS
        ]
        if near:
            best = min(near, key=lambda i: abs(turns[i].start_ms - anchor))
            taken.add(best)
            matched[r] = best
    return matched


def join(spans: Sequence[Span], turns: Sequence[Turn], origin_epoch_s: float) -> TraceJoin:
    """Place the spans' replies and tool calls on the recording's clock (``origin_epoch_s``:
    Unix time of its sample 0) and give each matched agent turn its timing."""

    def at_ms(epoch_ns: int | None) -> float | None:
        return None if epoch_ns is None else round(epoch_ns / 1e6 - origin_epoch_s * 1000.0, 1)

    replies, loose = read_replies(spans)
    matched = _match(replies, turns, lambda ns: epoch_ms(ns, origin_epoch_s))
    timings: dict[int, AgentTurnTiming] = {}
    calls: list[ToolCall] = []
    for r, reply in enumerate(replies):
        index = matched.get(r)
        if index is not None:
            heard = turns[index].latency_ms
            accounted = reply.accounted_ms
            timings[index] = AgentTurnTiming(
                source="otel",
                framework=reply.framework,
                end_of_speech_ms=_round(reply.end_of_speech_ms),
                stt_ms=_round(reply.stt_ms),
                llm_ttfb_ms=_round(reply.llm_ttfb_ms),
                tts_ttfb_ms=_round(reply.tts_ttfb_ms),
                accounted_ms=_round(accounted),
                unaccounted_ms=(
                    _round(heard - accounted)
                    if heard is not None and accounted is not None
                    else None
                ),
                input_tokens=reply.input_tokens,
                output_tokens=reply.output_tokens,
                speech_end_at_ms=at_ms(reply.speech_end_ns),
                turn_detected_at_ms=at_ms(reply.turn_detected_ns),
                stt_final_at_ms=at_ms(reply.stt_final_ns),
                llm_first_token_at_ms=at_ms(reply.llm_first_token_ns),
                first_audio_at_ms=at_ms(reply.first_audio_ns),
            )
        calls.extend(_tool_call(tool, index, at_ms) for tool in reply.tools)
    calls.extend(_tool_call(tool, None, at_ms) for tool in loose)
    calls.sort(key=lambda call: call.at_ms if call.at_ms is not None else float("inf"))
    by_model = _usage(spans)
    input_tokens = sum(pair[0] for pair in by_model.values())
    output_tokens = sum(pair[1] for pair in by_model.values())
    return TraceJoin(timings, calls, input_tokens, output_tokens, len(replies), by_model)


def epoch_ms(epoch_ns: int, origin_epoch_s: float) -> float:
    """An agent instant (Unix ns) on the recording's clock (ms from sample 0)."""
    return epoch_ns / 1e6 - origin_epoch_s * 1000.0


def _tool_call(
    tool: ToolSpan, turn_index: int | None, clock: Callable[[int | None], float | None]
) -> ToolCall:
    return ToolCall(
        name=tool.name,
        args=tool.args,
        response=tool.response,
        source="otel",
        at_ms=clock(tool.start_ns),
        duration_ms=(
            round((tool.end_ns - tool.start_ns) / 1e6, 1)
            if tool.start_ns is not None and tool.end_ns is not None
            else None
        ),
        turn_index=turn_index,
        error=tool.error,
    )


def _usage(spans: Sequence[Span]) -> dict[str | None, tuple[int, int]]:
    """Tokens over every LLM span, by the model it names (``gen_ai.response.model``,
    else ``gen_ai.request.model``): pipecat's ``llm``, LiveKit's ``llm_request`` (its
    ``llm_node`` repeats them)."""
    counted = [s for s in spans if s.name in ("llm", "llm_request")]
    if not any(s.name == "llm_request" for s in spans):
        counted += [s for s in spans if s.name == "llm_node"]
    by_model: dict[str | None, tuple[int, int]] = {}
    for span in counted:
        got_in, got_out = tokens([span])
        if got_in is None and got_out is None:
            continue
        model = model_of(span)
        before = by_model.get(model, (0, 0))
        by_model[model] = (before[0] + (got_in or 0), before[1] + (got_out or 0))
    return by_model
