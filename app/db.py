"""Engine, declarative base and the transaction boundary.

Services flush, never commit: the request (or CLI command) owns the transaction, so a state change
and everything written with it land together or not at all.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, DateTime, Engine, MetaData, Numeric, Table, Text, TextClause, column, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection, Dialect, make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.sql.selectable import TextualSelect
from sqlalchemy.types import TypeDecorator

from app.config import Settings
from app.jsonutil import dumps

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Free-form JSON documents: JSONB on PostgreSQL (indexable, compact), JSON text on SQLite.
JSONDocument = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """An aware datetime stored in UTC on every database and returned aware in UTC.

    SQLite has no time zone type, so values are stored there as naive UTC text, which sorts correctly.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are never stored: give a time zone")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class ExactDecimal(TypeDecorator[Decimal]):
    """An exact decimal number: NUMERIC on PostgreSQL, its decimal text on SQLite (whose NUMERIC is a float).

    On SQLite, arithmetic on these values goes through the ``decimal_add`` and ``decimal_sum`` functions
    every connection registers (see ``_configure_sqlite``), so sums never drift.
    """

    impl = Numeric
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(Text())
        return dialect.type_descriptor(Numeric(asdecimal=True))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        return str(value) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        return None if value is None else Decimal(str(value))


def decimal_of(value: Any) -> Decimal | None:
    """A number as an exact decimal (a float by its shortest round-tripping text, as JSON wrote it)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int | float):
        return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def _decimal_add(a: Any, b: Any) -> str | None:
    left, right = decimal_of(a), decimal_of(b)
    if left is None or right is None:
        return None if left is None and right is None else str(left if right is None else right)
    return str(left + right)


class _DecimalSum:
    """SQLite aggregate ``decimal_sum(x)``: the exact sum of the numbers among x, as decimal text (NULL: none)."""

    def __init__(self) -> None:
        self.total: Decimal | None = None

    def step(self, value: Any) -> None:
        number = decimal_of(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
        if number is not None:
            self.total = number if self.total is None else self.total + number

    def finalize(self) -> str | None:
        return None if self.total is None else str(self.total)


AFTER_COMMIT = "supervision.after_commit"


def after_commit(session: Session, callback: Callable[[], None]) -> None:
    """Run `callback` after the session's unit of work commits (never if it rolls back)."""
    session.info.setdefault(AFTER_COMMIT, []).append(callback)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _configure_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    # pysqlite's own transaction handling is turned off so that we emit BEGIN ourselves: write
    # transactions take the write lock up front (BEGIN IMMEDIATE) and queue on the busy timeout
    # instead of failing with "database is locked" when they try to upgrade a read lock.
    #
    # Within one process, writers first queue on a Python lock: a waiting thread is woken the moment
    # the lock is free, whereas SQLite's busy handler polls with sleeps of up to 100 ms, which made
    # the slowest writes wait close to a second under load. Other processes still meet the busy timeout.
    writer = threading.Lock()
    held = "supervision.sqlite_writer"

    def release(info: dict[str, Any]) -> None:
        if info.pop(held, False):
            writer.release()

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()
        dbapi_connection.create_function("decimal_add", 2, _decimal_add, deterministic=True)
        dbapi_connection.create_aggregate("decimal_sum", 1, _DecimalSum)

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        options = conn.get_execution_options()
        if options.get("isolation_level") == "AUTOCOMMIT":
            return
        if options.get("supervision_write"):
            if not conn.info.get(held):
                if not writer.acquire(timeout=busy_timeout_ms / 1000):
                    # Queued the whole busy timeout behind this process's writers: answered 503 (errors.py).
                    raise OperationalError("BEGIN IMMEDIATE", None, sqlite3.OperationalError("database is locked"))
                conn.info[held] = True
            try:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            except BaseException:
                release(conn.info)
                raise
        else:
            conn.exec_driver_sql("BEGIN DEFERRED")

    @event.listens_for(engine, "rollback")
    def _on_rollback(conn: Any) -> None:
        release(conn.info)

    @event.listens_for(engine.pool, "reset")
    def _on_reset(_dbapi_connection: Any, record: Any, _state: Any = None) -> None:
        # After COMMIT the session hands its connection back to the pool: the next writer may go.
        # ("commit" events fire before the COMMIT runs, too early to let the next writer in.)
        release(record.info)


def ensure_sqlite_folder(database_url: str) -> None:
    """SQLite creates its file but not the folder it lives in (./var/ on a fresh checkout)."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)


def make_engine(settings: Settings) -> Engine:
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite":
        ensure_sqlite_folder(settings.database_url)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": settings.sqlite_busy_timeout_ms / 1000},
            json_serializer=dumps,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            hide_parameters=True,
        )
        _configure_sqlite(engine, settings.sqlite_busy_timeout_ms)
        return engine
    return create_engine(
        url,
        json_serializer=dumps,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        # No pre-ping: it costs a round trip per request. A connection found dead instead fails its
        # request with a 503 (see errors.py), SQLAlchemy drops the whole stale pool, and the client's
        # retry (idempotent by source_event_id) lands on a fresh connection.
        pool_recycle=3600,
        # Error texts would otherwise carry the statement's parameters into logs: events' object_refs,
        # key hashes.
        hide_parameters=True,
        # A database host that does not answer at all must not hold a request past a client's patience:
        # the connection attempt fails (503, Retry-After) after a few seconds instead of TCP's minutes.
        connect_args={"application_name": "supervision", "connect_timeout": 5},
    )


class Database:
    """One engine and its two kinds of session: read (deferred) and write (lock taken up front)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = make_engine(settings)
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(self.engine.execution_options(supervision_write=True), expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self, *, write: bool = False) -> Iterator[Session]:
        """A unit of work: committed when the block ends normally, rolled back when it raises.

        Callbacks registered with `after_commit` run once the commit has succeeded.
        """
        factory = self._write if write else self._read
        with factory() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise
            for callback in session.info.pop(AFTER_COMMIT, ()):
                callback()

    def dispose(self) -> None:
        self.engine.dispose()


@lru_cache(maxsize=64)
def _insert_ignoring(dialect: str, table: Table, conflict: tuple[str, ...], returning: tuple[str, ...]) -> Any:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(table).on_conflict_do_nothing(index_elements=list(conflict))
    return statement.returning(*(table.c[name] for name in returning)) if returning else statement


def described(statement: TextClause, *names: str) -> TextualSelect:
    """A text statement that returns rows, with its result columns named (untyped: values arrive as the driver
    gives them). SQLAlchemy then reads the shape of its results once, not on every execution (a fifth of
    a small statement's cost in the client)."""
    return statement.columns(*(column(name) for name in names))


@lru_cache(maxsize=64)
def _driver_text(statement: TextualSelect, dialect: Dialect) -> str:
    return str(statement.compile(dialect=dialect))


def driver_rows(connection: Connection, statement: TextualSelect, parameters: Mapping[str, Any]) -> list[Any]:
    """The rows of a text statement run on the driver's own cursor, prepared (PostgreSQL's hot statements).

    SQLAlchemy's execution path (context, result, row objects) cost more in this process than the
    driver's for the small statements of each request, as much as a tenth of a single POST. The text
    statement is compiled once; untyped parameters travel as they would through SQLAlchemy. Errors come out
    as SQLAlchemy's (a lost connection is invalidated, with the pool it came from, as SQLAlchemy does)."""
    dialect = connection.dialect
    dbapi_connection = connection.connection.dbapi_connection
    assert dbapi_connection is not None
    text_form = _driver_text(statement, dialect)
    try:
        cursor: Any = dbapi_connection.cursor()  # a psycopg cursor: `prepare` is its own
        try:
            cursor.execute(text_form, parameters, prepare=True)
            rows: list[Any] = cursor.fetchall()
            return rows
        finally:
            cursor.close()
    except dialect.loaded_dbapi.Error as exc:
        lost = dialect.is_disconnect(exc, dbapi_connection, None)
        if lost:
            connection.invalidate(exc)
            connection.engine.dispose(close=False)
        raise DBAPIError.instance(
            text_form,
            dict(parameters),
            exc,
            dialect.loaded_dbapi.Error,
            hide_parameters=True,
            connection_invalidated=lost,
            dialect=dialect,
        ) from exc


def insert_ignoring(
    session: Session, table: Table, *, conflict: tuple[str, ...], returning: tuple[str, ...] = ()
) -> Any:
    """INSERT … ON CONFLICT (conflict) DO NOTHING [RETURNING …], built once per database and table.

    On the hot path building the statement cost as much as running it; a built statement is reused.
    """
    return _insert_ignoring(session.get_bind().dialect.name, table, conflict, returning)
