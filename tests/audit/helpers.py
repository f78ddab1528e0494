"""Helpers of the audit tests: recording entries, and changing rows behind the service's back."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from app.audit import service
from app.audit.models import AuditEntry
from app.db import Database


def is_postgresql(db: Database) -> bool:
    return db.dialect == "postgresql"


def only_postgresql(db: Database) -> None:
    if not is_postgresql(db):
        pytest.skip("PostgreSQL only (run with SUPERVISION_TEST_DATABASE_URL)")


def record_some(db: Database, count: int, *, seal: bool = True, **overrides: Any) -> list[int]:
    """`count` entries for unit changes, committed (and sealed unless told not to); their ids."""
    ids = []
    with db.session(write=True) as session:
        for index in range(count):
            fields: dict[str, Any] = {
                "actor": "admin",
                "action": "unit.changed",
                "object_type": "unit",
                "object_id": f"U{index}",
                "data": {"parent": None, "label_zh": f"第{index}中队", "index": index},
                **overrides,
            }
            ids.append(service.record(session, **fields))
        if seal:
            service.seal(session)
    return ids


def entries(db: Database) -> list[AuditEntry]:
    """Every entry, in id order."""
    with db.session() as session:
        return list(session.scalars(select(AuditEntry).order_by(AuditEntry.id)))


def verdict(db: Database) -> service.Verdict:
    service.seal_pending(db)
    with db.session() as session:
        return service.verify(session)


@contextmanager
def tampering(db: Database) -> Iterator[Session]:
    """A write session that edits the database directly, as someone with its password could; on PostgreSQL
    with the append-only trigger switched off for the while, as a superuser could."""
    with db.session(write=True) as session:
        if is_postgresql(db):
            session.execute(text("ALTER TABLE audit_log DISABLE TRIGGER USER"))
        yield session
        if is_postgresql(db):
            session.execute(text("ALTER TABLE audit_log ENABLE TRIGGER USER"))
