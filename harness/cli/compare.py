"""``loopcall compare A B``: what changed between two suite runs, tested so noise is not news.

Stage: reading the store, through ``harness.reports.compare_runs``.  A and B are
each a suite run id or prefix (under ``--out``), or a runs folder / a folder of
run.json files.  Exit status: 0 when nothing regressed, 1 when something did (a
CI step can gate on it), 2 for bad input.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.markup import escape

from harness.cli.common import err

__all__ = ["add_parser", "execute"]


def add_parser(sub: Any) -> None:
    compare = sub.add_parser(
        "compare", help="what changed between two suite runs (with significance tests)"
    )
    for side in ("a", "b"):
        compare.add_argument(
            side,
            metavar=side.upper(),
            help="a suite run id or unique prefix (under --out), a runs folder, or a folder "
            "of run.json files",
        )
    compare.add_argument("--out", type=Path, default=Path("runs"), help="where runs are stored")
    compare.add_argument(
        "--alpha", type=float, default=0.05, help="significance level (default 0.05)"
    )
    compare.add_argument("--json", action="store_true", help="print the comparison as JSON")
    compare.add_argument(
        "--server",
        default=None,
        help="read from a controller (loopcall serve) by full suite run ids; key from "
        "LOOPCALL_API_KEY",
    )
    compare.set_defaults(handler=execute)


def execute(args: argparse.Namespace) -> int:
    from harness.cli.report_display import print_comparison
    from harness.cli.sources import RunNotFound, from_server, load_runs
    from harness.reports import compare_runs

    if not 0 < args.alpha < 1:
        err.print(f"[red]error:[/red] --alpha must lie between 0 and 1, not {args.alpha}")
        return 2
    if args.server:
        comparison = from_server(args.server, lambda c: c.compare(args.a, args.b, args.alpha))
        if comparison is None:
            return 2
    else:
        sides = []
        for name in (args.a, args.b):
            try:
                sides.append(load_runs(name, args.out))
            except RunNotFound as exc:
                err.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
                return 2
        comparison = compare_runs(sides[0], sides[1], alpha=args.alpha, names=(args.a, args.b))
    if args.json:
        print(comparison.model_dump_json(indent=2))
    else:
        print_comparison(comparison)
    return 1 if comparison.regressed else 0
