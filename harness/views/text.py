"""A run as a person reads it: header, metrics, the timed transcript and the verdicts."""

from __future__ import annotations

from harness.models import Run

__all__ = ["to_text"]


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


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
    if run.error:
        lines.append(f"  error: {run.error}")
    if run.recording:
        lines.append(f"  recording: {run.recording}")
    lines.append("")
    for turn in run.turns:
        latency = "" if turn.latency_ms is None else f"  (+{turn.latency_ms:.0f} ms)"
        stamp = f"[{turn.start_ms / 1000:6.2f}-{turn.end_ms / 1000:6.2f}s]"
        lines.append(f"{stamp} {turn.role:>7}: {turn.text}{latency}")
    if run.evaluation is not None:
        ev = run.evaluation
        lines += ["", f"score {ev.score:.0f}  {'PASS' if ev.pass_fail else 'FAIL'}"]
        for result in ev.results:
            mark = "ok  " if result.passed else "FAIL"
            lines.append(f"  {mark} [{result.weight:g}] {result.reason}")
    return "\n".join(lines)
