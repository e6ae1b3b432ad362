"""``loopcall bench``: the command line of the bench (arguments, live progress, report files).

Stage: an entry point beside ``loopcall run``.  Without ``--target`` it starts the
light reference agent as a latency oracle (``loopcall agent --light
--reply-delay-ms D``) on ``--channel`` and benches that: the harness's own
capacity.  With ``--server`` the bench runs on a controller (``POST /benches``)
and this command follows it and fetches its report.  Exit status: 0 when every
level ran with no failed call and no degraded level; 1 otherwise; 2 for bad
input; 130 after Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import time
import uuid
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.live import Live
from rich.table import Table

from harness.bench.models import BenchConfig, BenchReport
from harness.cases import CaseFileError, load_cases
from harness.models import Case

__all__ = ["add_bench_parser", "cmd_bench", "conclude", "parse_levels"]

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
DEFAULT_ORACLE_DELAY_MS = 400.0


def parse_levels(text: str) -> list[int]:
    """``"1,10,50"`` -> ``[1, 10, 50]`` (argparse type)."""
    try:
        levels = [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected numbers like 1,10,50, got {text!r}") from exc
    if not levels or any(level < 1 for level in levels):
        raise argparse.ArgumentTypeError("concurrency levels are whole numbers of at least 1")
    return levels


def add_bench_parser(sub: Any) -> None:
    bench = sub.add_parser(
        "bench",
        help="many calls at rising concurrency: the agent's latency and the harness's health",
        description="Run N calls per concurrency level, up to C at once, and report latency "
        "percentiles, failures, the latency oracle's error and the harness's own health.",
    )
    bench.add_argument(
        "--target",
        default=None,
        help="the agent (webrtc://, twilio-ws://, sip:, tel:); without it, the bundled light "
        "reference agent is started as a latency oracle on --channel",
    )
    bench.add_argument(
        "--channel",
        choices=["webrtc", "twilio-ws", "sip"],
        default="sip",
        help="without --target: the channel of the bundled oracle agent (default sip)",
    )
    bench.add_argument("--calls", type=int, default=None, help="calls per level (default: C)")
    bench.add_argument(
        "--concurrency",
        type=parse_levels,
        default=[1, 10],
        help="concurrency level(s), comma-separated, run in order (default 1,10)",
    )
    bench.add_argument(
        "--ramp",
        type=float,
        default=None,
        metavar="SECONDS",
        help="start a level's first calls over this many seconds (default 0.05 s per call)",
    )
    bench.add_argument(
        "--case", type=Path, default=None, help="case file (default: the demo's booking case)"
    )
    bench.add_argument(
        "--out", type=Path, default=None, help="where report.json, report.html and runs go"
    )
    bench.add_argument(
        "--oracle-delay-ms",
        type=float,
        default=None,
        help="the target replies D ms after the caller stops (loopcall agent --reply-delay-ms): "
        f"report the oracle error (default {DEFAULT_ORACLE_DELAY_MS:g} for the bundled agent)",
    )
    bench.add_argument(
        "--lag-bound-ms",
        type=float,
        default=20.0,
        help="a turn measured while the harness's loop ran later than this is degraded",
    )
    bench.add_argument(
        "--no-transcribe",
        action="store_true",
        help="skip the batch transcription of the agent's turns after each level",
    )
    bench.add_argument(
        "--caller",
        choices=["lean", "pipecat"],
        default="lean",
        help="lean: the cheap caller for load (default); pipecat: the full persona pipeline",
    )
    bench.add_argument("--connect-timeout", type=float, default=15.0, help="seconds")
    bench.add_argument("--media-timeout", type=float, default=10.0, help="seconds (0: off)")
    bench.add_argument(
        "--server",
        default=None,
        help="run the bench on a controller (loopcall serve); key from LOOPCALL_API_KEY",
    )


def _load_case(path: Path | None, console: Console) -> Case:
    loaded = load_cases(path or EXAMPLES / "dental_suite.yaml")
    if len(loaded.cases) > 1:
        console.print(
            f"[dim]{path or 'the demo suite'} holds {len(loaded.cases)} cases: "
            f"benching the first, {loaded.cases[0].name!r}[/dim]"
        )
    return loaded.cases[0]


def cmd_bench(args: argparse.Namespace, console: Console, err: Console) -> int:
    from harness.cli import _settings

    try:
        case = _load_case(args.case, console)
    except CaseFileError as exc:
        err.print(f"[red]error:[/red] {exc}")
        return 2
    if args.calls is not None and args.calls < 1:
        err.print("[red]error:[/red] --calls must be at least 1")
        return 2
    settings = _settings()
    if settings is None:
        return 2
    oracle = args.oracle_delay_ms
    if args.target is None and oracle is None:
        oracle = DEFAULT_ORACLE_DELAY_MS
    try:
        config = BenchConfig(
            # Without --target the bundled agent's address is known once it runs: a
            # stand-in until then (every other field is checked now, before it starts).
            target=args.target or "sip:pending@127.0.0.1",
            case=case,
            calls=args.calls,
            concurrency=args.concurrency,
            ramp_s=args.ramp,
            oracle_delay_ms=oracle,
            lag_bound_ms=args.lag_bound_ms,
            transcribe=not args.no_transcribe,
            caller=args.caller,
            connect_timeout_s=args.connect_timeout,
            media_timeout_s=args.media_timeout,
        )
    except ValueError as exc:
        err.print(f"[red]error:[/red] {exc}")
        return 2
    for level in config.concurrency:
        if config.calls_at(level) < level:
            console.print(
                f"[yellow]C={level} with --calls {config.calls}: at most "
                f"{config.calls} at once[/yellow]"
            )
    bench_id = str(uuid.uuid4())
    out = args.out or Path(f"bench-{datetime.now():%Y%m%d-%H%M%S}")
    if args.server:
        if args.target is None:
            err.print("[red]error:[/red] with --server, give the --target the controller calls")
            return 2
        from harness.bench.remote import run_on_server

        return run_on_server(config, args.server, settings, out, console, err)
    if args.target is not None:
        from telephony import TargetError, parse_target

        try:
            parse_target(args.target)
        except TargetError as exc:
            err.print(f"[red]error:[/red] {exc}")
            return 2
    try:
        report = asyncio.run(_bench_locally(config, args, settings, out, bench_id, console, err))
    except KeyboardInterrupt:
        err.print(f"[yellow]interrupted: what ran is under {out}/[/yellow]")
        return 130
    if report is None:
        return 1
    return conclude(report, out, console)


async def _bench_locally(
    config: BenchConfig,
    args: argparse.Namespace,
    settings: Any,
    out: Path,
    bench_id: str,
    console: Console,
    err: Console,
) -> BenchReport | None:
    from harness.bench.report import write_report
    from harness.bench.runner import run_bench
    from harness.cli import start_agent_process
    from harness.orchestrator import RunOptions
    from harness.store import RunStore

    await asyncio.to_thread(out.mkdir, parents=True, exist_ok=True)
    options = RunOptions(llm=settings.llm_config(), sip=settings.sip_credentials())
    agent: subprocess.Popen[bytes] | None = None
    timing_log = out / "agent-timing.jsonl"
    async with contextlib.AsyncExitStack() as stack:
        if args.target is None:
            console.print(
                f"starting the light reference agent on {args.channel} "
                f"(oracle D = {config.oracle_delay_ms:g} ms) ..."
            )
            try:
                agent, target = start_agent_process(
                    "--light",
                    "--reply-delay-ms",
                    str(config.oracle_delay_ms),
                    "--timing-log",
                    str(timing_log),
                    log_path=out / "agent.log",
                    channel=args.channel,
                )
            except RuntimeError as exc:
                err.print(f"[red]error:[/red] {exc} (see {out / 'agent.log'})")
                return None
            stack.callback(_stop, agent)
            config = config.model_copy(update={"target": target})
        elif config.target.lower().startswith("tel:"):
            options = await _phone(options, settings, stack, console)
            if options is None:
                return None
        console.print(
            f"bench {bench_id[:8]}: {config.target}, levels {config.concurrency}, "
            f"case {config.case.name!r}; writing to {out}/"
        )
        display = _Display(console)
        with display.live():
            task = asyncio.ensure_future(
                run_bench(
                    config,
                    RunStore(out / "runs"),
                    bench_id=bench_id,
                    options=options,
                    agent_pid=agent.pid if agent is not None else None,
                    progress=display.update,
                    agent_timing_log=timing_log if agent is not None else None,
                )
            )
            refresher = asyncio.ensure_future(display.refresh_every(1.0))
            try:
                report = await task
            finally:
                refresher.cancel()
        write_report(report, out)
        return report


async def _phone(
    options: Any, settings: Any, stack: contextlib.AsyncExitStack, console: Console
) -> Any:
    """A Twilio gateway for tel: targets (as ``loopcall run`` serves it)."""
    from fastapi import FastAPI

    from harness.cli import twilio_account_or_say
    from telephony.embedded import serve_embedded
    from telephony.twilio_phone import TwilioGateway

    account = twilio_account_or_say(settings)
    if account is None:
        return None
    gateway = TwilioGateway()
    app = FastAPI()
    app.include_router(gateway.router())
    await stack.enter_async_context(serve_embedded(app, "127.0.0.1", settings.gateway_port))
    console.print(f"Twilio gateway on 127.0.0.1:{settings.gateway_port}")
    return replace(options, twilio=account, gateway=gateway)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


class _Display:
    """The live progress: a table redrawn once a second (plain lines off a terminal)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.state: Any = None
        self._live: Live | None = None
        self._last_line = 0.0
        self._cpu = (time.monotonic(), _cpu_now())
        self._cpu_percent = 0.0

    @contextlib.contextmanager
    def live(self) -> Any:
        if not self.console.is_terminal:
            yield
            return
        with Live(self._table(), console=self.console, refresh_per_second=1) as live:
            self._live = live
            yield
        self._live = None

    def update(self, state: Any) -> None:
        self.state = state

    async def refresh_every(self, seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            now, cpu = time.monotonic(), _cpu_now()
            t0, c0 = self._cpu
            self._cpu_percent = 100.0 * (cpu - c0) / max(1e-6, now - t0)
            self._cpu = (now, cpu)
            if self._live is not None:
                self._live.update(self._table())
            elif self.state is not None and now - self._last_line >= 5.0:
                self._last_line = now
                self.console.print(self._line())

    def _line(self) -> str:
        s = self.state
        lat = _p(s.latencies, 50)
        return (
            f"level {s.level} C={s.concurrency} {s.phase}: {s.started}/{s.calls} started, "
            f"{s.live} live, {s.ended} ended, {s.failed} failed, latency p50 {lat}, "
            f"CPU {self._cpu_percent:.0f}%"
        )

    def _table(self) -> Table:
        table = Table(title="loopcall bench")
        for column in (
            "C", "phase", "started", "live", "ended", "failed", "latency p50", "p95",
            "oracle p95", "loop lag p99", "CPU %", "verdict",
        ):  # fmt: skip
            table.add_column(column, justify="right")
        s = self.state
        if s is None:
            return table
        for lv in s.done_levels:
            oracle = lv.oracle_error_ms
            table.add_row(
                str(lv.concurrency), "done", str(lv.calls), "0", str(lv.calls), str(lv.failed),
                _ms(lv.latency_ms.p50), _ms(lv.latency_ms.p95),
                _ms(oracle.p95 if oracle else None), _ms(lv.loop_lag_ms_p99),
                f"{lv.cpu_percent or 0:.0f}",
                "[red]degraded[/red]" if lv.degraded else "[green]ok[/green]",
            )  # fmt: skip
        if len(s.done_levels) < s.level:
            table.add_row(
                str(s.concurrency), s.phase, f"{s.started}/{s.calls}", str(s.live),
                str(s.ended), str(s.failed), _p(s.latencies, 50), _p(s.latencies, 95),
                "", "", f"{self._cpu_percent:.0f}", "",
            )  # fmt: skip
        return table


def _cpu_now() -> float:
    from harness.monitor import process_cpu_s

    return process_cpu_s()


def _p(values: list[float], q: float) -> str:
    return f"{np.percentile(values, q):.0f} ms" if values else "-"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def conclude(report: BenchReport, out: Path, console: Console, runs_where: str = "") -> int:
    table = Table(title=f"loopcall bench {report.id[:8]}: {report.target}")
    for column in (
        "C", "calls", "ok", "failed", "latency p50", "p90", "p95", "p99", "TTFA p50",
        "oracle err p95", "oracle err max", "CPU %", "loop lag p99", "degraded",
    ):  # fmt: skip
        table.add_column(column, justify="right")
    for lv in report.levels:
        oracle = lv.oracle_error_ms
        table.add_row(
            str(lv.concurrency), str(lv.calls), str(lv.completed), str(lv.failed),
            _ms(lv.latency_ms.p50), _ms(lv.latency_ms.p90), _ms(lv.latency_ms.p95),
            _ms(lv.latency_ms.p99), _ms(lv.time_to_first_audio_ms.p50),
            _ms(oracle.p95 if oracle else None), _ms(oracle.max if oracle else None),
            "-" if lv.cpu_percent is None else f"{lv.cpu_percent:.0f}",
            _ms(lv.loop_lag_ms_p99),
            f"[red]yes ({lv.degraded_turns}/{lv.turns} turns)[/red]" if lv.degraded
            else f"no ({lv.degraded_turns}/{lv.turns} turns)",
        )  # fmt: skip
    console.print(table)
    for lv in report.levels:
        for reason, count in lv.failures.items():
            console.print(f"[red]C={lv.concurrency}: {count} failed[/red]: {reason}")
        if lv.degraded:
            console.print(f"[red]C={lv.concurrency} degraded[/red]: {lv.degraded_reason}")
    runs_where = runs_where or f"{out}/runs/"
    console.print(f"report: {out / 'report.json'} and {out / 'report.html'}; runs in {runs_where}")
    if report.status != "completed":
        console.print(f"[red]bench {report.status}[/red]: {report.error}")
        return 1
    troubled = any(lv.failed or lv.degraded for lv in report.levels)
    return 1 if troubled else 0
