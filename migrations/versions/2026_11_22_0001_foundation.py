"""Foundation: org units, API keys, events.

Revision ID: 0001
Revises:
Create Date: 2026-11-22 00:31:27.505776+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "units",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("parent_id", sa.String(length=64), nullable=True),
        sa.Column("label_zh", sa.String(length=200), nullable=True),
        sa.Column("label_en", sa.String(length=200), nullable=True),
        sa.Column("registered_by", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["parent_id"], ["units.id"], name=op.f("fk_units_parent_id_units")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_units")),
    )
    with op.batch_alter_table("units", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_units_parent_id"), ["parent_id"], unique=False)

    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("unit_id", sa.String(length=64), nullable=True),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["unit_id"], ["units.id"], name=op.f("fk_api_keys_unit_id_units")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
    )
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_api_keys_name"), ["name"], unique=False)

    op.create_table(
        "events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("source_event_id", sa.String(length=128), nullable=False),
        sa.Column("domain", sa.String(length=32), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("operator_id", sa.String(length=64), nullable=False),
        sa.Column("operator_kind", sa.String(length=16), nullable=False),
        sa.Column("operator_unit", sa.String(length=64), nullable=False),
        sa.Column("responsible_officer", sa.String(length=64), nullable=True),
        sa.Column("business_unit_id", sa.String(length=64), nullable=True),
        sa.Column("business_unit_kind", sa.String(length=32), nullable=True),
        sa.Column("agent_id", sa.String(length=64), nullable=True),
        sa.Column("object_ref", sa.String(length=128), nullable=True),
        sa.Column(
            "attributes",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["operator_unit"], ["units.id"], name=op.f("fk_events_operator_unit_units")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
        sa.UniqueConstraint("source", "source_event_id", name=op.f("uq_events_source_source_event_id")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index("ix_events_agent_id_occurred_at", ["agent_id", "occurred_at"], unique=False)
        batch_op.create_index(
            "ix_events_business_unit_id_occurred_at", ["business_unit_id", "occurred_at"], unique=False
        )
        batch_op.create_index("ix_events_domain_occurred_at", ["domain", "occurred_at"], unique=False)
        batch_op.create_index("ix_events_occurred_at_id", ["occurred_at", "id"], unique=False)
        batch_op.create_index("ix_events_operator_id_occurred_at", ["operator_id", "occurred_at"], unique=False)
        batch_op.create_index("ix_events_operator_unit_occurred_at", ["operator_unit", "occurred_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_operator_unit_occurred_at")
        batch_op.drop_index("ix_events_operator_id_occurred_at")
        batch_op.drop_index("ix_events_occurred_at_id")
        batch_op.drop_index("ix_events_domain_occurred_at")
        batch_op.drop_index("ix_events_business_unit_id_occurred_at")
        batch_op.drop_index("ix_events_agent_id_occurred_at")

    op.drop_table("events")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_keys_name"))

    op.drop_table("api_keys")
    with op.batch_alter_table("units", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_units_parent_id"))

    op.drop_table("units")
