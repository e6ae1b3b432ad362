"""Where ``loopcall report`` and ``loopcall compare`` find a suite run's runs.

Stage: reading the store (``harness/store.py``).  A suite run is named by its id
or a unique prefix (looked up under ``--out``), or by a path: a runs folder (its
``*/run.json``), a folder of run files (``*.json``), or one run's ``run.json`` or
folder.  A folder holding the runs of several suite runs is ambiguous: the error
lists them.  With ``--server URL`` the controller computes it (``from_server``).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from rich.markup import escape

from harness.cli.common import err, settings_or_say
from harness.models import Run
from harness.store import RunNotFound, RunStore, read_run

if TYPE_CHECKING:
    from harness.cli.client import ControllerClient

__all__ = ["RunNotFound", "from_server", "is_path", "load_runs"]

T = TypeVar("T")


def is_path(name: str) -> bool:
    """Whether ``name`` names a file or folder rather than an id."""
    return "/" in name or os.sep in name or name.endswith(".json") or Path(name).exists()


def _from_folder(folder: Path) -> list[Run]:
    if (folder / "run.json").is_file():
        return [read_run(folder)]
    files = sorted(folder.glob("*/run.json")) + sorted(folder.glob("*.json"))
    if not files:
        raise RunNotFound(f"{folder} holds no run.json, nor run folders, nor *.json run files")
    runs = [read_run(file) for file in files]
    suite_runs = sorted({r.suite_run_id for r in runs if r.suite_run_id})
    if len(suite_runs) > 1:
        listed = ", ".join(s[:8] for s in suite_runs)
        raise RunNotFound(
            f"{folder} holds the runs of {len(suite_runs)} suite runs ({listed}): name one "
            f"by its id with --out {folder}"
        )
    return runs


def load_runs(name: str, out: Path) -> list[Run]:
    """The runs ``name`` stands for: a suite run id or prefix under ``out``, or a path."""
    if is_path(name):
        path = Path(name)
        if path.is_dir():
            return _from_folder(path)
        return [read_run(path)]
    return RunStore(out).suite_run(name)


def from_server(server: str, ask: Callable[[ControllerClient], Awaitable[T]]) -> T | None:
    """``ask`` the controller at ``server`` (key from the settings); None once the error
    is printed."""
    from harness.cli.client import ControllerClient, ControllerError

    settings = settings_or_say()
    if settings is None:
        return None
    key = settings.api_key.get_secret_value() if settings.api_key else None

    async def go() -> T:
        async with ControllerClient(server, key) as client:
            return await ask(client)

    try:
        return asyncio.run(go())
    except ControllerError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
        return None
