"""``loopcall twilio-emulator``: a local Twilio for CI (``telephony/twilio_emulator``).

Stage: a carrier stand-in beside loopcall: the Calls API, TwiML ``<Connect><Stream>``,
media streams, signed status callbacks.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from harness.cli.common import err, listen_or_say

__all__ = ["add_parser", "execute"]


def add_parser(sub: Any) -> None:
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
    emulator.set_defaults(handler=execute)


def execute(args: argparse.Namespace) -> int:
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
    sock = listen_or_say(args.host, args.port)
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
