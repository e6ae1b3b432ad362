"""LiveKit Agents' spans -> replies: ``agent_turn`` with its ``llm_node``, ``tts_node`` and tools.

Stage: one of the two framework readers ``join`` runs.  Written from LiveKit's
documentation of its session traces and from its ``telemetry/trace_types.py``
(LiveKit Agents 1.x), not from a LiveKit run: no LiveKit server runs here.
What it reads:

- ``agent_turn`` (one reply): ``lk.e2e_latency`` (s), the agent's own figure from
  the end of the user's speech to its first audio out; ``lk.interrupted``.
- ``lk.end_of_turn_delay`` (s, from the end of speech to the turn decision) and
  ``lk.transcription_delay`` (s, from the end of speech to the final transcript):
  on the ``agent_turn`` in recent releases, else on the reply's ``user_turn`` (1.x
  sets them when the turn commits) or its ``eou_detection``.  The user turn of a
  reply is the last one that ended before the reply started.
- ``llm_node``: ``lk.response.ttft`` (s); ``llm_request``:
  ``gen_ai.usage.input_tokens``/``output_tokens``.
- ``tts_node``: ``lk.response.ttfb`` (s) from its start.
- ``function_tool``: ``lk.function_tool.name`` (or ``gen_ai.tool.name``), the
  arguments ``lk.pii.function_tool.arguments`` (before 1.7: ``lk.function_tool.arguments``;
  or ``gen_ai.tool.call.arguments``), the output likewise, ``lk.function_tool.is_error``.

The run id reaches LiveKit's spans through ``set_tracer_provider(provider,
metadata={"loopcall.run_id": ...})``, which sets it on every span.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from harness.ingest.otel.replies import Reply, ToolSpan, parse_json, seconds_ms, tokens
from harness.ingest.otel.spans import Span

__all__ = ["read"]

_ARGS = (
    "lk.pii.function_tool.arguments",
    "lk.function_tool.arguments",
    "gen_ai.tool.call.arguments",
)
_OUTPUT = ("lk.pii.function_tool.output", "lk.function_tool.output", "gen_ai.tool.call.result")


def _first(span: Span, keys: Sequence[str]) -> object:
    for key in keys:
        if key in span.attributes:
            return span.attributes[key]
    return None


def _tool(span: Span) -> ToolSpan:
    name = span.attributes.get("lk.function_tool.name") or span.attributes.get("gen_ai.tool.name")
    failed = span.attributes.get("lk.function_tool.is_error") is True
    output = parse_json(_first(span, _OUTPUT))
    return ToolSpan(
        name=str(name or "function_tool"),
        args=parse_json(_first(span, _ARGS)),
        response=None if failed else output,
        start_ns=span.start_ns,
        end_ns=span.end_ns,
        error=str(output) if failed else None,
        call_id=str(span.attributes.get("lk.function_tool.id") or "") or None,
    )


def _descendants(root: Span, kids: dict[str, list[Span]]) -> list[Span]:
    found: list[Span] = []
    todo = [root.span_id]
    while todo:
        for child in kids.get(todo.pop(), []):
            found.append(child)
            todo.append(child.span_id)
    return found


def read(spans: Sequence[Span]) -> tuple[list[Reply], list[ToolSpan]]:
    """LiveKit's replies, one per ``agent_turn``; and the tool calls outside any."""
    kids: dict[str, list[Span]] = defaultdict(list)
    for span in spans:
        if span.parent_span_id is not None:
            kids[span.parent_span_id].append(span)
    user_turns = sorted((s for s in spans if s.name == "user_turn"), key=lambda s: s.end_ns)
    found: list[Reply] = []
    placed: set[str] = set()
    for turn in sorted((s for s in spans if s.name == "agent_turn"), key=lambda s: s.start_ns):
        below = _descendants(turn, kids)
        placed.update(span.span_id for span in below)
        before = [u for u in user_turns if u.end_ns <= turn.start_ns]
        found.append(_reply(turn, below, before[-1] if before else None, kids))
    orphans = [_tool(s) for s in spans if s.name == "function_tool" and s.span_id not in placed]
    return found, orphans


def _reply(turn: Span, below: list[Span], user: Span | None, kids: dict[str, list[Span]]) -> Reply:
    def first(name: str) -> Span | None:
        named = sorted((s for s in below if s.name == name), key=lambda s: s.start_ns)
        return named[0] if named else None

    tts = first("tts_node")
    llms = sorted((s for s in below if s.name == "llm_node"), key=lambda s: s.start_ns)
    spoken = [s for s in llms if tts is None or s.start_ns <= tts.start_ns]
    llm = spoken[-1] if spoken else (llms[0] if llms else None)  # the call whose text was spoken
    tts_ttfb = seconds_ms(tts.attributes, "lk.response.ttfb") if tts else None
    first_audio = tts.start_ns + round(tts_ttfb * 1e6) if tts and tts_ttfb is not None else None
    llm_ttft = seconds_ms(llm.attributes, "lk.response.ttft") if llm else None
    # The user-side stages: on the agent_turn itself (newer releases put them beside
    # lk.e2e_latency), else on its user_turn (where 1.x sets them when the turn commits)
    # or that turn's eou_detection.
    eou_ms = stt_ms = None
    holders = [turn, *([user, *_descendants(user, kids)] if user is not None else [])]
    for span in holders:
        if eou_ms is None:
            eou_ms = seconds_ms(span.attributes, "lk.end_of_turn_delay")
        if stt_ms is None:
            stt_ms = seconds_ms(span.attributes, "lk.transcription_delay")
    detected = user.end_ns if user is not None else turn.start_ns
    speech_end = detected - round(eou_ms * 1e6) if eou_ms is not None else None
    requests = [s for s in below if s.name == "llm_request"] or llms
    input_tokens, output_tokens = tokens(requests)
    return Reply(
        framework="livekit",
        anchor_ns=first_audio if first_audio is not None else turn.start_ns,
        first_audio_ns=first_audio,
        speech_end_ns=speech_end,
        turn_detected_ns=detected,
        stt_final_ns=(
            speech_end + round(stt_ms * 1e6)
            if speech_end is not None and stt_ms is not None
            else None
        ),
        llm_first_token_ns=llm.start_ns + round(llm_ttft * 1e6)
        if llm and llm_ttft is not None
        else None,
        end_of_speech_ms=eou_ms,
        stt_ms=stt_ms,
        llm_ttfb_ms=llm_ttft,
        tts_ttfb_ms=tts_ttfb,
        accounted_ms=seconds_ms(turn.attributes, "lk.e2e_latency"),
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        tools=tuple(
            _tool(s) for s in sorted(below, key=lambda s: s.start_ns) if s.name == "function_tool"
        ),
    )
