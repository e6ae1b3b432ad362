"""The database tables (SQLAlchemy 2 declarative).

A run row is the run's JSON record (``data``, the contract in ``harness.models``)
plus copies of the fields that lists filter and sort on.  The copies are written
from the record in one place (``RunRepository.save``) so they never disagree.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, Index, Integer, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column

__all__ = [
    "AgentCredentialRow",
    "AgentRow",
    "ApiKeyRow",
    "Base",
    "CaseRow",
    "PersonaRow",
    "ResourceRow",
    "RunRow",
    "RunWebhookRow",
    "SuiteRow",
    "SuiteRunRow",
]

JsonColumn = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    pass


class RunRow(Base):
    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    termination_reason: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    channel: Mapped[str] = mapped_column(String(32))
    target: Mapped[str] = mapped_column(String(2048))
    case_name: Mapped[str] = mapped_column(String(512), index=True)
    suite_run_id: Mapped[str | None] = mapped_column(String(64), index=True)
    score: Mapped[float | None] = mapped_column(Float)
    passed: Mapped[bool | None] = mapped_column()
    data: Mapped[dict[str, Any]] = mapped_column(JsonColumn)

    __table_args__ = (Index("ix_runs_status_created", "status", "created_at"),)


class ApiKeyRow(Base):
    """An API key: only its SHA-256 is kept; the key itself is shown once, at creation."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class RunWebhookRow(Base):
    """Where to announce a run's end (kept apart from the run record, which is public)."""

    __tablename__ = "run_webhooks"

    run_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    url: Mapped[str] = mapped_column(String(2048))


class ResourceRow(Base):
    """Columns every stored resource has: its public record is ``data`` (JSON)."""

    __abstract__ = True

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(512))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    data: Mapped[dict[str, Any]] = mapped_column(JsonColumn)

    @declared_attr.directive
    def __table_args__(cls) -> tuple[Index, ...]:  # noqa: N805 - SQLAlchemy's signature
        return (
            Index(f"ix_{cls.__tablename__}_name", "name"),
            Index(f"ix_{cls.__tablename__}_created", "created_at"),
        )


class AgentRow(ResourceRow):
    """An agent under test: where it answers and how to reach it (no secrets here)."""

    __tablename__ = "agents"

    channel: Mapped[str] = mapped_column(String(32))


class AgentCredentialRow(Base):
    """An agent's credentials, encrypted, kept apart from the agent's public record."""

    __tablename__ = "agent_credentials"

    agent_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    ciphertext: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PersonaRow(ResourceRow):
    __tablename__ = "personas"


class CaseRow(ResourceRow):
    """A case; its persona, default agent and suite by reference."""

    __tablename__ = "cases"

    persona_id: Mapped[str | None] = mapped_column(String(64), index=True)
    agent_id: Mapped[str | None] = mapped_column(String(64), index=True)
    suite_id: Mapped[str | None] = mapped_column(String(64), index=True)


class SuiteRow(ResourceRow):
    __tablename__ = "suites"

    agent_id: Mapped[str | None] = mapped_column(String(64), index=True)


class SuiteRunRow(Base):
    """What one ``POST /runs`` asked for that outlives the request (the concurrency limit)."""

    __tablename__ = "suite_runs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    concurrency_limit: Mapped[int | None] = mapped_column(Integer)
    frequency: Mapped[int] = mapped_column(Integer)
    suite_id: Mapped[str | None] = mapped_column(String(64))
    agent_id: Mapped[str | None] = mapped_column(String(64))
