"""How many calls does one machine drive? The harness's capacity against a light agent.

For each channel, starts the light reference agent as a latency oracle in its own
process (``loopcall agent --light --reply-delay-ms 400``) and runs ``loopcall
bench`` levels of rising concurrency against it (lean caller, no transcription).
Per level it prints the agent's latency, the oracle error (|latency - 400 ms -
transport|, over the turns the harness vouches for and over every turn), the
degraded turns, the harness's and the agent's CPU, the harness's CPU per call
and memory per call, its event loop's delay and the stale audio it dropped.

The capacity is the largest level at which every call completed and the oracle
held within 20 ms p95 over every turn.  A channel stops climbing once a level
breaks that.  ``--profile`` samples this process with py-spy during the last
level of each channel and prints where its time went.

The pseudo-channel ``sipp-echo`` calls SIPp's RTP echo (``sipp -rtp_echo``, C,
a few % of a core at 100 calls) over SIP instead of the Python oracle agent, so
that the harness has the machine nearly to itself: the "oracle" is then the echo,
which must come back when it was sent (the transport's ~0.2 ms), and its error is
each persona utterance's echo onset minus its own onset, from the recording.  It
uses the SIP tests' SIPp launcher (``tests/sip_peer_procs.py``).

    .venv/bin/python benchmarks/capacity.py [--channels sip twilio-ws webrtc sipp-echo]
        [--levels 1 10 50 100 150] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np
from loguru import logger

from audio.edges import detect_speech
from harness.bench.models import BenchConfig, BenchLevel, BenchReport, OracleError
from harness.bench.runner import BenchState, run_bench
from harness.cases import load_cases
from harness.cli.processes import start_agent_process
from harness.recording import Recording
from harness.store import RunStore

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "harness" / "examples"
DELAY_MS = 400.0
BOUND_MS = 20.0
# py-spy from the same environment (the dev extra), else from PATH.
PY_SPY = (
    str(Path(sys.executable).with_name("py-spy"))
    if Path(sys.executable).with_name("py-spy").exists()
    else (shutil.which("py-spy") or "py-spy")
)


def _holds(level: BenchLevel) -> bool:
    oracle = level.oracle_error_ms
    return (
        level.completed == level.calls
        and oracle is not None
        and oracle.all_p95 is not None
        and oracle.all_p95 <= BOUND_MS
    )


class _Profiler:
    """py-spy on this process while a level's calls are live (started once they all are)."""

    def __init__(self, out: Path, seconds: float) -> None:
        self.out = out
        self.seconds = seconds
        self.proc: subprocess.Popen[bytes] | None = None

    def on_progress(self, state: BenchState) -> None:
        if self.proc is None and state.calls and state.connected >= state.calls:
            self.proc = subprocess.Popen(
                [PY_SPY, "record", "-p", str(os.getpid()), "-d", str(int(self.seconds)),
                 "-r", "100", "--nonblocking", "-f", "raw", "-o", str(self.out)],
                stdout=subprocess.DEVNULL, stderr=self.out.with_suffix(".log").open("wb"),
            )  # fmt: skip

    def top(self, n: int = 12) -> list[tuple[float, str]]:
        if self.proc is None:
            return []
        if self.proc.wait() != 0 or not self.out.exists():
            log = self.out.with_suffix(".log")
            print(f"py-spy failed (see {log}): {log.read_text(errors='replace')[-300:]}")
            return []
        own: collections.Counter[str] = collections.Counter()
        total = 0
        for line in self.out.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            frames = stack.split(";")
            if not count.isdigit() or "_worker (concurrent" in frames[-1]:
                continue  # idle pool threads
            total += int(count)
            # The innermost frame's function and file (lines merged); waiting in epoll is idle.
            name, _, where = frames[-1].partition(" (")
            path = where.rsplit("/", 1)[-1].split(":")[0]
            own["(idle: waiting for I/O)" if "select" in name else f"{name} ({path})"] += int(count)
        return [(100.0 * c / total, name) for name, c in own.most_common(n)] if total else []


def _echo_errors(report: BenchReport, store: RunStore) -> OracleError:
    """Each persona utterance's echo onset minus its own onset, over a level's calls.

    The echo of an utterance is the agent-channel segment starting within 200 ms
    of it; an utterance with no echo there counts as 200 ms off, unless its echo
    merged into the previous one's (a word gap the echo's segmentation bridged).
    Only the every-turn figures are set: a turn's degraded flag judges a reply's
    latency window, which an echo (overlapping what it repeats) does not have.
    """
    every: list[float] = []
    for call in report.calls:
        run = store.load(call.run_id)
        if not run.recording:
            continue
        recording = Recording.read_wav(Path(run.recording))
        rate = recording.sample_rate
        sent = detect_speech(recording.persona, rate, hangover_ms=100)
        back = detect_speech(recording.agent, rate, hangover_ms=100)
        for seg in sent:
            echo = min(back, key=lambda b: abs(b.start - seg.start), default=None)
            if echo is None or abs(echo.start - seg.start) > 0.2 * rate:
                if any(b.start <= seg.start < b.end for b in back):
                    continue  # its echo merged with the previous word's: no onset of its own
                every.append(200.0)  # no echo where one was due: counts as a miss
                continue
            every.append((echo.start - seg.start) * 1000.0 / rate)
    return OracleError(
        n=len(every),
        mean=round(float(np.mean(every)), 2) if every else None,
        all_p95=round(float(np.percentile(np.abs(every), 95)), 2) if every else None,
        all_max=round(float(np.max(np.abs(every))), 2) if every else None,
    )


Bench = Callable[[int, "_Profiler | None"], Awaitable[BenchLevel | None]]


async def _climb(
    channel: str, levels: list[int], out: Path, profile: bool, bench: Bench
) -> tuple[list[BenchLevel], list[tuple[float, str]]]:
    """Run the levels in order until one fails the oracle; then py-spy the last one."""
    done: list[BenchLevel] = []
    for concurrency in levels:
        level = await bench(concurrency, None)
        if level is None:
            break
        done.append(level)
        print(_row(channel, level), flush=True)
        if not _holds(level):
            break
    if not (profile and done):
        return done, []
    # A pass of its own, so the sampling does not weigh on the measured levels.
    knee = done[-1].concurrency
    profiler = _Profiler(out / f"profile-{channel}-{knee}.txt", 10.0)
    await bench(knee, profiler)
    return done, profiler.top()


async def _sipp_echo(
    levels: list[int], out: Path, profile: bool
) -> tuple[list[BenchLevel], list[tuple[float, str]]]:
    """The capacity levels against SIPp's RTP echo."""
    sys.path.insert(0, str(ROOT / "tests"))
    from sip_peer_procs import start_sipp_uas  # the SIP tests' launcher

    case = load_cases(EXAMPLES / "dental_suite.yaml").cases[0]
    # An echo never greets: the persona speaks after a second instead of the case's
    # wait; and it answers at once, so the script runs twice to keep a call as long
    # (about 25 s) as against the oracle agent, longer than a level's ramp.
    case = case.model_copy(update={"wait_for_greeting_s": 1.0, "script": case.script * 2})
    store = RunStore(out / "runs")
    total = sum(levels) + (levels[-1] if profile else 0)
    sipp = await start_sipp_uas(
        "uas_echo.xml", rtp_echo=True, calls=total, timeout=3600, workdir=out / "sipp"
    )

    async def bench(concurrency: int, profiler: _Profiler | None) -> BenchLevel | None:
        config = BenchConfig(
            target=sipp.uri, case=case, concurrency=[concurrency], transcribe=False
        )
        report = await run_bench(
            config,
            store,
            bench_id=f"capacity-sipp-echo-{concurrency}",
            agent_pid=sipp.process.pid,
            progress=profiler.on_progress if profiler else None,
        )
        if report.status != "completed" or not report.levels:
            print(f"sipp-echo C={concurrency}: bench {report.status}: {report.error}")
            return None
        echo = await asyncio.to_thread(_echo_errors, report, store)
        return report.levels[0].model_copy(update={"oracle_error_ms": echo})

    async with sipp:
        return await _climb("sipp-echo", levels, out, profile, bench)


def _row(channel: str, lv: BenchLevel) -> str:
    o = lv.oracle_error_ms
    a = lv.agent_account
    assert o is not None
    echo = channel == "sipp-echo"  # an echo's "latency" is not one

    def f(value: float | None, digits: int = 1) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    return (
        f"{channel:<9} {lv.concurrency:>4} {lv.completed:>4}/{lv.calls:<4} "
        f"{lv.peak_concurrency:>4} "
        f"{f(None if echo else lv.latency_ms.p50):>7} {f(o.all_p95):>6} {f(o.all_max):>6} "
        f"{f(a.late_ms_p95 if a else None):>6} {f(a.harness_error_ms_p95 if a else None):>6} "
        f"{f(a.harness_error_ms_max if a else None):>6} {f(o.p95):>6} {f(o.max):>6} "
        f"{lv.degraded_turns:>4}/{lv.turns:<4}{'D' if lv.degraded else ' '} "
        f"{f(lv.cpu_percent, 0):>4} "
        f"{f(lv.agent_cpu_percent, 0):>4} {f(lv.cpu_ms_per_call_s, 1):>6} "
        f"{f(lv.rss_mb_per_call, 2):>6} {f(lv.loop_lag_ms_p99):>6} "
        f"{lv.audio_dropped_ms / 1000:>6.1f}"
    )


HEADER = (
    f"{'channel':<9} {'C':>4} {'ok':>9} {'peak':>4} {'lat p50':>7} {'orc95':>6} {'orcmax':>6} "
    f"{'late95':>6} {'err95':>6} {'errmax':>6} {'tru95':>6} {'trumax':>6} {'degraded':>10} "
    f"{'CPU%':>4} {'agt%':>4} {'ms/c·s':>6} {'MB/c':>6} {'lag99':>6} {'drop s':>6}"
)


async def _channel(
    channel: str, levels: list[int], out: Path, profile: bool
) -> tuple[list[BenchLevel], list[tuple[float, str]]]:
    case = load_cases(EXAMPLES / "dental_suite.yaml").cases[0]
    timing_log = out / f"agent-{channel}-timing.jsonl"
    proc, target = start_agent_process(
        "--light", "--no-stt", "--reply-delay-ms", str(DELAY_MS), "--timing-log", str(timing_log),
        log_path=out / f"agent-{channel}.log", channel=channel,
    )  # fmt: skip

    async def bench(concurrency: int, profiler: _Profiler | None) -> BenchLevel | None:
        config = BenchConfig(
            target=target,
            case=case,
            concurrency=[concurrency],
            oracle_delay_ms=DELAY_MS,
            transcribe=False,
        )
        report = await run_bench(
            config,
            RunStore(out / "runs"),
            bench_id=f"capacity-{channel}-{concurrency}",
            agent_pid=proc.pid,
            progress=profiler.on_progress if profiler else None,
            agent_timing_log=timing_log,
        )
        if report.status != "completed" or not report.levels:
            print(f"{channel} C={concurrency}: bench {report.status}: {report.error}")
            return None
        return report.levels[0]

    try:
        return await _climb(channel, levels, out, profile, bench)
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", nargs="+", default=["sip", "twilio-ws", "webrtc"])
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 10, 50, 100, 150])
    parser.add_argument("--profile", action="store_true", help="py-spy the last level")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.profile and not Path(PY_SPY).exists():
        parser.error("--profile needs py-spy on PATH (pip install py-spy; it is in the dev extra)")
    logger.remove()
    logger.add(sys.stderr, level="ERROR", diagnose=False)  # no variable values: credentials
    out = args.out or Path(tempfile.mkdtemp(prefix="loopcall-capacity-"))
    out.mkdir(parents=True, exist_ok=True)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; oracle D = {DELAY_MS:g} ms; runs under {out}\n"
    )
    print(HEADER)
    summary = []
    for channel in args.channels:
        if channel == "sipp-echo":
            levels, hot = asyncio.run(_sipp_echo(args.levels, out, args.profile))
        else:
            levels, hot = asyncio.run(_channel(channel, args.levels, out, args.profile))
        held = max((lv.concurrency for lv in levels if _holds(lv)), default=0)
        clean = max((lv.concurrency for lv in levels if _holds(lv) and not lv.degraded), default=0)
        summary.append((channel, held, clean, levels, hot))
    print(
        "\npeak: most calls connected at once; orc95/orcmax: oracle error "
        "|latency - D - transport| over every turn; late95: how "
        "late the oracle agent really sent its replies (its own timing log); err95/errmax: "
        "the harness's error against the agent's own account, every turn; tru95/trumax: "
        "the oracle error over the turns the harness vouches for (not degraded); degraded: "
        "turns the harness set aside, D when it marked the level degraded; CPU%/agt%: "
        "harness/agent process, % of one core; ms/c·s: harness CPU ms per second of a "
        "connected call; MB/c: resident memory per call; lag99: event-loop delay p99 (ms); "
        "drop s: agent audio the playout dropped as stale."
    )
    for channel, held, clean, levels, hot in summary:
        print(
            f"\n{channel}: capacity {held} calls (oracle within {BOUND_MS:g} ms p95 over every "
            f"turn, every call completed); {clean} with no level degraded"
        )
        if hot:
            print(f"  where the harness's time went at C={levels[-1].concurrency} (py-spy, self):")
            for share, name in hot:
                print(f"    {share:5.1f}%  {name}")


if __name__ == "__main__":
    main()
