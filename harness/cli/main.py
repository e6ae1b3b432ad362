"""The ``loopcall`` command: one module per subcommand, loaded here into one parser.

Stage: the user's entry point (the controller is the other).  ``run``, ``demo``
and ``bench`` go through the orchestrator; ``agent`` serves the reference agent;
``serve`` starts the controller; ``show``, ``runs``, ``report`` and ``compare``
read the store.  Each
command module imports its heavy dependencies when it runs, so ``loopcall --help``
stays quick.  Exit status: 0 on success (every run passed), 1 when a run failed
or did not pass, 2 for bad input, 130 after Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from harness import __version__
from harness.cli import (
    agent,
    bench,
    compare,
    demo,
    keys,
    report,
    run,
    runs,
    serve,
    show,
    twilio_emulator,
)
from harness.cli.common import err

__all__ = ["main"]

COMMANDS = (run, demo, agent, show, report, compare, serve, bench, keys, runs, twilio_emulator)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="loopcall",
        description="Call voice AI agents like a customer would; measure and score every call.",
    )
    parser.add_argument("--version", action="version", version=f"loopcall {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def _configure_logging(command: str) -> None:
    from loguru import logger

    from harness.logs import configure

    level = os.environ.get("LOOPCALL_LOG_LEVEL", "INFO" if command == "agent" else "WARNING")
    threshold = logger.level(level).no
    # pipecat warns about things that are fine here (no video track, ...): errors only.
    pipecat_threshold = max(threshold, logger.level("ERROR").no)

    def keep(record: Any) -> bool:
        name = record["name"] or ""
        floor = pipecat_threshold if name.startswith("pipecat") else threshold
        return bool(record["level"].no >= floor)

    # The handler's level lets loguru drop records below it before building them
    # (pipecat logs a trace line per audio frame: building each one cost the agent
    # a tenth of its CPU).  No variable values in tracebacks, and every secret the
    # process holds masked (``harness.logs``): a frame may hold a credential.
    configure(threshold, filter=keep)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args.command)
    try:
        code: int = args.handler(args)
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/yellow]")
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
