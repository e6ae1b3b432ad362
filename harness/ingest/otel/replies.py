"""The agent's own account of each reply, read from its framework's spans (shared shapes).

Stage: after the run's spans are collected, before ``join`` places them on the
recording's clock.  ``pipecat.py`` and ``livekit.py`` each turn their
framework's span tree into ``Reply`` values: instants in Unix epoch nanoseconds
on the agent's clock, the stage figures the agent itself measured, its tokens
and the tool calls it made.  ``join`` runs both (a run's spans come from one
framework; the other finds nothing).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from harness.ingest.otel.spans import Span

__all__ = [
    "Reply",
    "ToolSpan",
    "after",
    "gap_ms",
    "model_of",
    "number",
    "parse_json",
    "seconds_ms",
    "tokens",
]


@dataclass(frozen=True)
class ToolSpan:
    """A tool call the agent's spans show, on the agent's clock."""

    name: str
    args: Any
    response: Any = None
    start_ns: int | None = None
    end_ns: int | None = None
    error: str | None = None
    call_id: str | None = None


@dataclass(frozen=True)
class Reply:
    """One reply as the agent accounts for it.

    Instants (``*_ns``, Unix epoch ns on the agent's clock): ``speech_end_ns`` where
    the agent placed the end of the user's speech (pipecat: its VAD's stop minus
    ``stop_secs``; LiveKit: the turn decision minus ``lk.end_of_turn_delay``);
    ``turn_detected_ns`` its decision that the user was done (pipecat: its first
    LLM request; LiveKit: the end of ``user_turn``); ``stt_final_ns`` its final
    transcript; ``llm_first_token_ns`` the first token of the LLM call whose text
    was spoken; ``first_audio_ns`` its TTS's first audio byte.  ``anchor_ns`` is the
    instant matched to a heard turn: ``first_audio_ns``, else the reply span's start.
    """

    framework: str
    anchor_ns: int
    first_audio_ns: int | None = None
    speech_end_ns: int | None = None
    turn_detected_ns: int | None = None
    stt_final_ns: int | None = None
    llm_first_token_ns: int | None = None
    end_of_speech_ms: float | None = None
    stt_ms: float | None = None
    llm_ttfb_ms: float | None = None
    tts_ttfb_ms: float | None = None
    accounted_ms: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    tools: tuple[ToolSpan, ...] = field(default_factory=tuple)


def after(instant_ns: int | None, ms: float | None) -> int | None:
    """``ms`` after an instant (negative: before); either missing: None."""
    return None if instant_ns is None or ms is None else instant_ns + round(ms * 1e6)


def gap_ms(later_ns: int | None, earlier_ns: int | None) -> float | None:
    """From one instant to another, in ms; either missing: None."""
    return None if later_ns is None or earlier_ns is None else (later_ns - earlier_ns) / 1e6


def number(attributes: dict[str, Any], *keys: str) -> float | None:
    """The first of ``keys`` that holds a number (bools are not numbers)."""
    for key in keys:
        value = attributes.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None


def seconds_ms(attributes: dict[str, Any], *keys: str) -> float | None:
    """A figure the span holds in seconds, in ms."""
    value = number(attributes, *keys)
    return None if value is None else value * 1000.0


def tokens(spans: Iterable[Span]) -> tuple[int | None, int | None]:
    """``gen_ai.usage.input_tokens``/``output_tokens`` summed over ``spans`` (None: none said)."""
    found_in: int | None = None
    found_out: int | None = None
    for span in spans:
        got_in = number(span.attributes, "gen_ai.usage.input_tokens")
        got_out = number(span.attributes, "gen_ai.usage.output_tokens")
        if got_in is not None:
            found_in = (found_in or 0) + int(got_in)
        if got_out is not None:
            found_out = (found_out or 0) + int(got_out)
    return found_in, found_out


def model_of(span: Span) -> str | None:
    """The model an LLM span names (the response's, else the request's)."""
    for key in ("gen_ai.response.model", "gen_ai.request.model"):
        value = span.attributes.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def parse_json(value: Any) -> Any:
    """A JSON string's value; anything else (or malformed JSON) as it is."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value
