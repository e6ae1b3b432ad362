"""``loopcall run FILE --target URL``: run a case or suite file, here or on a controller.

Stage: the user's entry point into the orchestrator (``loopcall serve`` is the
other).  Exit status: 0 only when every run passed; 1 when a run failed or did
not pass; 2 for bad input; 130 after Ctrl-C (the call is hung up and stored).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.cases import LoadedCases
from harness.cli.common import console, err, load_or_say, settings_or_say, twilio_account_or_say
from harness.cli.summary import print_suite_report, print_summary
from harness.models import Run
from harness.store import RunStore

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from harness.ingest.otel import TraceDesk
    from harness.orchestrator import RunOptions
    from harness.settings import Settings

__all__ = ["add_parser", "execute", "run_suite"]


def add_parser(sub: Any) -> None:
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
    run.add_argument(
        "--ingest-host",
        default=None,
        help="address of the server agents report to (tools URL, events; default 127.0.0.1)",
    )
    run.add_argument("--ingest-port", type=int, default=None, help="its port (default: free)")
    run.add_argument(
        "--ingest-url",
        default=None,
        help="the base URL agents are given for it (a tunnel, for a remote agent)",
    )
    run.add_argument(
        "--otel-port",
        type=int,
        default=4318,
        help="take the agent's OpenTelemetry spans (OTLP/HTTP /v1/traces) on 127.0.0.1:PORT "
        "(4318, OTLP's own port, by default; 0: off); see docs/tracing.md",
    )
    run.set_defaults(handler=execute)


def execute(args: argparse.Namespace) -> int:
    loaded = load_or_say(args.file)
    if loaded is None:
        return 2
    if args.repeat < 1:
        err.print("[red]error:[/red] --repeat must be at least 1")
        return 2
    from telephony import TargetError, parse_target, uses_twilio

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
    from harness.pricing import prices_at
    from harness.scoring import make_judge

    settings = settings_or_say()
    if settings is None:
        return 2
    if args.server:
        return _run_on_server(loaded, args, settings)
    options = RunOptions(
        connect_timeout_s=args.connect_timeout,
        media_timeout_s=args.media_timeout if args.media_timeout > 0 else None,
        calibrate=not args.no_calibrate,
        llm=settings.llm_config(),
        judge=make_judge(settings.judge_config()),
        sip=settings.sip_credentials(),
        prices=prices_at(settings.prices),
    )
    if uses_twilio(parse_target(args.target)):
        from telephony.twilio_phone import TwilioGateway

        account = twilio_account_or_say(settings)
        if account is None:
            return 2
        options = replace(options, twilio=account, gateway=TwilioGateway())
        console.print(
            f"Twilio gateway on 127.0.0.1:{settings.gateway_port}; Twilio reaches it at "
            f"{account.public_base_url}"
        )
    overrides = {
        "ingest_host": args.ingest_host,
        "ingest_port": args.ingest_port,
        "ingest_public_url": args.ingest_url,
    }
    settings = settings.model_copy(update={k: v for k, v in overrides.items() if v is not None})
    if args.otel_port > 0:
        from harness.ingest.otel import TraceDesk

        options = replace(options, traces=TraceDesk())
    return run_suite(
        loaded,
        args.target,
        args.out,
        args.repeat,
        options,
        settings.gateway_port,
        settings,
        args.otel_port,
    )


def _run_on_server(loaded: LoadedCases, args: argparse.Namespace, settings: Settings) -> int:
    """Submit the cases to the controller as one request, print its events, then the summary."""
    server: str = args.server
    from harness.cli.client import ControllerClient, ControllerError

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
    print_summary(runs, f"on the controller at {server}")
    if loaded.suite_name or args.repeat > 1:
        print_suite_report(runs)
    return 0 if runs and all(r.passed for r in runs) else 1


def run_suite(
    loaded: LoadedCases,
    target: str,
    out: Path,
    repeat: int,
    options: RunOptions | None = None,
    gateway_port: int = 0,
    settings: Settings | None = None,
    otel_port: int = 0,
) -> int:
    from harness.orchestrator import RunOptions

    store = RunStore(out)
    options = options or RunOptions()
    runs: list[Run] = []
    try:
        asyncio.run(
            _execute(
                loaded, target, store, options, repeat, runs, gateway_port, settings, otel_port
            )
        )
    except KeyboardInterrupt:
        print_summary(runs, f"stored under {store.root}/")
        if loaded.suite_name or repeat > 1:
            print_suite_report(runs)
        err.print(
            "[yellow]interrupted: the current call was hung up and stored as cancelled[/yellow]"
        )
        return 130
    print_summary(runs, f"stored under {store.root}/")
    if loaded.suite_name or repeat > 1:
        print_suite_report(runs)
    return 0 if runs and all(r.passed for r in runs) else 1


async def _execute(
    loaded: LoadedCases,
    target: str,
    store: RunStore,
    options: RunOptions,
    repeat: int,
    runs: list[Run],
    gateway_port: int = 0,
    settings: Settings | None = None,
    otel_port: int = 0,
) -> None:
    import uuid

    from harness.ingest import serve_ingest
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
        if options.inboxes is None:
            ingest = await stack.enter_async_context(
                serve_ingest(
                    settings.ingest_host if settings else "127.0.0.1",
                    settings.ingest_port if settings else 0,
                    settings.ingest_public_url if settings else None,
                )
            )
            options = replace(options, inboxes=ingest.inboxes, agent_base_url=ingest.base_url)
            console.print(
                f"[dim]agents reach their tools and event webhook at {ingest.base_url}[/dim]"
            )
        if options.traces is not None and otel_port > 0:
            await stack.enter_async_context(_serve_traces(options.traces, otel_port))
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


@contextlib.asynccontextmanager
async def _serve_traces(desk: TraceDesk, port: int) -> AsyncIterator[None]:
    """``POST /v1/traces`` on 127.0.0.1 for the runs of this command (loopback: the
    user's own machine, so no key); a port already taken only costs the traces."""
    from fastapi import FastAPI

    from harness.ingest.otel import ALL_RUNS, UNTRACED, traces_router
    from telephony.embedded import EmbeddedServer

    async def anyone(_request: object) -> str:
        return ALL_RUNS

    app = FastAPI(telemetry=UNTRACED)
    app.include_router(traces_router(desk.accept, anyone))
    server = EmbeddedServer(app)
    try:
        await server.start("127.0.0.1", port)
    except OSError as exc:
        err.print(f"[yellow]OpenTelemetry traces off: 127.0.0.1:{port}: {exc.strerror}[/yellow]")
        yield
        return
    console.print(f"OpenTelemetry traces: http://127.0.0.1:{port}/v1/traces")
    try:
        yield
    finally:
        await server.close()
