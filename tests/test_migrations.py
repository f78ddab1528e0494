"""The schema comes only from the migrations: they agree with the models, and they go down and up again."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from app.config import normalize_database_url
from app.db import Database
from app.migrate import alembic_config, at_head, head_revisions, upgrade_head
from app.models import Base
from tests.conftest import TEST_DB_ENV

TABLES = {table.name for table in Base.metadata.sorted_tables}


def differences(url: str) -> list[Any]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


def tables_and_head(url: str) -> tuple[set[str], bool]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return set(inspect(conn).get_table_names()) - {"alembic_version"}, at_head(conn)
    finally:
        engine.dispose()


def test_the_models_and_the_migrations_agree(db: Database) -> None:
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    assert diff == []


def test_the_test_database_is_at_the_single_head(db: Database) -> None:
    assert len(head_revisions()) == 1
    with db.engine.connect() as conn:
        assert at_head(conn)
        assert TABLES <= set(inspect(conn).get_table_names())


BACKENDS = ["sqlite", *(["postgresql"] if os.environ.get(TEST_DB_ENV) else [])]


@pytest.fixture(params=BACKENDS)
def fresh_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of its own: a new SQLite file, or a PostgreSQL database made and dropped here."""
    if request.param == "sqlite":
        yield normalize_database_url(f"sqlite:///{tmp_path / 'fresh.db'}")
        return
    server = make_url(normalize_database_url(os.environ[TEST_DB_ENV]))
    name = f"supervision_migrations_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_a_fresh_database_goes_up_down_and_up_again(fresh_database: str) -> None:
    assert tables_and_head(fresh_database) == (set(), False)

    upgrade_head(fresh_database)
    assert tables_and_head(fresh_database) == (TABLES, True)
    assert differences(fresh_database) == []

    command.downgrade(alembic_config(fresh_database), "base")
    assert tables_and_head(fresh_database) == (set(), False)

    upgrade_head(fresh_database)
    assert tables_and_head(fresh_database) == (TABLES, True)
    assert differences(fresh_database) == []


def test_upgrading_a_database_at_head_changes_nothing(fresh_database: str) -> None:
    upgrade_head(fresh_database)
    engine = create_engine(fresh_database)
    try:
        with engine.begin() as conn:
            now = "2026-11-21 00:00:00"
            conn.execute(
                text(
                    "INSERT INTO units (id, registered_by, created_at, updated_at) VALUES ('ZD', 'admin', :now, :now)"
                ),
                {"now": now},
            )
        upgrade_head(fresh_database)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT id FROM units")).scalars().all() == ["ZD"]
            assert at_head(conn)
    finally:
        engine.dispose()


def test_migrate_creates_the_folder_of_a_new_sqlite_database(tmp_path: Path) -> None:
    target = tmp_path / "var" / "nested" / "supervision.db"
    upgrade_head(normalize_database_url(f"sqlite:///{target}"))
    assert target.exists()
