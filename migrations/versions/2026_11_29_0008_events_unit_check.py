"""An event's org unit is checked by a trigger, not a foreign key.

The foreign key `events.operator_unit → units.id` share-locked the unit's row for every event stored
(`SELECT … FOR KEY SHARE`): a write to that row and to the WAL per event, and a multixact whenever
concurrent requests named the same unit, which a detachment's few units always are. It doubled what
PostgreSQL spent on an event. Two triggers keep what the key guaranteed, without the lock: an event
naming an unknown unit is refused with a foreign-key violation (ingest then registers the unit and tries
again, see `units.service`), and a unit that events name cannot be deleted, nor its id changed.

Unlike the key, the triggers take no lock: a hand-made DELETE of a unit that no committed event names yet,
racing an ingest that names it, could leave that event without its unit. The service never deletes units.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29 17:00:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FK = "fk_events_operator_unit_units"

POSTGRESQL_UP = (
    """
    CREATE FUNCTION events_unit_known() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM 1 FROM units WHERE id = NEW.operator_unit;
        IF NOT FOUND THEN
            RAISE foreign_key_violation USING
                MESSAGE = format('events.operator_unit %L is not a registered unit', NEW.operator_unit);
        END IF;
        RETURN NEW;
    END $$
    """,
    """
    CREATE TRIGGER events_unit_known BEFORE INSERT OR UPDATE OF operator_unit ON events
    FOR EACH ROW EXECUTE FUNCTION events_unit_known()
    """,
    """
    CREATE FUNCTION units_not_named_by_events() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF EXISTS (SELECT 1 FROM events WHERE operator_unit = OLD.id) THEN
            RAISE foreign_key_violation USING
                MESSAGE = format('unit %L is named by stored events', OLD.id);
        END IF;
        RETURN OLD;
    END $$
    """,
    """
    CREATE TRIGGER units_not_named_by_events BEFORE DELETE OR UPDATE OF id ON units
    FOR EACH ROW EXECUTE FUNCTION units_not_named_by_events()
    """,
)
POSTGRESQL_DOWN = (
    "DROP TRIGGER units_not_named_by_events ON units",
    "DROP FUNCTION units_not_named_by_events()",
    "DROP TRIGGER events_unit_known ON events",
    "DROP FUNCTION events_unit_known()",
)

SQLITE_UP = (
    """
    CREATE TRIGGER events_unit_known BEFORE INSERT ON events
    WHEN NOT EXISTS (SELECT 1 FROM units WHERE id = NEW.operator_unit)
    BEGIN SELECT RAISE(ABORT, 'FOREIGN KEY constraint failed: events.operator_unit is not a registered unit'); END
    """,
    """
    CREATE TRIGGER events_unit_known_update BEFORE UPDATE OF operator_unit ON events
    WHEN NOT EXISTS (SELECT 1 FROM units WHERE id = NEW.operator_unit)
    BEGIN SELECT RAISE(ABORT, 'FOREIGN KEY constraint failed: events.operator_unit is not a registered unit'); END
    """,
    """
    CREATE TRIGGER units_not_named_by_events BEFORE DELETE ON units
    WHEN EXISTS (SELECT 1 FROM events WHERE operator_unit = OLD.id)
    BEGIN SELECT RAISE(ABORT, 'FOREIGN KEY constraint failed: the unit is named by stored events'); END
    """,
    """
    CREATE TRIGGER units_id_not_named_by_events BEFORE UPDATE OF id ON units
    WHEN EXISTS (SELECT 1 FROM events WHERE operator_unit = OLD.id)
    BEGIN SELECT RAISE(ABORT, 'FOREIGN KEY constraint failed: the unit is named by stored events'); END
    """,
)
SQLITE_DOWN = (
    "DROP TRIGGER units_id_not_named_by_events",
    "DROP TRIGGER units_not_named_by_events",
    "DROP TRIGGER events_unit_known_update",
    "DROP TRIGGER events_unit_known",
)


def upgrade() -> None:
    # SQLite drops a constraint by copying the table; the copy keeps AUTOINCREMENT (ids never reused).
    with op.batch_alter_table("events", table_kwargs={"sqlite_autoincrement": True}) as batch_op:
        batch_op.drop_constraint(FK, type_="foreignkey")
    for statement in POSTGRESQL_UP if op.get_context().dialect.name == "postgresql" else SQLITE_UP:
        op.execute(statement)


def downgrade() -> None:
    for statement in POSTGRESQL_DOWN if op.get_context().dialect.name == "postgresql" else SQLITE_DOWN:
        op.execute(statement)
    with op.batch_alter_table("events", table_kwargs={"sqlite_autoincrement": True}) as batch_op:
        batch_op.create_foreign_key(FK, "units", ["operator_unit"], ["id"])
