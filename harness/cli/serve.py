"""``loopcall serve``: the controller (REST API, dispatcher, database).

Stage: the server-mode entry point; ``harness.api.create_app`` is the controller.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from harness.cli.common import listen_or_say, settings_or_say

__all__ = ["add_parser", "execute"]


def add_parser(sub: Any) -> None:
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
    serve.set_defaults(handler=execute)


def execute(args: argparse.Namespace) -> int:
    import uvicorn

    from harness.api import create_app

    settings = settings_or_say()
    if settings is None:
        return 2
    overrides = {"db_url": args.db, "data_dir": args.data_dir, "concurrency": args.concurrency}
    settings = settings.model_copy(update={k: v for k, v in overrides.items() if v is not None})
    sock = listen_or_say(args.host, args.port)
    if sock is None:
        return 2
    port = sock.getsockname()[1]
    if settings.ingest_public_url is None and settings.public_base_url is None:
        # Agents reach the tools URL and webhook at the controller's own address.
        shown = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host
        shown = f"[{shown}]" if ":" in shown else shown
        settings = settings.model_copy(update={"ingest_public_url": f"http://{shown}:{port}"})
    app = create_app(settings, calibrate=not args.no_calibrate, paused=args.paused)
    print(f"READY http://{args.host}:{port}", flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
    return 0
