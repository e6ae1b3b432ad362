"""Pure functions from a level's runs and samples to its ``BenchLevel`` figures.

Stage: after a level's calls have ended (``runner.py`` collects, this computes).
Nothing here places calls or reads clocks, so every figure is tested on hand-made
runs.  The rule for a degraded level: more than ``DEGRADED_TURN_SHARE`` of its
turns are degraded (``health.assess``), or, on channels whose arrivals the event
loop stamps (all but SIP), the loop's delay p99 exceeded the bound.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from harness.analysis.turns import latency_summary
from harness.bench.models import (
    AgentAccount,
    BenchCall,
    BenchLevel,
    BenchTurn,
    OracleError,
)
from harness.models import Run, vouched_latencies

__all__ = [
    "DEGRADED_TURN_SHARE",
    "agent_account",
    "CallSpan",
    "LevelSamples",
    "bench_call",
    "failure_reason",
    "oracle_errors",
    "peak_overlap",
    "summarize_level",
]

DEGRADED_TURN_SHARE = 0.01
# An agent's reply and the turn the harness heard are the same when this close.
MATCH_MS = 150.0


@dataclass(frozen=True)
class CallSpan:
    """When (monotonic s) a call was started and returned, and its run."""

    run: Run
    index: int
    started: float
    ended: float


@dataclass(frozen=True)
class LevelSamples:
    """What the runner measured about the harness while a level ran."""

    started: float
    ended: float
    cpu_s: float  # process CPU seconds over the level
    lag_ms: np.ndarray  # loop delay samples over the level
    rss_mb_start: float
    rss_mb_peak: float
    agent_cpu_s: float | None = None
    ramp_s: float = 0.0


def failure_reason(run: Run) -> str:
    """A failed run's reason, with ids and counts blanked so like failures group."""
    text = run.error or f"ended: {run.termination_reason}"
    text = re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27,}", "<id>", text)
    return text[:160]


def oracle_errors(runs: Sequence[Run], delay_ms: float) -> OracleError:
    """Oracle error of every agent turn with a latency: latency - D - transport round trip."""
    trusted: list[float] = []
    every: list[float] = []
    for run in runs:
        rtt = run.metrics.transport_rtt_ms or 0.0
        for turn in run.turns:
            if turn.role != "agent" or turn.latency_ms is None:
                continue
            error = turn.latency_ms - delay_ms - rtt
            every.append(error)
            if not turn.degraded:
                trusted.append(error)

    def p95(values: list[float]) -> float | None:
        return round(float(np.percentile(np.abs(values), 95)), 2) if values else None

    def worst(values: list[float]) -> float | None:
        return round(float(np.max(np.abs(values))), 2) if values else None

    return OracleError(
        n=len(trusted),
        p95=p95(trusted),
        max=worst(trusted),
        mean=round(float(np.mean(trusted)), 2) if trusted else None,
        all_p95=p95(every),
        all_max=worst(every),
    )


def agent_account(
    runs: Sequence[Run], entries: Sequence[dict[str, object]], delay_ms: float
) -> AgentAccount:
    """Match the agent's timing log (its replies' real gaps) to the runs' agent turns.

    An entry names its run (``run_id``) and gives, in wall-clock ms, when the caller's
    last sample reached the agent and when the reply's first voiced sample left it;
    it is matched to the run's agent turn whose onset is nearest (within
    ``MATCH_MS``) on the same wall clock.
    """
    by_run: dict[str, list[dict[str, object]]] = {}
    for entry in entries:
        if entry.get("run_id") and entry.get("caller_offset_epoch_ms") is not None:
            by_run.setdefault(str(entry["run_id"]), []).append(entry)
    late: list[float] = []
    errors: list[float] = []
    trusted: list[float] = []
    for run in runs:
        connected = next((e for e in run.events if e.kind == "connected"), None)
        if run.started_at is None or connected is None or run.id not in by_run:
            continue
        zero = run.started_at.timestamp() * 1000.0 + connected.t_ms
        rtt = run.metrics.transport_rtt_ms or 0.0
        for turn in run.turns:
            if turn.role != "agent" or turn.latency_ms is None:
                continue
            onset = zero + turn.start_ms
            entry = min(
                by_run[run.id],
                key=lambda e: abs(float(e["reply_onset_epoch_ms"]) - onset),  # type: ignore[arg-type]
            )
            if abs(float(entry["reply_onset_epoch_ms"]) - onset) > MATCH_MS:  # type: ignore[arg-type]
                continue
            gap = float(entry["reply_onset_epoch_ms"]) - float(entry["caller_offset_epoch_ms"])  # type: ignore[arg-type]
            late.append(gap - delay_ms)
            error = turn.latency_ms - gap - rtt
            errors.append(error)
            if not turn.degraded:
                trusted.append(error)

    def q(values: list[float], fn: str) -> float | None:
        if not values:
            return None
        arr = np.abs(values) if fn != "mean" else np.asarray(values)
        value = {"p95": np.percentile(arr, 95), "max": arr.max(), "mean": arr.mean()}[fn]
        return round(float(value), 2)

    return AgentAccount(
        n=len(errors),
        late_ms_p95=q(late, "p95"),
        late_ms_max=q(late, "max"),
        harness_error_ms_p95=q(errors, "p95"),
        harness_error_ms_max=q(errors, "max"),
        harness_error_ms_mean=q(errors, "mean"),
        trusted_error_ms_p95=q(trusted, "p95"),
        trusted_error_ms_max=q(trusted, "max"),
    )


def peak_overlap(intervals: Sequence[tuple[float, float]]) -> int:
    """The most intervals open at one instant."""
    edges = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    peak = current = 0
    for _, step in edges:
        current += step
        peak = max(peak, current)
    return peak


def _connected_at(span: CallSpan) -> float | None:
    event = next((e for e in span.run.events if e.kind == "connected"), None)
    return None if event is None else span.started + event.t_ms / 1000.0


def bench_call(span: CallSpan, level: int, level_start: float) -> BenchCall:
    """One call on the level's clock, with its turns."""
    run = span.run
    connected = _connected_at(span)
    turns = []
    if connected is not None:
        base = connected - level_start
        turns = [
            BenchTurn(
                role=t.role,
                start_s=round(base + t.start_ms / 1000.0, 3),
                end_s=round(base + t.end_ms / 1000.0, 3),
                latency_ms=t.latency_ms,
                degraded=t.degraded,
            )
            for t in run.turns
        ]
    return BenchCall(
        run_id=run.id,
        level=level,
        index=span.index,
        status=run.status,
        error=run.error,
        started_s=round(span.started - level_start, 3),
        ended_s=round(span.ended - level_start, 3),
        connected_s=None if connected is None else round(connected - level_start, 3),
        turns=turns,
        degraded=bool(run.metrics.harness and run.metrics.harness.degraded),
    )


def summarize_level(
    concurrency: int,
    spans: Sequence[CallSpan],
    samples: LevelSamples,
    *,
    oracle_delay_ms: float | None,
    lag_bound_ms: float,
    transport_rtt_ms: float | None,
) -> BenchLevel:
    """The level's figures from its calls and the harness's samples."""
    runs = [s.run for s in spans]
    statuses = Counter(r.status for r in runs)
    failures = Counter(failure_reason(r) for r in runs if r.status == "failed")
    agent_turns = [
        t for r in runs for t in r.turns if t.role == "agent" and t.latency_ms is not None
    ]
    trusted = vouched_latencies(agent_turns)
    degraded_turns = sum(1 for t in agent_turns if t.degraded)
    ttfa = [
        r.metrics.time_to_first_audio_ms
        for r in runs
        if r.metrics.time_to_first_audio_ms is not None
    ]
    connected = []
    for span in spans:
        start = _connected_at(span)
        if start is not None:
            connected.append((start, span.ended))
    call_seconds = sum(b - a for a, b in connected)
    wall = samples.ended - samples.started
    lag = samples.lag_ms

    def lag_q(q: float) -> float | None:
        return round(float(np.percentile(lag, q)), 2) if lag.size else None

    lag_p99 = lag_q(99)
    # Every channel sends on the loop's clock (SIP stamps only its arrivals in the
    # kernel): a loop late beyond the bound makes the level untrustworthy anywhere.
    reasons = []
    if lag_p99 is not None and lag_p99 > lag_bound_ms:
        reasons.append(f"loop delay p99 {lag_p99:.1f} ms over the {lag_bound_ms:g} ms bound")
    if agent_turns and degraded_turns > DEGRADED_TURN_SHARE * len(agent_turns):
        reasons.append(
            f"{degraded_turns} of {len(agent_turns)} turns measured while the loop ran late"
        )
    peak_rss = samples.rss_mb_peak
    per_call_rss = None
    if connected:
        per_call_rss = round((peak_rss - samples.rss_mb_start) / max(1, peak_overlap(connected)), 2)
    return BenchLevel(
        concurrency=concurrency,
        calls=len(spans),
        completed=statuses.get("completed", 0),
        failed=statuses.get("failed", 0),
        cancelled=statuses.get("cancelled", 0),
        failures=dict(failures.most_common()),
        peak_concurrency=peak_overlap(connected),
        ramp_s=round(samples.ramp_s, 2),
        wall_s=round(wall, 2),
        turns=len(agent_turns),
        degraded_turns=degraded_turns,
        latency_ms=latency_summary(trusted),
        time_to_first_audio_ms=latency_summary(ttfa),
        oracle_error_ms=None if oracle_delay_ms is None else oracle_errors(runs, oracle_delay_ms),
        transport_rtt_ms=transport_rtt_ms,
        degraded=bool(reasons),
        degraded_reason="; ".join(reasons) or None,
        cpu_percent=round(100.0 * samples.cpu_s / wall, 1) if wall > 0 else None,
        cpu_ms_per_call_s=round(1000.0 * samples.cpu_s / call_seconds, 2) if call_seconds else None,
        loop_lag_ms_p50=lag_q(50),
        loop_lag_ms_p99=lag_p99,
        loop_lag_ms_max=round(float(lag.max()), 2) if lag.size else None,
        rss_mb_start=round(samples.rss_mb_start, 1),
        rss_mb_peak=round(peak_rss, 1),
        rss_mb_per_call=per_call_rss,
        audio_dropped_ms=round(
            sum(r.metrics.harness.audio_dropped_ms for r in runs if r.metrics.harness), 1
        ),
        agent_cpu_percent=(
            None
            if samples.agent_cpu_s is None or wall <= 0
            else round(100.0 * samples.agent_cpu_s / wall, 1)
        ),
    )
