"""``loopcall agent``: serve the reference agent (``refagent``) as an agent under test.

Stage: the far end of a call, started on its own (``make demo``, the tests and the
benchmarks start it as a child process).  It prints one ``READY URL`` line once it
accepts calls.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
from pathlib import Path
from typing import Any

from harness.cli.common import err, listen_or_say

__all__ = ["add_parser", "execute"]


def add_parser(sub: Any) -> None:
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
        "--interrupt-after-ms",
        type=float,
        default=None,
        metavar="X",
        help="dynamics oracle: reply exactly X ms after the caller STARTS speaking "
        "(an interruption of known timing)",
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
    agent.add_argument(
        "--otlp-endpoint",
        default=None,
        metavar="URL",
        help="export pipecat's spans over OTLP/HTTP, e.g. http://127.0.0.1:4318/v1/traces "
        "(loopcall run's); needs the tracing extra",
    )
    agent.set_defaults(handler=execute)


def execute(args: argparse.Namespace) -> int:
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
    if args.interrupt_after_ms is not None and (
        args.interrupt_after_ms < 100 or args.reply_delay_ms is not None or args.echo
    ):
        err.print(
            "[red]error:[/red] --interrupt-after-ms must be at least 100 (the caller's onset "
            "is known 40 ms of speech after it) and goes without --reply-delay-ms and --echo"
        )
        return 2
    if Target(url="", channel="webrtc", host=args.host, port=args.port, path="").is_loopback:
        restrict_ice_to_loopback()
    options = AgentOptions(
        reply_delay_ms=args.reply_delay_ms,
        interrupt_after_ms=args.interrupt_after_ms,
        timing_log=args.timing_log,
        stt=not args.no_stt,
        echo=args.echo,
        voice=args.voice,
        light=args.light,
        otlp_endpoint=args.otlp_endpoint,
    )
    try:
        app = create_agent_app(options)
    except SpeechError as exc:
        err.print(f"[red]error:[/red] {exc}")
        return 2
    if args.otlp_endpoint:
        from refagent.tracing import start_tracing

        try:
            start_tracing(args.otlp_endpoint)
        except RuntimeError as exc:
            err.print(f"[red]error:[/red] {exc}")
            return 2
    app.state.agent.warm_up()
    if args.channel == "sip":
        return _serve_sip_agent(app.state.agent, args)
    if args.sip_auth:
        err.print("[red]error:[/red] --sip-auth needs --channel sip")
        return 2
    sock = listen_or_say(args.host, args.port)
    if sock is None:
        return 2
    port = sock.getsockname()[1]
    mode = _mode(args)
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
    mode = _mode(args)
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


def _mode(args: argparse.Namespace) -> str:
    """The READY line's note on how the agent times its replies."""
    mode = "" if args.reply_delay_ms is None else f" oracle D={args.reply_delay_ms:g} ms"
    if args.interrupt_after_ms is not None:
        mode += f" interrupts X={args.interrupt_after_ms:g} ms"
    return mode
