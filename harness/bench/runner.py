"""Run a bench: for each concurrency level, N calls with up to C at once, then the figures.

Stage: ``loopcall bench`` and ``POST /benches`` call ``run_bench``; every call goes
through the orchestrator like any run (so each is a stored ``Run``), with the
lean caller, the level's calibration measured once beforehand at rest, and no
transcription while calls are live.  Per level the runner samples the harness
itself: process CPU, resident memory, the event loop's delay (``health.py``),
and the agent's CPU when the bench started the agent.  After the level, the
agent's turns are transcribed in one batch and the runs re-scored and stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import platform
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from loguru import logger

from audio.edges import detect_speech
from audio.speech import get_transcriber, get_voice
from harness.analysis import transcribe_agent_turns
from harness.analysis.turns import latency_summary
from harness.bench.models import BenchConfig, BenchLevel, BenchReport
from harness.bench.stats import (
    CallSpan,
    LevelSamples,
    agent_account,
    bench_call,
    summarize_level,
)
from harness.models import Run, utcnow
from harness.monitor import loop_monitor, process_cpu_s, rss_mb
from harness.orchestrator import CALL_OVER, Calibration, EchoCalibrator, RunOptions, run_case
from harness.recording import Recording
from harness.scoring import evaluate
from harness.store import RunSink
from personas.lean import needs_live_stt
from telephony import DialOptions, Target, TelephonyError, call_class, line_rate, parse_target

__all__ = ["BenchState", "machine", "run_bench"]

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


def _cpu_of(pid: int) -> float | None:
    """CPU seconds of another process (Linux /proc), or None."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            parts = fh.read().rsplit(")", 1)[1].split()
        return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def machine() -> dict[str, str]:
    return {
        "cpus": str(os.cpu_count()),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }


async def run_bench(
    config: BenchConfig,
    store: RunSink,
    *,
    bench_id: str,
    options: RunOptions | None = None,
    agent_pid: int | None = None,
    progress: ProgressFn | None = None,
    calibrator: EchoCalibrator | None = None,
    dial: DialOptions | None = None,
    agent_id: str | None = None,
    on_level: Callable[[BenchReport], object] | None = None,
    agent_timing_log: Path | None = None,
) -> BenchReport:
    """Run every level of ``config``; returns the report (its status says how it ended).

    ``dial``/``agent_id``: a stored agent's dial options (the controller's benches);
    ``on_level`` sees the report after each level (a controller keeps it readable);
    ``agent_timing_log``: the oracle agent's ``--timing-log``, to check its replies
    against its own account (``BenchLevel.agent_account``).
    """
    target = parse_target(config.target)
    report = BenchReport(
        id=bench_id,
        target=config.target,
        channel=target.channel,
        case_name=config.case.name,
        concurrency=config.concurrency,
        oracle_delay_ms=config.oracle_delay_ms,
        lag_bound_ms=config.lag_bound_ms,
        caller=config.caller,
        machine=machine(),
    )
    state = BenchState()
    notify = progress or (lambda _state: None)
    use_line_rate = config.caller == "lean"
    rate = (line_rate(target) if use_line_rate else None) or 16_000
    base = replace(
        options or RunOptions(),
        caller=config.caller,
        calibrate=False,
        transcribe=False,
        connect_timeout_s=config.connect_timeout_s,
        media_timeout_s=config.media_timeout_s or None,
        lag_bound_ms=config.lag_bound_ms,
    )
    monitor = loop_monitor()
    monitor.acquire()
    async with contextlib.AsyncExitStack() as stack:
        stack.enter_context(_quiet_runtime())
        if calibrator is None:
            calibrator = await stack.enter_async_context(
                EchoCalibrator(light=config.caller == "lean")
            )
        try:
            await _warm_voice(config, rate)
            _warm_up(target, rate)
            for index, concurrency in enumerate(config.concurrency, start=1):
                state.level, state.concurrency = index, concurrency
                calibration = await _calibrate(calibrator, target, use_line_rate, state, notify)
                level = await _run_level(
                    config,
                    concurrency,
                    store,
                    replace(base, calibration=calibration),
                    _Context(report, state, notify, agent_pid, dial, agent_id, agent_timing_log),
                    None if calibration is None else calibration.rtt_ms,
                )
                report.levels.append(level)
                state.done_levels.append(level)
                notify(state)
                if on_level is not None:
                    on_level(report)
            report.status = "completed"
        except asyncio.CancelledError:
            report.status = "cancelled"
            report.error = "cancelled by the user"
            raise
        except (TelephonyError, ValueError) as exc:
            report.status = "failed"
            report.error = str(exc)
        except Exception as exc:  # the bench ends as a report with a reason, never a trace
            logger.exception(f"bench {bench_id} failed unexpectedly")
            report.status = "failed"
            report.error = f"{type(exc).__name__}: {exc}"
        finally:
            report.ended_at = utcnow()
            await monitor.release()
    return report


def _warm_up(target: Target, rate: int) -> None:
    """What the first call would otherwise do on the event loop: imports on first use
    (numpy's percentile pulls in a module of its own: 30 ms) and the analysis path."""
    call_class(target)
    silence = np.zeros(rate, dtype=np.int16)
    detect_speech(silence, rate)
    latency_summary([1.0, 2.0])
    np.percentile(np.arange(4.0), [50, 99])


@contextlib.contextmanager
def _quiet_runtime() -> Iterator[None]:
    """Keep the interpreter from stalling the event loop while calls run.

    A full garbage collection walks every object (a hundred calls' recordings
    hold hundreds of thousands) and stalls the loop for a quarter of a second:
    full collections wait until the bench ends (young ones still run; what calls
    leave behind is mostly freed by reference counting).
    """
    thresholds = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(thresholds[0], thresholds[1], 1_000_000_000)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
        gc.collect()


async def _warm_voice(config: BenchConfig, rate: int) -> None:
    """Synthesize the persona's lines once, before any call (the calls share the cache)."""
    voice = get_voice(config.case.persona.voice)
    lines = [line.say for line in config.case.script if line.say] + [config.case.goodbye]
    for text in lines:
        await voice.synthesize_async(text, rate, config.case.persona.speaking_rate)
    if config.transcribe or (config.caller == "lean" and needs_live_stt(config.case)):
        await asyncio.to_thread(get_transcriber)  # loaded once, before any call


async def _calibrate(
    calibrator: EchoCalibrator,
    target: Target,
    use_line_rate: bool,
    state: BenchState,
    notify: ProgressFn,
) -> Calibration | None:
    state.phase = "calibrating"
    notify(state)
    try:
        return await calibrator.measure(target, use_line_rate=use_line_rate)
    except TelephonyError as exc:
        logger.warning(f"bench: calibration failed, latencies keep the transport: {exc}")
        return None


@dataclass(frozen=True)
class _Context:
    """What every level of one bench shares."""

    report: BenchReport
    state: BenchState
    notify: ProgressFn
    agent_pid: int | None
    dial: DialOptions | None
    agent_id: str | None
    agent_timing_log: Path | None


async def _run_level(
    config: BenchConfig,
    concurrency: int,
    store: RunSink,
    options: RunOptions,
    ctx: _Context,
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
    agent0 = _cpu_of(agent_pid) if agent_pid else None
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
                agent_at_end = _cpu_of(agent_pid) if agent_pid else None
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
        state.latencies.extend(
            t.latency_ms for t in run.turns if t.latency_ms is not None and not t.degraded
        )

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
            await _transcribe(span.run, store)
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


async def _transcribe(run: Run, store: RunSink) -> None:
    """The agent's turns from the stored recording, then score and store again."""
    if not run.recording or not any(t.role == "agent" for t in run.turns):
        return
    try:
        recording = await asyncio.to_thread(Recording.read_wav, Path(run.recording))
    except (OSError, ValueError) as exc:
        logger.warning(f"bench: run {run.id}: cannot read its recording: {exc}")
        return
    await transcribe_agent_turns(run.turns, recording, get_transcriber())
    run.evaluation = evaluate(run.case, run.turns, run.metrics, run.termination_reason)
    await store.put(run)
