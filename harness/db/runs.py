"""Runs in the database: save, read, list with filters and pages, recover after a crash.

Stage: the end of the flow in server mode (the file ``RunStore`` is the CLI's).
Every write is one transaction, so a reader never sees half a run, and a
controller killed mid-write leaves the previous version of the row.  A change of
status that can race another (a worker starting a queued run, a user cancelling
it) is a compare-and-set on the status (``transition``): whichever commits first
wins, and the other sees that it lost, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from harness.db.tables import RunRow, RunWebhookRow, SuiteRunRow
from harness.errors import RunNotFound
from harness.models import Run, RunStatus, utcnow

__all__ = ["DbRunSink", "Recovered", "RunPage", "RunRepository"]


@dataclass(frozen=True)
class RunPage:
    """One page of a run listing, and how many runs match in all."""

    items: list[Run]
    total: int
    limit: int
    offset: int


@dataclass(frozen=True)
class Recovered:
    """What became of the runs a stopped controller left running."""

    failed: list[str]
    requeued: list[str]


def _requeued(run: Run, reason: str) -> Run:
    """``run`` as a fresh attempt: same id, case, target and suite run; nothing measured."""
    kept = run.model_dump(
        include={
            "id",
            "created_at",
            "channel",
            "target",
            "case",
            "suite_name",
            "suite_run_id",
            "case_id",
            "suite_id",
            "agent_id",
            "persona_id",
        }
    )
    detail = f"attempt {run.attempt} of {run.case.retries + 1}: {reason}; re-queued"
    return Run.model_validate(
        {
            **kept,
            "status": "queued",
            "attempt": run.attempt + 1,
            "events": [{"t_ms": 0.0, "kind": "requeued", "detail": detail}],
        }
    )


def _columns(run: Run) -> dict[str, Any]:
    evaluation = run.evaluation
    return {
        "id": run.id,
        "status": run.status,
        "termination_reason": run.termination_reason,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "ended_at": run.ended_at,
        "channel": run.channel,
        "target": run.target,
        "case_name": run.case.name,
        "suite_run_id": run.suite_run_id,
        "score": evaluation.score if evaluation else None,
        "passed": run.passed if run.status in ("completed", "failed", "cancelled") else None,
        "data": run.model_dump(mode="json"),
    }


def _row(run: Run) -> RunRow:
    return RunRow(**_columns(run))


def _claimed(run: Run) -> None:
    run.status = "running"
    run.started_at = utcnow()


class RunRepository:
    """The ``runs`` table behind a small async interface."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def create(
        self, runs: list[Run], *, suite_run: SuiteRunRow, webhook_url: str | None = None
    ) -> None:
        """Store a request's new runs, its suite run and their webhook: all or nothing."""
        async with self._sessions.begin() as session:
            session.add(suite_run)
            session.add_all([_row(run) for run in runs])
            if webhook_url is not None:
                session.add_all([RunWebhookRow(run_id=run.id, url=webhook_url) for run in runs])

    async def save(self, run: Run) -> None:
        """Insert or replace the run (one transaction)."""
        async with self._sessions.begin() as session:
            await session.merge(_row(run))

    async def transition(
        self, run_id: str, change: Callable[[Run], None], *, only_from: Collection[str]
    ) -> Run | None:
        """Apply ``change`` to the stored run if its status is one of ``only_from``.

        Atomic: the write is ``UPDATE ... WHERE status = <the status read>``, so a
        transition another writer commits first makes this one re-read, and give up
        (``None``) once the status is no longer one of ``only_from``.
        """
        while True:
            async with self._sessions.begin() as session:
                row = await session.get(RunRow, run_id)
                if row is None:
                    raise RunNotFound(f"no run {run_id!r}")
                if row.status not in only_from:
                    return None
                read = row.status
                run = Run.model_validate(row.data)
                change(run)
                columns = _columns(run)
                del columns["id"]
                result = await session.execute(
                    update(RunRow)
                    .where(RunRow.id == run_id, RunRow.status == read)
                    .values(**columns)
                    .execution_options(synchronize_session=False)
                )
                if result.rowcount == 1:  # type: ignore[attr-defined]
                    return run

    async def claim(self, run_id: str) -> Run | None:
        """``queued`` -> ``running``, only if still queued: the run as claimed, or ``None``
        when something else (a cancel) changed it first."""
        return await self.transition(run_id, _claimed, only_from=("queued",))

    async def get(self, run_id: str) -> Run:
        async with self._sessions() as session:
            row = await session.get(RunRow, run_id)
        if row is None:
            raise RunNotFound(f"no run {run_id!r}")
        return Run.model_validate(row.data)

    async def page(
        self,
        *,
        status: RunStatus | None = None,
        suite_run_id: str | None = None,
        case_name: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> RunPage:
        """Runs newest first, filtered, one page at a time."""
        query = select(RunRow)
        if status is not None:
            query = query.where(RunRow.status == status)
        if suite_run_id is not None:
            query = query.where(RunRow.suite_run_id == suite_run_id)
        if case_name is not None:
            query = query.where(RunRow.case_name == case_name)
        async with self._sessions() as session:
            total = await session.scalar(select(func.count()).select_from(query.subquery()))
            rows = await session.scalars(
                query.order_by(RunRow.created_at.desc(), RunRow.id).limit(limit).offset(offset)
            )
            items = [Run.model_validate(row.data) for row in rows]
        return RunPage(items=items, total=int(total or 0), limit=limit, offset=offset)

    async def outcomes(self, suite_run_ids: list[str]) -> dict[str, dict[tuple[str, bool], int]]:
        """Per suite run: how many runs have each (status, passed), counted in SQL."""
        query = (
            select(RunRow.suite_run_id, RunRow.status, RunRow.passed, func.count())
            .where(RunRow.suite_run_id.in_(suite_run_ids))
            .group_by(RunRow.suite_run_id, RunRow.status, RunRow.passed)
        )
        counts: dict[str, dict[tuple[str, bool], int]] = {i: {} for i in suite_run_ids}
        async with self._sessions() as session:
            for suite_run_id, status, passed, n in await session.execute(query):
                counts[str(suite_run_id)][(status, bool(passed))] = int(n)
        return counts

    async def delete(self, run_id: str) -> None:
        async with self._sessions.begin() as session:
            result = await session.execute(delete(RunRow).where(RunRow.id == run_id))
            await session.execute(delete(RunWebhookRow).where(RunWebhookRow.run_id == run_id))
        if result.rowcount == 0:  # type: ignore[attr-defined]
            raise RunNotFound(f"no run {run_id!r}")

    async def recover_interrupted(self, reason: str) -> Recovered:
        """Runs left ``running`` by a controller that stopped: re-queue those whose case
        asks for retries (and has some left), store the rest as failed with ``reason``."""
        failed: list[str] = []
        requeued: list[str] = []
        async with self._sessions.begin() as session:
            rows = list(await session.scalars(select(RunRow).where(RunRow.status == "running")))
            now = utcnow()
            for row in rows:
                run = Run.model_validate(row.data)
                if run.attempt <= run.case.retries:
                    run = _requeued(run, reason)
                    requeued.append(run.id)
                else:
                    run.status = "failed"
                    run.termination_reason = "error"
                    run.error = reason
                    run.ended_at = now
                    if run.started_at is not None:
                        started = run.started_at.astimezone(UTC)
                        run.duration_ms = round((now - started).total_seconds() * 1000.0, 1)
                    failed.append(run.id)
                await session.merge(_row(run))
        return Recovered(failed=failed, requeued=requeued)

    async def set_webhook(self, run_id: str, url: str) -> None:
        async with self._sessions.begin() as session:
            await session.merge(RunWebhookRow(run_id=run_id, url=url))

    async def webhook_for(self, run_id: str) -> str | None:
        async with self._sessions() as session:
            row = await session.get(RunWebhookRow, run_id)
            return row.url if row else None

    async def queued(self) -> list[Run]:
        """Runs waiting to execute, oldest first (to resume after a restart)."""
        async with self._sessions() as session:
            rows = await session.scalars(
                select(RunRow).where(RunRow.status == "queued").order_by(RunRow.created_at)
            )
            return [Run.model_validate(row.data) for row in rows]


class DbRunSink:
    """The orchestrator's ``RunSink`` in server mode: rows in the database, WAVs on disk."""

    def __init__(self, repository: RunRepository, recordings: Path) -> None:
        self.repository = repository
        self.recordings = recordings

    async def put(self, run: Run) -> None:
        await self.repository.save(run)

    def recording_path(self, run_id: str) -> Path:
        return self.recordings / run_id / "recording.wav"
