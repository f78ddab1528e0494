"""The audit trail: audit_log, append-only on PostgreSQL (a trigger refuses changes and deletes).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 03:00:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Entries are inserted pending and sealed once: the only UPDATE allowed fills seq, prev_hash and hash of
# a pending entry and changes nothing else. DELETE is refused. TRUNCATE is refused too, except to a
# superuser, who could disable the trigger anyway (the test suite empties every table that way).
# SQLite has no such guard; verify finds what was changed there.
_GUARD = """
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.seq IS NULL AND NEW.prev_hash IS NULL AND NEW.hash IS NULL THEN
            RETURN NEW;
        END IF;
        RAISE EXCEPTION 'audit_log: an entry is inserted pending (seq, prev_hash and hash NULL) and sealed later'
            USING ERRCODE = 'restrict_violation';
    ELSIF TG_OP = 'UPDATE' THEN
        IF OLD.seq IS NULL AND OLD.prev_hash IS NULL AND OLD.hash IS NULL
            AND NEW.seq IS NOT NULL AND NEW.prev_hash IS NOT NULL AND NEW.hash IS NOT NULL
            AND NEW.id = OLD.id
            AND NEW.at IS NOT DISTINCT FROM OLD.at
            AND NEW.actor IS NOT DISTINCT FROM OLD.actor
            AND NEW.action IS NOT DISTINCT FROM OLD.action
            AND NEW.object_type IS NOT DISTINCT FROM OLD.object_type
            AND NEW.object_id IS NOT DISTINCT FROM OLD.object_id
            AND NEW.unit IS NOT DISTINCT FROM OLD.unit
            AND NEW.data IS NOT DISTINCT FROM OLD.data
        THEN
            RETURN NEW;
        END IF;
        RAISE EXCEPTION 'audit_log is append-only: entry % may only be sealed, once', OLD.id
            USING ERRCODE = 'restrict_violation';
    ELSIF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'audit_log is append-only: entry % may not be deleted', OLD.id
            USING ERRCODE = 'restrict_violation';
    ELSIF current_setting('is_superuser') <> 'on' THEN
        RAISE EXCEPTION 'audit_log is append-only: TRUNCATE is refused' USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NULL;
END
$$
"""


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("object_type", sa.String(length=32), nullable=False),
        sa.Column("object_id", sa.String(length=64), nullable=False),
        sa.Column("unit", sa.String(length=64), nullable=True),
        sa.Column(
            "data", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False
        ),
        sa.Column("seq", sa.BigInteger(), nullable=True),
        sa.Column("prev_hash", sa.String(length=64), nullable=True),
        sa.Column("hash", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
        sa.UniqueConstraint("seq", name=op.f("uq_audit_log_seq")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index("ix_audit_log_action_seq", ["action", "seq"], unique=False)
        batch_op.create_index(
            "ix_audit_log_object_type_object_id_seq", ["object_type", "object_id", "seq"], unique=False
        )

    if op.get_bind().dialect.name == "postgresql":
        op.execute(_GUARD)
        op.execute(
            "CREATE TRIGGER audit_log_append_only BEFORE INSERT OR UPDATE OR DELETE ON audit_log "
            "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()"
        )
        op.execute(
            "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log")
        op.execute("DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log")
        op.execute("DROP FUNCTION IF EXISTS audit_log_append_only()")

    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_log_object_type_object_id_seq")
        batch_op.drop_index("ix_audit_log_action_seq")

    op.drop_table("audit_log")
