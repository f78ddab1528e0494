"""Request-scoped dependencies: the database and the transaction a request owns."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from app.db import Database


def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def _read_session(request: Request) -> Iterator[Session]:
    with get_db(request).session() as session:
        yield session


def _write_session(request: Request) -> Iterator[Session]:
    with get_db(request).session(write=True) as session:
        yield session


# scope="function": the transaction commits (or rolls back) when the endpoint returns, before the
# response is sent, so a client never sees a success whose commit then failed.
ReadSession = Annotated[Session, Depends(_read_session, scope="function")]
WriteSession = Annotated[Session, Depends(_write_session, scope="function")]
