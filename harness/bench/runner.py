"""Run a bench: for each concurrency level, N calls with up to C at once, then the figures.

Stage: ``loopcall bench`` and ``POST /benches`` call ``run_bench``; every call goes
through the orchestrator like any run (so each is a stored ``Run``), with the
lean caller, the level's calibration measured once beforehand at rest, and no
transcription while calls are live.  Per level the runner samples the harness
itself: process CPU, resident memory, the event loop's delay (``harness.monitor``),
and the agent's CPU when the bench started the agent.  After the level, the
agent's turns are transcribed in one batch and the runs re-scored and stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import platform
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
from loguru import logger

from audio.edges import detect_speech
from audio.speech import get_transcriber, get_voice
from harness.analysis.turns import latency_summary
from harness.bench.level import BenchState, LevelContext, ProgressFn, run_level
from harness.bench.models import BenchConfig, BenchReport
from harness.models import utcnow
from harness.monitor import loop_monitor
from harness.orchestrator import Calibration, EchoCalibrator, RunOptions
from harness.store import RunSink
from personas.brains import needs_live_stt
from telephony import DialOptions, Target, TelephonyError, call_class, line_rate, parse_target

__all__ = ["BenchState", "machine", "run_bench"]


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
                level = await run_level(
                    config,
                    concurrency,
                    store,
                    replace(base, calibration=calibration),
                    LevelContext(
                        report, state, notify, agent_pid, dial, agent_id, agent_timing_log
                    ),
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
