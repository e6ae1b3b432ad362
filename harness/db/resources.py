"""Agents, personas, cases and suites in the database: add, read, replace, delete, page.

Stage: the controller's catalogue, read when a run is created (to build the
run's snapshot) and when it executes (to reach its agent).  Each kind is one
table of ``ResourceRow`` (id, name, times, the public record as JSON) plus the
columns lists filter on.  An agent's credentials live in their own table,
sealed (``harness.db.secrets``); they are written and read only here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from harness.db.tables import (
    AgentCredentialRow,
    AgentRow,
    CaseRow,
    PersonaRow,
    ResourceRow,
    SuiteRow,
    SuiteRunRow,
)
from harness.errors import ResourceNotFound
from harness.models import utcnow

__all__ = ["KEEP", "Catalogue", "Keep", "ResourcePage", "ResourceTable", "SuiteRunTable"]

R = TypeVar("R", bound=ResourceRow)


class Keep:
    """Marker: leave the stored credentials as they are."""


KEEP = Keep()


def _credential_row(agent_id: str, ciphertext: str) -> AgentCredentialRow:
    return AgentCredentialRow(agent_id=agent_id, ciphertext=ciphertext, updated_at=utcnow())


@dataclass(frozen=True)
class ResourcePage(Generic[R]):
    rows: list[R]
    total: int


class ResourceTable(Generic[R]):
    """One resource kind's table behind a small async interface."""

    def __init__(self, sessions: async_sessionmaker[Any], row_type: type[R], kind: str) -> None:
        self._sessions = sessions
        self.row_type = row_type
        self.kind = kind

    async def add(
        self, row: R, *, credentials: str | None = None, also: Iterable[ResourceRow] = ()
    ) -> None:
        """Insert ``row``, and in the same transaction an agent's sealed credentials or
        other rows created with it (a suite's cases)."""
        async with self._sessions.begin() as session:
            session.add(row)
            session.add_all(list(also))
            if credentials is not None:
                session.add(_credential_row(row.id, credentials))

    async def get(self, resource_id: str) -> R:
        async with self._sessions() as session:
            row = await session.get(self.row_type, resource_id)
        if row is None:
            raise ResourceNotFound(self.kind, resource_id)
        return row

    async def exists(self, resource_id: str) -> bool:
        async with self._sessions() as session:
            return await session.get(self.row_type, resource_id) is not None

    async def replace(self, row: R, *, credentials: str | None | Keep = KEEP) -> None:
        """Write ``row`` over the stored one (which must exist); an agent's credentials
        are kept, replaced, or (``None``) removed in the same transaction."""
        async with self._sessions.begin() as session:
            if await session.get(self.row_type, row.id) is None:
                raise ResourceNotFound(self.kind, row.id)
            row.updated_at = utcnow()
            await session.merge(row)
            if credentials is None:
                await session.execute(
                    delete(AgentCredentialRow).where(AgentCredentialRow.agent_id == row.id)
                )
            elif not isinstance(credentials, Keep):
                await session.merge(_credential_row(row.id, credentials))

    async def delete(
        self, resource_id: str, *, cascade: tuple[type[ResourceRow], str] | None = None
    ) -> None:
        """Delete the row; with ``cascade=(table, column)`` also the rows of ``table``
        whose ``column`` names it (a suite's cases), in the same transaction."""
        async with self._sessions.begin() as session:
            table = self.row_type
            if cascade is not None:
                dependents, column = cascade
                await session.execute(
                    delete(dependents).where(getattr(dependents, column) == resource_id)
                )
            result = await session.execute(delete(table).where(table.id == resource_id))
            if table is AgentRow:  # its credentials go with it, in the same transaction
                await session.execute(
                    delete(AgentCredentialRow).where(AgentCredentialRow.agent_id == resource_id)
                )
        if result.rowcount == 0:  # type: ignore[attr-defined]
            raise ResourceNotFound(self.kind, resource_id)

    async def page(
        self, filters: Mapping[str, Any], *, limit: int = 50, offset: int = 0
    ) -> ResourcePage[R]:
        """Newest first; ``filters`` are column == value (``None`` values are ignored)."""
        query = select(self.row_type)
        for column, value in filters.items():
            if value is not None:
                query = query.where(getattr(self.row_type, column) == value)
        async with self._sessions() as session:
            total = await session.scalar(select(func.count()).select_from(query.subquery()))
            rows = await session.scalars(
                query.order_by(self.row_type.created_at.desc(), self.row_type.id)
                .limit(limit)
                .offset(offset)
            )
            return ResourcePage(list(rows), int(total or 0))

    async def where(self, column: str, value: str) -> list[R]:
        """Every row whose ``column`` is ``value``, oldest first."""
        query = select(self.row_type).where(getattr(self.row_type, column) == value)
        async with self._sessions() as session:
            rows = await session.scalars(query.order_by(self.row_type.created_at, self.row_type.id))
            return list(rows)

    async def count(self, column: str, value: str) -> int:
        query = select(func.count()).where(getattr(self.row_type, column) == value)
        async with self._sessions() as session:
            return int(await session.scalar(query.select_from(self.row_type)) or 0)


class SuiteRunTable:
    """What a ``POST /runs`` asked for beyond its runs: the concurrency limit, mainly."""

    def __init__(self, sessions: async_sessionmaker[Any]) -> None:
        self._sessions = sessions

    async def add(self, row: SuiteRunRow) -> None:
        async with self._sessions.begin() as session:
            session.add(row)

    async def get(self, suite_run_id: str) -> SuiteRunRow | None:
        async with self._sessions() as session:
            return await session.get(SuiteRunRow, suite_run_id)

    async def page(
        self, *, suite_id: str | None, limit: int, offset: int
    ) -> tuple[list[SuiteRunRow], int]:
        """Suite runs newest first (of one suite, if given), and how many match."""
        query = select(SuiteRunRow)
        if suite_id is not None:
            query = query.where(SuiteRunRow.suite_id == suite_id)
        async with self._sessions() as session:
            total = await session.scalar(select(func.count()).select_from(query.subquery()))
            rows = await session.scalars(
                query.order_by(SuiteRunRow.created_at.desc(), SuiteRunRow.id)
                .limit(limit)
                .offset(offset)
            )
            return list(rows), int(total or 0)

    async def limits(self, suite_run_ids: set[str]) -> dict[str, int]:
        """The concurrency limit of each of these suite runs that has one."""
        if not suite_run_ids:
            return {}
        query = select(SuiteRunRow.id, SuiteRunRow.concurrency_limit).where(
            SuiteRunRow.id.in_(suite_run_ids), SuiteRunRow.concurrency_limit.is_not(None)
        )
        async with self._sessions() as session:
            return {row_id: int(limit) for row_id, limit in await session.execute(query)}


class Catalogue:
    """Every resource table, and the agents' sealed credentials."""

    def __init__(self, engine: AsyncEngine) -> None:
        sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._sessions = sessions
        self.agents = ResourceTable(sessions, AgentRow, "agent")
        self.personas = ResourceTable(sessions, PersonaRow, "persona")
        self.cases = ResourceTable(sessions, CaseRow, "case")
        self.suites = ResourceTable(sessions, SuiteRow, "suite")
        self.suite_runs = SuiteRunTable(sessions)

    async def credentials(self, agent_id: str) -> str | None:
        """An agent's sealed credentials, if it has any."""
        async with self._sessions() as session:
            row = await session.get(AgentCredentialRow, agent_id)
            return row.ciphertext if row else None
