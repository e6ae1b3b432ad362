"""``loopcall show``: one stored run (or, with ``--view cekura``, a suite run) in a chosen shape.

Stage: reading the store (``harness/store.py``) through the views (``harness/views``).
A run is named by its id or a unique prefix (looked up under ``--out``), or by a
path: its ``run.json`` or its run folder, wherever they were copied.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from rich.markup import escape

from harness.cli.common import err
from harness.models import Run
from harness.store import RunNotFound, RunStore, read_run

__all__ = ["add_parser", "execute"]


def add_parser(sub: Any) -> None:
    show = sub.add_parser("show", help="print a stored run (or, with --view cekura, a suite run)")
    show.add_argument(
        "run_id",
        metavar="RUN",
        help="a run id or unique prefix (looked up under --out), a run.json, or a run folder; "
        "for --view cekura also a suite run id",
    )
    show.add_argument(
        "--view",
        choices=["loopcall", "vapi", "yappr", "cekura", "text"],
        default="loopcall",
        help="the shape to print: loopcall's Run record (default), a peer's API "
        "(vapi, yappr, cekura) or a readable transcript (text)",
    )
    show.add_argument(
        "--out",
        type=Path,
        default=Path("runs"),
        help="where runs are stored, as `loopcall run --out` wrote them (default: runs); "
        "ids and prefixes are looked up there",
    )
    show.set_defaults(handler=execute)


def _say(problem: str) -> None:
    # Unwrapped and unmarked: a path in the message stays whole, brackets and all.
    err.print(f"[red]error:[/red] {escape(problem)}", soft_wrap=True)


def _is_path(name: str) -> bool:
    """Whether ``name`` names a file or folder rather than a run id."""
    return "/" in name or os.sep in name or name.endswith(".json") or Path(name).exists()


def execute(args: argparse.Namespace) -> int:
    from harness.views import render

    store = RunStore(args.out)
    try:
        run: Run = read_run(Path(args.run_id)) if _is_path(args.run_id) else store.load(args.run_id)
    except RunNotFound as exc:
        if args.view == "cekura" and not _is_path(args.run_id):
            # A suite run's id: one Cekura result for all its runs.
            try:
                suite = store.suite_run(args.run_id)
            except RunNotFound:
                _say(f"{exc} (nor a suite run)")
                return 2
            print(json.dumps(render(suite, "cekura"), indent=2, default=str))
            return 0
        _say(str(exc))
        return 2
    if args.view == "text":
        from harness.views.text import to_text

        print(to_text(run))
    else:
        print(json.dumps(render(run, args.view), indent=2, default=str))
    return 0
