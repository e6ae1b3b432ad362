"""``loopcall runs``: the summary table of the runs stored in a folder."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from harness.cli.summary import print_summary
from harness.store import RunStore

__all__ = ["add_parser", "execute"]


def add_parser(sub: Any) -> None:
    runs = sub.add_parser("runs", help="list stored runs")
    runs.add_argument("--out", type=Path, default=Path("runs"))
    runs.set_defaults(handler=execute)


def execute(args: argparse.Namespace) -> int:
    store = RunStore(args.out)
    print_summary(store.list(), f"stored under {store.root}/")
    return 0
