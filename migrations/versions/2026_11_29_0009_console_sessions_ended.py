"""Console sessions ended by signing out: a copy of the cookie is refused too.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29 17:00:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "console_sessions_ended",
        sa.Column("nonce", sa.String(length=32), nullable=False),
        sa.Column("key_id", sa.Integer(), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("nonce", name=op.f("pk_console_sessions_ended")),
    )
    op.create_index(op.f("ix_console_sessions_ended_ended_at"), "console_sessions_ended", ["ended_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_console_sessions_ended_ended_at"), table_name="console_sessions_ended")
    op.drop_table("console_sessions_ended")
