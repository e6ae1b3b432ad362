"""agents (+ their credentials, apart), personas, cases, suites, suite_runs.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(JSONB(), "postgresql")


def _resource(name: str, *extra: sa.Column) -> None:  # type: ignore[type-arg]
    op.create_table(
        name,
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(512), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("data", _JSON, nullable=False),
        *extra,
    )
    op.create_index(f"ix_{name}_name", name, ["name"])
    op.create_index(f"ix_{name}_created", name, ["created_at"])


def upgrade() -> None:
    _resource("agents", sa.Column("channel", sa.String(32), nullable=False))
    op.create_table(
        "agent_credentials",
        sa.Column("agent_id", sa.String(64), primary_key=True),
        sa.Column("ciphertext", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    _resource("personas")
    _resource(
        "cases",
        sa.Column("persona_id", sa.String(64)),
        sa.Column("agent_id", sa.String(64)),
        sa.Column("suite_id", sa.String(64)),
    )
    for column in ("persona_id", "agent_id", "suite_id"):
        op.create_index(f"ix_cases_{column}", "cases", [column])
    _resource("suites", sa.Column("agent_id", sa.String(64)))
    op.create_index("ix_suites_agent_id", "suites", ["agent_id"])
    op.create_table(
        "suite_runs",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("concurrency_limit", sa.Integer()),
        sa.Column("frequency", sa.Integer(), nullable=False),
        sa.Column("suite_id", sa.String(64)),
        sa.Column("agent_id", sa.String(64)),
    )


def downgrade() -> None:
    for table in ("suite_runs", "suites", "cases", "personas", "agent_credentials", "agents"):
        op.drop_table(table)
