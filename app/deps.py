"""Request-scoped dependencies: the database and the transaction a request owns."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from app.db import Database


async def get_db(request: Request) -> Database:
    # async: no I/O here, so FastAPI calls it on the event loop instead of hopping to a thread.
    db: Database = request.app.state.db
    return db


def _read_session(db: Annotated[Database, Depends(get_db)]) -> Iterator[Session]:
    with db.session() as session:
        yield session


def _write_session(db: Annotated[Database, Depends(get_db)]) -> Iterator[Session]:
    with db.session(write=True) as session:
        yield session


DatabaseDep = Annotated[Database, Depends(get_db)]

# scope="function": the transaction commits (or rolls back) when the endpoint returns, before the
# response is sent, so a client never sees a success whose commit then failed.
ReadSession = Annotated[Session, Depends(_read_session, scope="function")]
WriteSession = Annotated[Session, Depends(_write_session, scope="function")]
