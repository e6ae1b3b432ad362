"""The ``loopcall`` command: run cases, start the reference agent, show stored runs.

Stage: the user's entry point (the controller is the other).  ``run`` and
``demo`` go through the orchestrator; ``agent`` serves the reference agent;
``show`` and ``runs`` read the store.  Exit status: 0 only when every run passed;
1 when a run failed or did not pass; 2 for bad input; 130 after Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from harness import __version__
from harness.cases import CaseFileError, LoadedCases, load_cases
from harness.models import Run
from harness.store import RunNotFound, RunStore

if TYPE_CHECKING:
    from harness.orchestrator import RunOptions
    from harness.settings import Settings
    from telephony.twilio_phone import TwilioAccount

__all__ = ["main"]

console = Console(highlight=False, width=None if sys.stdout.isatty() else 150)
err = Console(stderr=True, highlight=False)
EXAMPLES = Path(__file__).parent / "examples"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="loopcall", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"loopcall {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a case or suite file against a target")
    run.add_argument("file", type=Path, help="case or suite YAML")
    run.add_argument("--target", default=None, help="e.g. webrtc://127.0.0.1:7860/api/offer")
    run.add_argument(
        "--agent", default=None, help="with --server: a stored agent's id instead of --target"
    )
    run.add_argument("--out", type=Path, default=Path("runs"), help="where runs are stored")
    run.add_argument("--repeat", type=int, default=1, help="run every case N times")
    run.add_argument("--no-calibrate", action="store_true", help="skip the echo calibration")
    run.add_argument(
        "--server",
        default=None,
        help="submit to a controller (loopcall serve) and follow it; key from LOOPCALL_API_KEY",
    )
    run.add_argument("--connect-timeout", type=float, default=15.0, help="seconds")
    run.add_argument(
        "--media-timeout",
        type=float,
        default=10.0,
        help="end the run as failed when the agent sends no audio for this long (seconds)",
    )

    demo = sub.add_parser("demo", help="start the reference agent and run the sample suite")
    demo.add_argument("--out", type=Path, default=Path("runs"))
    demo.add_argument("--reply-delay-ms", type=float, default=None)
    demo.add_argument("--suite", type=Path, default=EXAMPLES / "dental_suite.yaml")

    agent = sub.add_parser("agent", help="serve the reference agent under test")
    agent.add_argument(
        "--channel",
        choices=["webrtc", "twilio-ws", "sip"],
        default="webrtc",
        help="which target to announce; over HTTP the agent answers both /api/offer and /ws; "
        "sip: a SIP phone on --port (UDP and TCP) instead",
    )
    agent.add_argument("--host", default="127.0.0.1")
    agent.add_argument("--port", type=int, default=7860)
    agent.add_argument(
        "--reply-delay-ms",
        type=float,
        default=None,
        help="latency oracle: reply exactly D ms after the caller's last sample",
    )
    agent.add_argument(
        "--timing-log", type=Path, default=None, help="append one JSON line per reply"
    )
    agent.add_argument(
        "--voice",
        default=None,
        help="engine:voice (default piper:joe if installed, else flite:rms)",
    )
    agent.add_argument("--echo", action="store_true", help="echo the caller (calibration)")
    agent.add_argument("--no-stt", action="store_true", help="do not transcribe the caller")
    agent.add_argument(
        "--light",
        action="store_true",
        help="no pipeline and no STT, phone lines at 8 kHz: a cheap agent for load tests",
    )
    agent.add_argument(
        "--sip-auth",
        default=None,
        metavar="USER:PASSWORD",
        help="sip: challenge every INVITE (401) and accept only these digest credentials",
    )

    show = sub.add_parser("show", help="print a stored run (or, with --view cekura, a suite run)")
    show.add_argument(
        "run_id", help="a run id or unique prefix; for --view cekura also a suite run id"
    )
    show.add_argument(
        "--view", choices=["loopcall", "vapi", "yappr", "cekura", "text"], default="loopcall"
    )
    show.add_argument("--out", type=Path, default=Path("runs"))

    serve = sub.add_parser("serve", help="start the controller (REST API, worker pool, database)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    serve.add_argument("--db", default=None, help="sqlite:///PATH (default) or postgresql://...")
    serve.add_argument("--data-dir", type=Path, default=None, help="where recordings are kept")
    serve.add_argument("--concurrency", type=int, default=None, help="calls at once")
    serve.add_argument("--no-calibrate", action="store_true", help="skip the echo calibration")
    serve.add_argument(
        "--paused", action="store_true", help="accept and store runs, but do not start them"
    )

    from harness.bench.cli import add_bench_parser

    add_bench_parser(sub)

    keys = sub.add_parser("keys", help="API keys for the controller")
    keys.add_argument("action", choices=["create", "list", "revoke"])
    keys.add_argument("name", nargs="?", help="the key's name (create, revoke)")
    keys.add_argument("--db", default=None, help="the controller's database URL")

    runs = sub.add_parser("runs", help="list stored runs")
    runs.add_argument("--out", type=Path, default=Path("runs"))

    emulator = sub.add_parser(
        "twilio-emulator",
        help="a local Twilio (Calls API, TwiML <Connect><Stream>, media streams, callbacks)",
    )
    emulator.add_argument("--host", default="127.0.0.1")
    emulator.add_argument("--port", type=int, default=8089)
    emulator.add_argument(
        "--account-sid", default=None, help="default: $TWILIO_ACCOUNT_SID or a generated one"
    )
    emulator.add_argument(
        "--auth-token", default=None, help="default: $TWILIO_AUTH_TOKEN or a generated one"
    )
    emulator.add_argument(
        "--number",
        action="append",
        default=[],
        metavar="+E164=WHAT",
        help="a phone number and who answers it: ws://HOST:PORT/ws (a media-stream agent), "
        "voice:URL (a voice webhook), busy, no-answer or failed; repeat for more numbers",
    )
    emulator.add_argument(
        "--verified",
        action="append",
        default=[],
        metavar="+E164",
        help="a caller id you may call from besides your numbers (repeatable)",
    )
    return parser


def _configure_logging(command: str) -> None:
    from loguru import logger

    level = os.environ.get("LOOPCALL_LOG_LEVEL", "INFO" if command == "agent" else "WARNING")
    threshold = logger.level(level).no
    # pipecat warns about things that are fine here (no video track, ...): errors only.
    pipecat_threshold = max(threshold, logger.level("ERROR").no)

    def keep(record: Any) -> bool:
        name = record["name"] or ""
        floor = pipecat_threshold if name.startswith("pipecat") else threshold
        return bool(record["level"].no >= floor)

    logger.remove()
    # The handler's level lets loguru drop records below it before building them
    # (pipecat logs a trace line per audio frame: building each one cost the agent
    # a tenth of its CPU).
    logger.add(sys.stderr, level=threshold, filter=keep)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _configure_logging(args.command)
    handlers = {
        "serve": _cmd_serve,
        "keys": _cmd_keys,
        "run": _cmd_run,
        "demo": _cmd_demo,
        "agent": _cmd_agent,
        "show": _cmd_show,
        "runs": _cmd_runs,
        "twilio-emulator": _cmd_twilio_emulator,
        "bench": _cmd_bench,
    }
    try:
        return handlers[args.command](args)
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/yellow]")
        return 130


# ----------------------------------------------------------------------- run


def _load(path: Path) -> LoadedCases | None:
    try:
        return load_cases(path)
    except CaseFileError as exc:
        err.print(f"[red]error:[/red] {exc}", markup=True)
        return None


def _cmd_run(args: argparse.Namespace) -> int:
    loaded = _load(args.file)
    if loaded is None:
        return 2
    if args.repeat < 1:
        err.print("[red]error:[/red] --repeat must be at least 1")
        return 2
    from telephony import TargetError, parse_target

    if (args.target is None) == (args.agent is None):
        err.print("[red]error:[/red] give --target URL, or --agent ID with --server")
        return 2
    if args.agent is not None and not args.server:
        err.print("[red]error:[/red] --agent names an agent stored on a controller: add --server")
        return 2
    try:
        if args.target is not None:
            parse_target(args.target)
    except TargetError as exc:
        err.print(f"[red]error:[/red] {exc}")
        return 2
    from harness.orchestrator import RunOptions

    settings = _settings()
    if settings is None:
        return 2
    if args.server:
        return _run_on_server(loaded, args, settings)
    options = RunOptions(
        connect_timeout_s=args.connect_timeout,
        media_timeout_s=args.media_timeout if args.media_timeout > 0 else None,
        calibrate=not args.no_calibrate,
        llm=settings.llm_config(),
        sip=settings.sip_credentials(),
    )
    if args.target.lower().startswith("tel:"):
        from telephony.twilio_phone import TwilioGateway

        account = twilio_account_or_say(settings)
        if account is None:
            return 2
        options = replace(options, twilio=account, gateway=TwilioGateway())
        console.print(
            f"Twilio gateway on 127.0.0.1:{settings.gateway_port}; Twilio reaches it at "
            f"{account.public_base_url}"
        )
    return _run_suite(loaded, args.target, args.out, args.repeat, options, settings.gateway_port)


def _run_on_server(loaded: LoadedCases, args: argparse.Namespace, settings: Settings) -> int:
    """Submit the cases to the controller as one request, print its events, then the summary."""
    server: str = args.server
    from harness.client import ControllerClient, ControllerError

    key = settings.api_key.get_secret_value() if settings.api_key else None

    async def go() -> list[Run]:
        async with ControllerClient(server, key) as client:
            ids = await client.submit(
                loaded.cases,
                suite_name=loaded.suite_name,
                target=args.target,
                agent_id=args.agent,
                frequency=args.repeat,
            )
            console.print(f"submitted {len(ids)} run(s) to {server}")
            for index, run_id in enumerate(ids, start=1):
                async for event in client.events(run_id):
                    if event["kind"] == "progress":
                        console.print(
                            f"[dim]{run_id[:8]}[/dim] [{index}/{len(ids)}] {event['message']}"
                        )
            return [await client.get(run_id) for run_id in ids]

    try:
        runs = asyncio.run(go())
    except ControllerError as exc:
        err.print(f"[red]error:[/red] {exc}")
        return 1
    _summary(runs, f"on the controller at {server}")
    return 0 if runs and all(r.passed for r in runs) else 1


def twilio_account_or_say(settings: Settings) -> TwilioAccount | None:
    """The Twilio account for tel: targets, or None after saying what to set."""
    account = settings.twilio_account()
    if account is None:
        err.print(
            "[red]error:[/red] tel: targets place calls through Twilio: set "
            "LOOPCALL_TWILIO_ACCOUNT_SID, LOOPCALL_TWILIO_AUTH_TOKEN, "
            "LOOPCALL_TWILIO_FROM_NUMBER and LOOPCALL_PUBLIC_BASE_URL (see the README)"
        )
    return account


def _settings() -> Settings | None:
    """``LOOPCALL_*`` settings, or None after printing what is wrong with them."""
    from pydantic import ValidationError

    from harness.settings import Settings

    try:
        return Settings()
    except ValidationError as exc:
        for error in exc.errors():
            name = "LOOPCALL_" + "_".join(str(p) for p in error["loc"]).upper()
            err.print(f"[red]error:[/red] {name}: {error['msg']}")
        return None


def _run_suite(
    loaded: LoadedCases,
    target: str,
    out: Path,
    repeat: int,
    options: RunOptions | None = None,
    gateway_port: int = 0,
) -> int:
    from harness.orchestrator import RunOptions

    store = RunStore(out)
    options = options or RunOptions()
    runs: list[Run] = []
    try:
        asyncio.run(_execute(loaded, target, store, options, repeat, runs, gateway_port))
    except KeyboardInterrupt:
        _summary(runs, f"stored under {store.root}/")
        err.print(
            "[yellow]interrupted: the current call was hung up and stored as cancelled[/yellow]"
        )
        return 130
    _summary(runs, f"stored under {store.root}/")
    return 0 if runs and all(r.passed for r in runs) else 1


async def _execute(
    loaded: LoadedCases,
    target: str,
    store: RunStore,
    options: RunOptions,
    repeat: int,
    runs: list[Run],
    gateway_port: int = 0,
) -> None:
    import uuid

    from harness.orchestrator import EchoCalibrator, run_case

    suite_run_id = str(uuid.uuid4()) if loaded.suite_name else None
    total = len(loaded.cases) * repeat
    async with contextlib.AsyncExitStack() as stack:
        if options.gateway is not None:
            from fastapi import FastAPI

            from telephony.embedded import serve_embedded

            app = FastAPI()
            app.include_router(options.gateway.router())
            await stack.enter_async_context(serve_embedded(app, "127.0.0.1", gateway_port))
        calibrator = await stack.enter_async_context(EchoCalibrator())
        for i in range(repeat):
            for j, case in enumerate(loaded.cases):
                index = i * len(loaded.cases) + j + 1

                def progress(run: Run, message: str, index: int = index) -> None:
                    console.print(
                        f"[dim]{run.id[:8]}[/dim] [{index}/{total}] {run.case.name}: {message}"
                    )

                run = await run_case(
                    case,
                    target,
                    store,
                    options=options,
                    calibrator=calibrator,
                    suite_name=loaded.suite_name,
                    suite_run_id=suite_run_id,
                    progress=progress,
                )
                runs.append(run)


def _fmt(value: float | None, unit: str = "") -> str:
    return "-" if value is None else f"{value:.0f}{unit}"


def _summary(runs: list[Run], where: str) -> None:
    if not runs:
        return
    table = Table(title=f"loopcall: {len(runs)} run(s), {where}")
    for column in (
        "run",
        "case",
        "status",
        "ended by",
        "turns",
        "latency p50",
        "latency p90",
        "transport rtt",
        "score",
        "result",
    ):
        table.add_column(column)
    for run in runs:
        ev = run.evaluation
        verdict = "[green]PASS[/green]" if run.passed else "[red]FAIL[/red]"
        table.add_row(
            run.id[:8],
            run.case.name,
            run.status,
            run.termination_reason or "-",
            str(len(run.turns)),
            _fmt(run.metrics.latency_ms.p50, " ms"),
            _fmt(run.metrics.latency_ms.p90, " ms"),
            _fmt(run.metrics.transport_rtt_ms, " ms"),
            "-" if ev is None else f"{ev.score:.0f}",
            verdict,
        )
    console.print(table)
    suite_runs = sorted({r.suite_run_id for r in runs if r.suite_run_id})
    for suite_run_id in suite_runs:
        console.print(f"suite run {suite_run_id} (loopcall show {suite_run_id[:8]} --view cekura)")
    for run in runs:
        if run.error:
            console.print(f"[red]{run.id[:8]}[/red] {run.case.name}: {run.error}")


def _cmd_bench(args: argparse.Namespace) -> int:
    from harness.bench.cli import cmd_bench

    return cmd_bench(args, console, err)


# ---------------------------------------------------------------------- demo


def start_agent_process(
    *extra: str, log_path: Path, host: str = "127.0.0.1", channel: str = "webrtc"
) -> tuple[subprocess.Popen[bytes], str]:
    """Start `loopcall agent` on a free port; return it and its target once it accepts calls."""
    cmd = [
        sys.executable,
        "-m",
        "harness.cli",
        "agent",
        "--channel",
        channel,
        "--host",
        host,
        "--port",
        "0",
        *extra,
    ]
    log = log_path.open("wb")
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=log, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    log.close()
    assert proc.stdout is not None
    for raw in proc.stdout:
        line = raw.decode(errors="replace").strip()
        if line.startswith("READY "):
            url = line.split()[1]
            if url.startswith("sip:"):
                return proc, url
            return proc, f"{channel}://" + url.split("://", 1)[1]
    proc.wait()
    raise RuntimeError(f"the reference agent exited with status {proc.returncode}")


def start_controller_process(
    db_url: str,
    *extra: str,
    data_dir: Path,
    log_path: Path,
    env: dict[str, str] | None = None,
) -> tuple[subprocess.Popen[bytes], str]:
    """Start `loopcall serve` on a free port; return it and its URL once it serves."""
    cmd = [
        sys.executable,
        "-m",
        "harness.cli",
        "serve",
        "--port",
        "0",
        "--db",
        db_url,
        "--data-dir",
        str(data_dir),
        *extra,
    ]
    log = log_path.open("wb")
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=log,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    log.close()
    assert proc.stdout is not None
    line = proc.stdout.readline().decode(errors="replace").strip()
    if not line.startswith("READY "):
        proc.kill()
        proc.wait()
        raise RuntimeError(f"the controller did not start (see {log_path}): {line!r}")
    return proc, line.split()[1]


def _cmd_demo(args: argparse.Namespace) -> int:
    from harness.orchestrator import RunOptions

    loaded = _load(args.suite)
    if loaded is None:
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    extra = ["--timing-log", str(args.out / "agent-timing.jsonl")]
    if args.reply_delay_ms is not None:
        extra += ["--reply-delay-ms", str(args.reply_delay_ms)]
    console.print("starting the reference agent (loading its voice and STT) ...")
    log_path = args.out / "agent.log"
    try:
        proc, target = start_agent_process(*extra, log_path=log_path)
    except RuntimeError as exc:
        err.print(f"[red]error:[/red] {exc} (see {log_path})")
        return 1
    try:
        console.print(f"reference agent ready; running '{loaded.suite_name}' against {target}")
        settings = _settings()
        if settings is None:
            return 2
        return _run_suite(loaded, target, args.out, 1, RunOptions(llm=settings.llm_config()))
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


# --------------------------------------------------------------------- agent


def _cmd_agent(args: argparse.Namespace) -> int:
    import uvicorn

    from audio.speech import SpeechError
    from refagent.server import AgentOptions, create_agent_app
    from telephony.base import Target
    from telephony.loopback import restrict_ice_to_loopback

    if args.reply_delay_ms is not None and args.reply_delay_ms < 150:
        err.print(
            "[red]error:[/red] --reply-delay-ms must be at least 150 "
            "(the end of speech is decided with a hangover shorter than the delay)"
        )
        return 2
    if Target(url="", channel="webrtc", host=args.host, port=args.port, path="").is_loopback:
        restrict_ice_to_loopback()
    options = AgentOptions(
        reply_delay_ms=args.reply_delay_ms,
        timing_log=args.timing_log,
        stt=not args.no_stt,
        echo=args.echo,
        voice=args.voice,
        light=args.light,
    )
    try:
        app = create_agent_app(options)
    except SpeechError as exc:
        err.print(f"[red]error:[/red] {exc}")
        return 2
    app.state.agent.warm_up()
    if args.channel == "sip":
        return _serve_sip_agent(app.state.agent, args)
    if args.sip_auth:
        err.print("[red]error:[/red] --sip-auth needs --channel sip")
        return 2
    sock = _listen(args.host, args.port)
    if sock is None:
        return 2
    port = sock.getsockname()[1]
    mode = "" if args.reply_delay_ms is None else f" oracle D={args.reply_delay_ms:g} ms"
    mode += " light" if args.light else ""
    if args.light and args.channel == "twilio-ws":
        return _serve_light_streams(app.state.agent, sock, f"ws://{args.host}:{port}/ws{mode}")
    # One machine-readable line once the socket accepts connections (the demo and tests wait on it).
    url = (
        f"ws://{args.host}:{port}/ws"
        if args.channel == "twilio-ws"
        else f"http://{args.host}:{port}/api/offer"
    )
    print(f"READY {url}{mode}", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    server.run(sockets=[sock])
    return 0


def _serve_light_streams(agent: Any, sock: socket.socket, ready: str) -> int:
    """The light agent's media streams, without a web framework, until SIGTERM or Ctrl-C."""
    from refagent.light_ws import serve_light_streams

    async def serve() -> int:
        server = await serve_light_streams(agent, sock)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        print(f"READY {ready}", flush=True)
        try:
            await stop.wait()
        finally:
            server.close()
        return 0

    return asyncio.run(serve())


def _serve_sip_agent(agent: Any, args: argparse.Namespace) -> int:
    """Run the reference agent as a SIP phone until SIGTERM or Ctrl-C."""
    from refagent.sip_line import SipLine

    credentials = None
    if args.sip_auth:
        user, colon, password = args.sip_auth.partition(":")
        if not colon or not user:
            err.print("[red]error:[/red] --sip-auth wants USER:PASSWORD")
            return 2
        credentials = (user, password)
    mode = "" if args.reply_delay_ms is None else f" oracle D={args.reply_delay_ms:g} ms"
    mode += " light" if args.light else ""

    async def serve() -> int:
        line = SipLine(agent, args.host, args.port, credentials=credentials)
        try:
            await line.start()
        except OSError as exc:
            err.print(f"[red]error:[/red] cannot listen for SIP on {args.host}:{args.port}: {exc}")
            return 2
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        print(f"READY {line.uri}{mode}", flush=True)
        try:
            await stop.wait()
        finally:
            await line.close()
        return 0

    return asyncio.run(serve())


# --------------------------------------------------------------------- serve


def _listen(host: str, port: int) -> socket.socket | None:
    """A listening socket, or None after saying why it could not be had."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        err.print(f"[red]error:[/red] cannot listen on {host}:{port}: {exc.strerror}")
        sock.close()
        return None
    sock.listen(512)
    return sock


def _cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from harness.api import create_app

    settings = _settings()
    if settings is None:
        return 2
    overrides = {"db_url": args.db, "data_dir": args.data_dir, "concurrency": args.concurrency}
    settings = settings.model_copy(update={k: v for k, v in overrides.items() if v is not None})
    sock = _listen(args.host, args.port)
    if sock is None:
        return 2
    port = sock.getsockname()[1]
    app = create_app(settings, calibrate=not args.no_calibrate, paused=args.paused)
    print(f"READY http://{args.host}:{port}", flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
    return 0


def _cmd_twilio_emulator(args: argparse.Namespace) -> int:
    import secrets

    import uvicorn

    from telephony.twilio_emulator import EmulatorConfig, create_emulator_app, parse_number_spec

    try:
        numbers = tuple(parse_number_spec(spec) for spec in args.number)
    except ValueError as exc:
        err.print(f"[red]error:[/red] {exc}")
        return 2
    account_sid = (
        args.account_sid or os.environ.get("TWILIO_ACCOUNT_SID") or "AC" + secrets.token_hex(16)
    )
    auth_token = args.auth_token or os.environ.get("TWILIO_AUTH_TOKEN") or secrets.token_hex(16)
    config = EmulatorConfig(
        account_sid=account_sid,
        auth_token=auth_token,
        numbers=numbers,
        verified_callers=tuple(args.verified),
    )
    sock = _listen(args.host, args.port)
    if sock is None:
        return 2
    port = sock.getsockname()[1]
    print(f"READY http://{args.host}:{port}", flush=True)
    print(f"account {account_sid}  auth token {auth_token}", flush=True)
    for number in numbers:
        answer = number.stream_url or number.voice_url or number.behaviour
        print(f"number {number.number} -> {answer}", flush=True)
    uvicorn.Server(uvicorn.Config(create_emulator_app(config), log_level="warning")).run(
        sockets=[sock]
    )
    return 0


def _cmd_keys(args: argparse.Namespace) -> int:
    from harness.db import create_engine, migrate
    from harness.db.keys import ApiKeyError, KeyRepository

    settings = _settings()
    if settings is None:
        return 2
    if args.action in ("create", "revoke") and not args.name:
        err.print(f"[red]error:[/red] `loopcall keys {args.action}` needs a NAME")
        return 2

    async def act() -> int:
        engine = create_engine(args.db or settings.db_url)
        try:
            await migrate(engine)
            keys = KeyRepository(engine)
            if args.action == "create":
                print(await keys.create(args.name))
            elif args.action == "revoke":
                await keys.revoke(args.name)
                console.print(f"revoked {args.name}")
            else:
                for key in await keys.list():
                    state = f"revoked {key.revoked_at:%Y-%m-%d}" if key.revoked_at else "active"
                    console.print(
                        f"{key.name}\t{key.prefix}...\t{key.created_at:%Y-%m-%d}\t{state}"
                    )
            return 0
        except ApiKeyError as exc:
            err.print(f"[red]error:[/red] {exc}")
            return 2
        finally:
            await engine.dispose()

    return asyncio.run(act())


# ---------------------------------------------------------------------- read


def _cmd_show(args: argparse.Namespace) -> int:
    from harness.views import render

    store = RunStore(args.out)
    try:
        run = store.load(args.run_id)
    except RunNotFound as exc:
        if args.view == "cekura":  # a suite run's id: one Cekura result for all its runs
            try:
                suite = store.suite_run(args.run_id)
            except RunNotFound:
                err.print(f"[red]error:[/red] {exc} (nor a suite run)")
                return 2
            print(json.dumps(render(suite, "cekura"), indent=2, default=str))
            return 0
        err.print(f"[red]error:[/red] {exc}")
        return 2
    if args.view == "text":
        from harness.views.text import to_text

        print(to_text(run))
    else:
        print(json.dumps(render(run, args.view), indent=2, default=str))
    return 0


def _cmd_runs(args: argparse.Namespace) -> int:
    store = RunStore(args.out)
    _summary(store.list(), f"stored under {store.root}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
