"""A run as a person reads it (``loopcall show``): header, metrics, how the talk flowed,
the timed transcript with what the agent did between its lines, the verdicts and the bill.

Part of ``harness.views``; reads a ``Run`` only.  Each agent turn carries its
heard latency and, when the agent's spans reported them, its own stage figures;
tool calls and flow nodes sit in the transcript at the moment they happened.
"""

from __future__ import annotations

from harness.models import Run, Turn, Usage
from harness.views.labels import criterion_label

__all__ = ["to_text"]


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def _cents(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.4g}¢"


def to_text(run: Run) -> str:
    m = run.metrics
    lines = [
        f"run {run.id}  {run.case.name}",
        f"  {run.status} ({run.termination_reason or '-'})  {run.channel} {run.target}",
        f"  started {run.started_at}  duration {_ms(run.duration_ms)}",
        f"  latency p50 {_ms(m.latency_ms.p50)}  p90 {_ms(m.latency_ms.p90)}  "
        f"max {_ms(m.latency_ms.max)} (n={m.latency_ms.n})  "
        f"first audio {_ms(m.time_to_first_audio_ms)}  transport rtt {_ms(m.transport_rtt_ms)}",
    ]
    lines += _dynamics(run)
    if run.tools_url:
        lines.append(f"  tools url: {run.tools_url}")
    if run.error:
        lines.append(f"  error: {run.error}")
    if run.recording:
        lines.append(f"  recording: {run.recording}")
    lines.append("")
    lines += _timeline(run)
    if run.evaluation is not None:
        ev = run.evaluation
        lines += ["", f"score {ev.score:.0f}  {'PASS' if ev.pass_fail else 'FAIL'}"]
        for result in ev.results:
            mark = "ok  " if result.passed else "FAIL"
            label = criterion_label(result.assertion)
            lines.append(f"  {mark} [{result.weight:g}] {label}: {result.reason}")
    lines += _usage(run.usage)
    return "\n".join(lines)


def _dynamics(run: Run) -> list[str]:
    d = run.metrics.dynamics
    if d is None:
        return []
    ratio = "-" if d.talk_ratio is None else f"{d.talk_ratio:.2f}"
    wpm = "-" if d.agent_words_per_minute is None else f"{d.agent_words_per_minute:.0f}"
    return [
        f"  flow: agent interrupted {len(d.agent_interruptions)}x, caller interrupted "
        f"{len(d.persona_interruptions)}x, overlap {_ms(d.overlap_ms)}, longest silence "
        f"{_ms(d.longest_silence_ms)}, dead air {len(d.dead_air)}x "
        f"(>{d.dead_air_threshold_ms:g} ms), talk ratio {ratio}, agent {wpm} wpm"
    ]


def _timeline(run: Run) -> list[str]:
    """Turns, tool calls and agent events in the order they happened."""
    entries: list[tuple[float, int, str]] = []
    for turn in run.turns:
        entries.append((turn.start_ms, 0, _turn_line(turn)))
    for call in run.tool_calls:
        status = f" -> {call.status_code}" if call.status_code is not None else ""
        error = f" error: {call.error}" if call.error else ""
        at = call.at_ms if call.at_ms is not None else float("inf")
        entries.append(
            (
                at,
                1,
                f"{_stamp(call.at_ms)}    tool: {call.name}({call.args}){status}"
                f" [{call.source}]{error}",
            )
        )
    for event in run.agent_events:
        if event.type == "tool_call":
            continue  # already among the tool calls
        at = event.at_ms if event.at_ms is not None else float("inf")
        value = f" = {event.value:g}" if event.value is not None else ""
        entries.append((at, 1, f"{_stamp(event.at_ms)}   {event.type:>5}: {event.name}{value}"))
    return [line for _at, _order, line in sorted(entries, key=lambda e: (e[0], e[1]))]


def _turn_line(turn: Turn) -> str:
    latency = "" if turn.latency_ms is None else f"  (+{turn.latency_ms:.0f} ms)"
    stamp = f"[{turn.start_ms / 1000:6.2f}-{turn.end_ms / 1000:6.2f}s]"
    line = f"{stamp} {turn.role:>7}: {turn.text}{latency}"
    timing = turn.agent_timing
    if timing is not None:
        stages = [
            ("eos", timing.end_of_speech_ms),
            ("stt", timing.stt_ms),
            ("llm", timing.llm_ttfb_ms),
            ("tts", timing.tts_ttfb_ms),
            ("unaccounted", timing.unaccounted_ms),
        ]
        said = ", ".join(f"{name} {value:.0f}" for name, value in stages if value is not None)
        if said:
            line += f"\n{'':>25}agent's account (ms): {said}"
    return line


def _stamp(at_ms: float | None) -> str:
    return "[   ?   ]" if at_ms is None else f"[{at_ms / 1000:6.2f}s]"


def _usage(usage: Usage) -> list[str]:
    if not usage.tokens and not usage.costs and usage.total_cost_cents is None:
        return []
    lines = ["", f"cost {_cents(usage.total_cost_cents)} (priced lines)"]
    for item in usage.costs:
        what = (
            f"{item.input_tokens or 0} in / {item.output_tokens or 0} out tokens"
            if item.type == "model"
            else f"{item.minutes or 0:.2f} min"
        )
        note = f"  ({item.note})" if item.note else ""
        lines.append(
            f"  {item.party:>9} {item.model or '-'}: {what}, {_cents(item.cost_cents)}{note}"
        )
    for gap in usage.unpriced:
        if not any(gap.startswith(f"{item.party}:") for item in usage.costs):
            lines.append(f"  not priced: {gap}")
    return lines
