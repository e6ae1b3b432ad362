"""The runs table on SQLite (a file) and on the real PostgreSQL at 127.0.0.1:5432."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

from harness.db import RunRepository, migrate, normalise_url
from harness.db.engine import _alembic_config
from harness.db.tables import Base
from harness.errors import RunNotFound
from harness.models import CallEvent, Case, Evaluation, Persona, Run

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def make_run(
    name: str = "Book a cleaning",
    *,
    minutes: int = 0,
    status: str = "completed",
    suite_run_id: str | None = None,
) -> Run:
    run = Run(
        channel="webrtc",
        target="webrtc://127.0.0.1:7860/api/offer",
        case=Case(name=name, persona=Persona(name="Alex")),
        created_at=T0 + timedelta(minutes=minutes),
        status=status,  # type: ignore[arg-type]
        suite_run_id=suite_run_id,
    )
    if status in ("completed", "failed"):
        run.termination_reason = "agent_ended" if status == "completed" else "error"
        run.evaluation = Evaluation(
            score=100 if status == "completed" else 0, pass_fail=status == "completed"
        )
    if status != "queued":
        run.started_at = run.created_at
    return run


async def test_migrations_are_idempotent_and_match_the_tables(engine: AsyncEngine) -> None:
    await migrate(engine)  # a second time: nothing to do

    def diff(connection) -> list[object]:  # type: ignore[no-untyped-def]
        return list(compare_metadata(MigrationContext.configure(connection), Base.metadata))

    def tables(connection) -> set[str]:  # type: ignore[no-untyped-def]
        return set(inspect(connection).get_table_names())

    async with engine.connect() as connection:
        assert await connection.run_sync(diff) == []
        assert {
            "runs",
            "api_keys",
            "agents",
            "agent_credentials",
            "personas",
            "cases",
            "suites",
            "suite_runs",
            "alembic_version",
        } <= await connection.run_sync(tables)
        version = await connection.scalar(text("select version_num from alembic_version"))
    head = ScriptDirectory.from_config(_alembic_config(PG_ADMIN)).get_current_head()
    assert version == head


async def test_save_and_get_round_trip(engine: AsyncEngine) -> None:
    repo = RunRepository(engine)
    run = make_run()
    await repo.save(run)
    assert (await repo.get(run.id)).model_dump() == run.model_dump()


async def test_save_again_replaces_the_row(engine: AsyncEngine) -> None:
    repo = RunRepository(engine)
    run = make_run(status="running")
    await repo.save(run)
    run.status = "completed"
    run.termination_reason = "agent_ended"
    await repo.save(run)
    page = await repo.page(status="completed")
    assert [r.id for r in page.items] == [run.id]
    assert (await repo.page(status="running")).total == 0


async def test_page_filters_orders_and_counts(engine: AsyncEngine) -> None:
    repo = RunRepository(engine)
    suite = str(uuid.uuid4())
    runs = [
        make_run(
            f"case {i % 2}",
            minutes=i,
            suite_run_id=suite if i < 3 else None,
            status="failed" if i == 4 else "completed",
        )
        for i in range(5)
    ]
    for run in runs:
        await repo.save(run)

    everything = await repo.page(limit=2)
    assert everything.total == 5
    assert [r.id for r in everything.items] == [runs[4].id, runs[3].id]  # newest first
    second = await repo.page(limit=2, offset=2)
    assert [r.id for r in second.items] == [runs[2].id, runs[1].id]
    assert {r.id for r in (await repo.page(suite_run_id=suite)).items} == {r.id for r in runs[:3]}
    assert (await repo.page(case_name="case 1")).total == 2
    assert [r.id for r in (await repo.page(status="failed")).items] == [runs[4].id]


async def test_delete_and_unknown_ids(engine: AsyncEngine) -> None:
    repo = RunRepository(engine)
    run = make_run()
    await repo.save(run)
    await repo.delete(run.id)
    with pytest.raises(RunNotFound):
        await repo.get(run.id)
    with pytest.raises(RunNotFound):
        await repo.delete(run.id)


async def test_runs_left_running_by_a_dead_controller_end_as_failed(engine: AsyncEngine) -> None:
    repo = RunRepository(engine)
    running, done, queued = make_run(status="running"), make_run(), make_run(status="queued")
    for run in (running, done, queued):
        await repo.save(run)

    recovered_ids = await repo.recover_interrupted(
        "the controller stopped while this run was in progress"
    )

    assert (recovered_ids.failed, recovered_ids.requeued) == ([running.id], [])
    recovered = await repo.get(running.id)
    assert (recovered.status, recovered.termination_reason) == ("failed", "error")
    assert recovered.error == "the controller stopped while this run was in progress"
    assert recovered.ended_at is not None and recovered.duration_ms is not None
    assert (await repo.get(done.id)).status == "completed"
    assert [r.id for r in await repo.queued()] == [queued.id]


async def test_interrupted_runs_are_requeued_while_their_case_has_retries(
    engine: AsyncEngine,
) -> None:
    repo = RunRepository(engine)
    run = make_run(status="running")
    run.case = run.case.model_copy(update={"retries": 1})
    run.suite_run_id, run.agent_id = "suite-run-1", "agent-1"
    run.events = [CallEvent(t_ms=5.0, kind="connected")]
    await repo.save(run)

    first = await repo.recover_interrupted("controller stopped")

    assert (first.failed, first.requeued) == ([], [run.id])
    again = await repo.get(run.id)
    assert (again.status, again.attempt, again.started_at) == ("queued", 2, None)
    assert (again.suite_run_id, again.agent_id, again.created_at) == (
        "suite-run-1",
        "agent-1",
        run.created_at,
    )
    assert [e.kind for e in again.events] == ["requeued"]
    assert "attempt 1 of 2" in again.events[0].detail
    assert [r.id for r in await repo.queued()] == [run.id]

    again.status, again.started_at = "running", T0  # the second attempt is interrupted too
    await repo.save(again)
    second = await repo.recover_interrupted("controller stopped")

    assert (second.failed, second.requeued) == ([run.id], [])
    final = await repo.get(run.id)
    assert (final.status, final.attempt, final.error) == ("failed", 2, "controller stopped")


def test_database_urls_map_to_async_drivers() -> None:
    assert normalise_url("sqlite:///runs/loopcall.db").startswith("sqlite+aiosqlite:///")
    assert normalise_url("postgresql://u:p@h/db") == "postgresql+asyncpg://u:p@h/db"
    assert normalise_url("postgres://h/db") == "postgresql+asyncpg://h/db"
    with pytest.raises(ValueError, match="unsupported database URL"):
        normalise_url("mysql://h/db")
