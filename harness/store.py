"""Where runs live: ``DIR/<run-id>/run.json`` and ``DIR/<run-id>/recording.wav``.

Stage: the end of the flow.  The orchestrator saves a run when it starts (status
``running``) and again when it ends, so a run is never silently missing.  Writes
go to a temporary file and are renamed into place, so a reader (or a crash)
never sees half a ``run.json``.  The controller's database store (a later
issue) implements the same small interface.  ``read_run`` reads one run from
wherever its ``run.json`` was copied.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from pydantic import ValidationError

from harness.errors import RunNotFound
from harness.models import Run
from harness.offload import off_loop

__all__ = ["RunNotFound", "RunSink", "RunStore", "read_run"]


class RunSink(Protocol):
    """Where the orchestrator puts a run (at start and at the end) and its recording."""

    async def put(self, run: Run) -> None: ...

    def recording_path(self, run_id: str) -> Path: ...


def read_run(path: Path) -> Run:
    """The run in ``path``: a ``run.json`` (by any name) or a run folder holding one."""
    file = path / "run.json" if path.is_dir() else path
    if not file.is_file():
        raise RunNotFound(
            f"{path} is a folder with no run.json" if path.is_dir() else (f"no such file: {path}")
        )
    try:
        return Run.model_validate_json(file.read_bytes())
    except OSError as exc:
        raise RunNotFound(f"cannot read {file}: {exc.strerror or exc}") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise RunNotFound(
            f"{file} is not a loopcall run ({exc.error_count()} problem(s); "
            f"first: field '{where}': {first['msg']})"
        ) from exc


class RunStore:
    """Runs as JSON files under one directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def run_dir(self, run_id: str) -> Path:
        return self.root / run_id

    def recording_path(self, run_id: str) -> Path:
        return self.run_dir(run_id) / "recording.wav"

    def save(self, run: Run) -> Path:
        directory = self.run_dir(run.id)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "run.json"
        tmp = directory / f".run.json.{os.getpid()}.tmp"
        tmp.write_text(run.model_dump_json(indent=2), encoding="utf-8")
        os.replace(tmp, path)
        return path

    async def put(self, run: Run) -> None:
        """``save`` for the orchestrator (a ``RunSink``), off the event loop."""
        await off_loop(self.save, run)

    def load(self, run_id: str) -> Run:
        """The run with this id, or the only one whose id starts with it."""
        path = self.run_dir(run_id) / "run.json"
        if not path.exists():
            matches = [p for p in self._run_files() if p.parent.name.startswith(run_id)]
            if len(matches) != 1:
                what = "no run" if not matches else f"{len(matches)} runs"
                raise RunNotFound(f"{what} matching {run_id!r} under {self.root}")
            path = matches[0]
        return Run.model_validate_json(path.read_text(encoding="utf-8"))

    def suite_run(self, suite_run_id: str) -> list[Run]:
        """The runs one suite invocation spawned (id or unique prefix), oldest first."""
        runs = [
            r for r in self.list() if r.suite_run_id and r.suite_run_id.startswith(suite_run_id)
        ]
        ids = {r.suite_run_id for r in runs}
        if len(ids) != 1:
            what = "no suite run" if not ids else f"{len(ids)} suite runs"
            raise RunNotFound(f"{what} matching {suite_run_id!r} under {self.root}")
        return sorted(runs, key=lambda r: r.created_at)

    def list(self) -> list[Run]:
        """Every stored run, newest first."""
        runs = [Run.model_validate_json(p.read_text(encoding="utf-8")) for p in self._run_files()]
        return sorted(runs, key=lambda r: r.created_at, reverse=True)

    def _run_files(self) -> Iterator[Path]:
        if self.root.is_dir():
            yield from self.root.glob("*/run.json")
