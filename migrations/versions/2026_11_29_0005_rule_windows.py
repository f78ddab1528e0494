"""Rule aggregates: the running figures of every (rule, subject, window), kept inline instead of re-measured.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 10:00:00+00:00

The tables start empty: the service builds every rule's aggregates from the stored events when it
starts (and `supervision aggregates rebuild` does it on demand).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _key() -> list[sa.Column[object]]:
    return [
        sa.Column("rule_id", sa.String(length=64), nullable=False),
        sa.Column("subject_id", sa.String(length=64), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "rule_windows",
        *_key(),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.Column("hits", sa.BigInteger(), nullable=False),
        sa.Column("part", sa.BigInteger(), nullable=False),
        sa.Column("total", sa.Numeric().with_variant(sa.Text(), "sqlite"), nullable=True),
        sa.Column("first_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("rule_id", "subject_id", "window_start", name=op.f("pk_rule_windows")),
    )
    op.create_table(
        "rule_window_values",
        *_key(),
        sa.Column("value_hash", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint(
            "rule_id", "subject_id", "window_start", "value_hash", name=op.f("pk_rule_window_values")
        ),
    )
    op.create_table(
        "rule_builds",
        sa.Column("rule_id", sa.String(length=64), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("built_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("windows", sa.Integer(), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("rule_id", name=op.f("pk_rule_builds")),
    )

    with op.batch_alter_table("scans") as batch:
        batch.add_column(sa.Column("windows_repaired", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("scans") as batch:
        batch.drop_column("windows_repaired")
    op.drop_table("rule_builds")
    op.drop_table("rule_window_values")
    op.drop_table("rule_windows")
