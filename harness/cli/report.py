"""``loopcall report SUITE_RUN``: a stored suite run's report (as at the end of ``loopcall run``).

Stage: reading the store, through ``harness.reports``.  ``--json`` prints the
``SuiteReport`` the controller serves with ``GET /suite-runs/{id}``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.markup import escape

from harness.cli.common import err

__all__ = ["add_parser", "execute"]


def add_parser(sub: Any) -> None:
    report = sub.add_parser("report", help="a suite run's report: rates, figures, flaky, causes")
    report.add_argument(
        "suite_run",
        metavar="SUITE_RUN",
        help="a suite run id or unique prefix (under --out), a runs folder, or a folder of "
        "run.json files",
    )
    report.add_argument("--out", type=Path, default=Path("runs"), help="where runs are stored")
    report.add_argument("--json", action="store_true", help="print the report as JSON")
    report.add_argument(
        "--server",
        default=None,
        help="read from a controller (loopcall serve) by full suite run ids; key from "
        "LOOPCALL_API_KEY",
    )
    report.set_defaults(handler=execute)


def execute(args: argparse.Namespace) -> int:
    from harness.cli.report_display import print_report
    from harness.cli.sources import RunNotFound, from_server, load_runs
    from harness.reports import build_report

    if args.server:
        report = from_server(args.server, lambda c: c.suite_report(args.suite_run))
        if report is None:
            return 2
    else:
        try:
            runs = load_runs(args.suite_run, args.out)
        except RunNotFound as exc:
            err.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
            return 2
        report = build_report(runs)
    if args.json:
        print(report.model_dump_json(indent=2))
    else:
        print_report(report)
    return 0
