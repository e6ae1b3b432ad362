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
import uuid
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from harness.bench.models import BenchConfig, BenchReport
from harness.cases import CaseFileError, load_cases
from harness.cli.bench_display import Display, conclude
from harness.cli.bench_remote import run_on_server
from harness.cli.common import (
    EXAMPLES,
    console,
    err,
    settings_or_say,
    twilio_account_or_say,
)
from harness.cli.processes import start_agent_process, stop_process
from harness.models import Case
from runtime.tasks import cancel_and_wait, spawn
from telephony import parse_target, uses_twilio

__all__ = ["add_parser", "execute", "parse_levels"]

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


def add_parser(sub: Any) -> None:
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
    bench.set_defaults(handler=execute)


def _load_case(path: Path | None, console: Console) -> Case:
    loaded = load_cases(path or EXAMPLES / "dental_suite.yaml")
    if len(loaded.cases) > 1:
        console.print(
            f"[dim]{path or 'the demo suite'} holds {len(loaded.cases)} cases: "
            f"benching the first, {loaded.cases[0].name!r}[/dim]"
        )
    return loaded.cases[0]


def execute(args: argparse.Namespace) -> int:
    try:
        case = _load_case(args.case, console)
    except CaseFileError as exc:
        err.print(f"[red]error:[/red] {exc}")
        return 2
    if args.calls is not None and args.calls < 1:
        err.print("[red]error:[/red] --calls must be at least 1")
        return 2
    settings = settings_or_say()
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
    from harness.orchestrator import RunOptions
    from harness.pricing import prices_at
    from harness.scoring import make_judge
    from harness.store import RunStore

    await asyncio.to_thread(out.mkdir, parents=True, exist_ok=True)
    options = RunOptions(
        llm=settings.llm_config(),
        judge=make_judge(settings.judge_config()),
        sip=settings.sip_credentials(),
        prices=prices_at(settings.prices),
    )
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
            stack.callback(stop_process, agent)
            config = config.model_copy(update={"target": target})
        elif uses_twilio(parse_target(config.target)):
            options = await _phone(options, settings, stack, console)
            if options is None:
                return None
        console.print(
            f"bench {bench_id[:8]}: {config.target}, levels {config.concurrency}, "
            f"case {config.case.name!r}; writing to {out}/"
        )
        display = Display(console)
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
            refresher = spawn(display.refresh_every(1.0), name="bench-display")
            try:
                report = await task
            finally:
                await cancel_and_wait(refresher)
        write_report(report, out)
        return report


async def _phone(
    options: Any, settings: Any, stack: contextlib.AsyncExitStack, console: Console
) -> Any:
    """A Twilio gateway for tel: targets (as ``loopcall run`` serves it)."""
    from fastapi import FastAPI

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
