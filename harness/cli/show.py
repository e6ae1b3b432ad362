"""``loopcall show``: one stored run (or, with ``--view cekura``, a suite run) in a chosen shape.

Stage: reading the store (``harness/store.py``) through the views (``harness/views``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from harness.cli.common import err
from harness.store import RunNotFound, RunStore

__all__ = ["add_parser", "execute"]


def add_parser(sub: Any) -> None:
    show = sub.add_parser("show", help="print a stored run (or, with --view cekura, a suite run)")
    show.add_argument(
        "run_id", help="a run id or unique prefix; for --view cekura also a suite run id"
    )
    show.add_argument(
        "--view", choices=["loopcall", "vapi", "yappr", "cekura", "text"], default="loopcall"
    )
    show.add_argument("--out", type=Path, default=Path("runs"))
    show.set_defaults(handler=execute)


def execute(args: argparse.Namespace) -> int:
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
