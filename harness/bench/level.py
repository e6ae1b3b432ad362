"""One concurrency level of a bench: its calls, the harness's samples, the level's figures.

Stage: inside ``run_bench`` (``runner.py``), once per level.  It starts the level's
calls through the orchestrator with a ramp and a slot per concurrent call, counts
them live (``BenchState``), samples the harness (CPU, memory, the loop's delay)
and the agent's CPU over the level, opens every call's analysis once the last
call has hung up, transcribes the agent's turns in one batch, and sums it up
(``stats.summarize_level``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from loguru import logger

from audio.speech import get_transcriber
from harness.analysis import transcribe_agent_turns
from harness.bench.models import BenchConfig, BenchLevel, BenchReport
from harness.bench.stats import CallSpan, LevelSamples, agent_account, bench_call, summarize_level
from harness.models import Run, vouched_latencies
from harness.monitor import loop_monitor, process_cpu_s, rss_mb
from harness.orchestrator import CALL_OVER, RunOptions, run_case
from harness.pricing import price_run
from harness.recording import Recording
from harness.scoring import CallFacts, evaluate_off_loop
from harness.store import RunSink
from telephony import DialOptions

__all__ = ["BenchState", "LevelContext", "ProgressFn", "cpu_of", "run_level"]

RSS_EVERY_S = 0.5


@dataclass
class BenchState:
    """Live counts for a progress display (updated as calls start, connect and end)."""

    level: int = 0
    concurrency: int = 0
    calls: int = 0
    started: int = 0
    connected: int = 0
    ended: int = 0
    failed: int = 0
    ended_connected: int = 0  # ended calls that had connected
    phase: str = "starting"
    latencies: list[float] = field(default_factory=list)
    done_levels: list[BenchLevel] = field(default_factory=list)

    @property
    def live(self) -> int:
        """Calls connected now."""
        return self.connected - self.ended_connected


ProgressFn = Callable[[BenchState], None]


def cpu_of(pid: int) -> float | None:
    """CPU seconds of another process (Linux /proc), or None."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            parts = fh.read().rsplit(")", 1)[1].split()
        return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


@dataclass(frozen=True)
class LevelContext:
    """What every level of one bench shares."""

    report: BenchReport
    state: BenchState
    notify: ProgressFn
    agent_pid: int | None
    dial: DialOptions | None
    agent_id: str | None
    agent_timing_log: Path | None


async def run_level(
    config: BenchConfig,
    concurrency: int,
    store: RunSink,
    options: RunOptions,
    ctx: LevelContext,
    rtt_ms: float | None,
) -> BenchLevel:
    report, state, notify, agent_pid = ctx.report, ctx.state, ctx.notify, ctx.agent_pid
    calls = config.calls_at(concurrency)
    ramp = config.ramp_at(concurrency) if calls > 1 else 0.0
    first_wave = min(calls, concurrency)
    state.phase, state.calls = "calling", calls
    state.started = state.connected = state.ended = state.failed = state.ended_connected = 0
    state.latencies = []
    notify(state)
    slots = asyncio.Semaphore(concurrency)
    spans: list[CallSpan] = []
    monitor = loop_monitor()
    started = time.monotonic()
    cpu0, rss0 = process_cpu_s(), rss_mb()
    agent0 = cpu_of(agent_pid) if agent_pid else None
    peak_rss = rss0

    async def sample_rss() -> None:
        nonlocal peak_rss
        while True:
            await asyncio.sleep(RSS_EVERY_S)
            peak_rss = max(peak_rss, rss_mb())

    # Every call's analysis waits until the level's last call has hung up: nothing
    # is analysed or stored beside live calls (it would blur their timing).
    gate = asyncio.Event()
    options = replace(options, analysis_gate=gate)
    over: dict[str, asyncio.Event] = {}
    media_ended, cpu_at_end, agent_at_end = started, cpu0, agent0

    def on_progress(run: Run, message: str) -> None:
        nonlocal media_ended, cpu_at_end, agent_at_end
        if message == "connected":
            state.connected += 1
            notify(state)
        elif message == CALL_OVER:
            state.ended += 1
            state.ended_connected += any(e.kind == "connected" for e in run.events)
            over.setdefault(run.id, asyncio.Event()).set()
            if state.ended == calls:
                media_ended, cpu_at_end = time.monotonic(), process_cpu_s()
                agent_at_end = cpu_of(agent_pid) if agent_pid else None
                gate.set()
            notify(state)

    async def one(i: int) -> None:
        if i < first_wave and first_wave > 1:
            await asyncio.sleep(max(0.0, started + i * ramp / (first_wave - 1) - time.monotonic()))
        run = Run(
            case=config.case,
            channel=report.channel,
            target=config.target,
            suite_name=f"bench {report.id[:8]} C={concurrency}",
            suite_run_id=report.id,
            agent_id=ctx.agent_id,
        )
        call_over = over.setdefault(run.id, asyncio.Event())
        async with slots:  # held while the call is live, not while it waits for analysis
            state.started += 1
            t0 = time.monotonic()
            task = asyncio.ensure_future(
                run_case(
                    config.case,
                    config.target,
                    store,
                    options=options,
                    progress=on_progress,
                    dial=ctx.dial,
                    run=run,
                )
            )
            waiter = asyncio.ensure_future(call_over.wait())
            try:
                await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
            t1 = time.monotonic()
        try:
            run = await task
        finally:
            task.cancel()
        spans.append(CallSpan(run, i, t0, t1))
        state.failed += run.status == "failed"
        state.latencies.extend(vouched_latencies(run.turns))

    sampler = asyncio.ensure_future(sample_rss())
    tasks = [asyncio.ensure_future(one(i)) for i in range(calls)]
    try:
        await asyncio.gather(*tasks)
    finally:
        gate.set()
        for task in tasks:
            task.cancel()
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
    # The level's window ends when its last call hung up (before the analyses).
    if media_ended == started:  # cancelled before the last call was over
        media_ended, cpu_at_end = time.monotonic(), process_cpu_s()
    ended = media_ended
    cpu = cpu_at_end - cpu0
    agent1 = agent_at_end
    samples = LevelSamples(
        started=started,
        ended=ended,
        cpu_s=cpu,
        lag_ms=monitor.window(started, ended).lags_ms,
        rss_mb_start=rss0,
        rss_mb_peak=max(peak_rss, rss_mb()),
        agent_cpu_s=None if agent0 is None or agent1 is None else agent1 - agent0,
        ramp_s=ramp,
    )
    spans.sort(key=lambda s: s.index)
    if config.transcribe:
        state.phase = "transcribing"
        notify(state)
        for span in spans:
            await _transcribe(span.run, store, options)
    level = summarize_level(
        concurrency,
        spans,
        samples,
        oracle_delay_ms=config.oracle_delay_ms,
        lag_bound_ms=config.lag_bound_ms,
        transport_rtt_ms=rtt_ms,
    )
    if ctx.agent_timing_log is not None and config.oracle_delay_ms is not None:
        entries = await asyncio.to_thread(_read_jsonl, ctx.agent_timing_log)
        level.agent_account = agent_account([s.run for s in spans], entries, config.oracle_delay_ms)
    report.calls.extend(bench_call(span, concurrency, started) for span in spans)
    return level


def _read_jsonl(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(ValueError):
            entries.append(json.loads(line))
    return entries


async def _transcribe(run: Run, store: RunSink, options: RunOptions) -> None:
    """The agent's turns from the stored recording, then score, price and store again
    (the judge's tokens of the first scoring replaced by this one's)."""
    if not run.recording or not any(t.role == "agent" for t in run.turns):
        return
    try:
        recording = await asyncio.to_thread(Recording.read_wav, Path(run.recording))
    except (OSError, ValueError) as exc:
        logger.warning(f"bench: run {run.id}: cannot read its recording: {exc}")
        return
    await transcribe_agent_turns(run.turns, recording, get_transcriber(), run.metrics)
    facts = CallFacts(
        run.turns, run.metrics, run.termination_reason, run.tool_calls, run.agent_events
    )
    run.usage.forget("judge")
    run.evaluation = await evaluate_off_loop(run.case, facts, options.judge, run.usage)
    price_run(run, options.prices)
    await store.put(run)
