"""run_webhooks: the completion webhook URL of a run, if its creator gave one.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "run_webhooks",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("url", sa.String(2048), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("run_webhooks")
