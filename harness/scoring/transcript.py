"""The call as a judge reads it: one timestamped, two-sided text; quotes found back in it.

Stage: feeds ``harness.scoring.judge``.  In: ``CallFacts`` (turns, tool calls,
agent events, all on the recording's clock).  Out: the transcript an LLM judge
reads, one line per turn, tool call or event in time order, and, for the quotes
the judge returns, the ``Evidence`` they point at (the turn that says it, else
the tool call it names).  Pure functions; no I/O.
"""

from __future__ import annotations

import json
import re
from typing import Any

from harness.models import Evidence
from harness.scoring.facts import CallFacts

__all__ = ["evidence_for", "render"]

# A tool's arguments or response longer than this is cut in the judge's transcript.
MAX_PAYLOAD_CHARS = 400
_SPEAKERS = {"agent": "AGENT", "persona": "CALLER"}


def render(facts: CallFacts) -> str:
    """``[mm:ss.s] AGENT: ...`` lines, tool calls and agent events interleaved by time."""
    lines: list[tuple[float, int, str]] = []
    for turn in facts.turns:
        speaker = _SPEAKERS.get(turn.role, turn.role.upper())
        lines.append((turn.start_ms, 0, f"[{_clock(turn.start_ms)}] {speaker}: {turn.text}"))
    for call in facts.tool_calls:
        status = f" (HTTP {call.status_code})" if call.status_code not in (None, 200) else ""
        text = f"TOOL CALL {call.name}({_payload(call.args)}) -> {_payload(call.response)}{status}"
        if call.error:
            text += f" error: {call.error}"
        lines.append((_at(call.at_ms), 1, f"[{_clock(call.at_ms)}] {text}"))
    for event in facts.agent_events:
        detail = f" {_payload(event.args)}" if event.args else ""
        value = f" = {event.value}" if event.value is not None else ""
        text = f"AGENT EVENT {event.type} {event.name}{detail}{value}"
        lines.append((_at(event.at_ms), 2, f"[{_clock(event.at_ms)}] {text}"))
    lines.sort(key=lambda line: (line[0], line[1]))
    return "\n".join(line for _, _, line in lines) or "(nothing was said)"


def evidence_for(quote: str, facts: CallFacts) -> Evidence:
    """Where ``quote`` comes from: the turn that says it, else the tool call it names."""
    wanted = _normal(quote)
    if wanted:
        for index, turn in enumerate(facts.turns):
            if wanted in _normal(turn.text):
                return Evidence(turn_index=index, quote=quote, at_ms=turn.start_ms)
        best = _closest_turn(wanted, facts)
        if best is not None:
            turn = facts.turns[best]
            return Evidence(turn_index=best, quote=quote, at_ms=turn.start_ms)
    for index, call in enumerate(facts.tool_calls):
        if re.search(rf"\b{re.escape(call.name)}\b", quote):
            return Evidence(tool_call_index=index, quote=quote, at_ms=call.at_ms)
    return Evidence(quote=quote)


def _closest_turn(wanted: str, facts: CallFacts) -> int | None:
    """The turn holding most of the quote's words (a judge may tidy a quote), if >= 80 %."""
    words = set(wanted.split())
    best, share = None, 0.8
    for index, turn in enumerate(facts.turns):
        found = len(words & set(_normal(turn.text).split())) / len(words)
        if found >= share:
            best, share = index, found
    return best


def _normal(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower().replace("\u2019", "'")).split())


def _payload(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= MAX_PAYLOAD_CHARS else text[:MAX_PAYLOAD_CHARS] + "...(cut)"


def _at(at_ms: float | None) -> float:
    return at_ms if at_ms is not None else float("inf")


def _clock(at_ms: float | None) -> str:
    if at_ms is None:
        return "--:--.-"
    seconds = max(at_ms, 0.0) / 1000
    return f"{int(seconds // 60):02d}:{seconds % 60:04.1f}"
