"""Alembic environment: runs on the connection ``harness.db.migrate`` hands it."""

from __future__ import annotations

from alembic import context

from harness.db.tables import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through harness.db.migrate(engine)")
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
