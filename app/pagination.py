"""Keyset pagination: `{items, next_cursor}` with an opaque cursor holding the last row's sort key."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel

from app.errors import InvalidInput
from app.events.domains import text_problem
from app.fields import MAX_INT_ROW_ID, MAX_ROW_ID

T = TypeVar("T")

DEFAULT_LIMIT = 50
MAX_LIMIT = 500

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"page size, at most {MAX_LIMIT}")]
# Cursors are unpadded base64url text; the pattern and length are stated so clients and fuzzers know them.
CURSOR_PATTERN = r"^[A-Za-z0-9_-]+$"
Cursor = Annotated[
    str | None,
    Query(min_length=1, max_length=512, pattern=CURSOR_PATTERN, description="`next_cursor` of the previous page"),
]


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None


def encode_cursor(kind: str, key: list[Any]) -> str:
    raw = json.dumps([kind, *key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(kind: str, cursor: str, *, arity: int) -> list[Any]:
    """The sort key in `cursor`; a cursor from another list, or garbled, is a 422 naming `cursor`."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        value = None
    valid = isinstance(value, list) and len(value) == arity + 1 and value[0] == kind
    if not valid or any(isinstance(part, str) and text_problem(part) for part in value):
        raise _not_ours()
    return list(value[1:])


def _not_ours() -> InvalidInput:
    return InvalidInput([(("query", "cursor"), "not a cursor returned by this list")])


# The lists whose ids are BIGINT columns; the others' are INTEGER (see app.fields).
_BIG_IDS = {"events", "audit"}


def _row_id(kind: str, value: Any) -> int:
    # A forged cursor may carry any JSON number; one past the column's range fails in the database.
    top = MAX_ROW_ID if kind in _BIG_IDS else MAX_INT_ROW_ID
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= top:
        raise _not_ours()
    return value


def decode_id_cursor(kind: str, cursor: str | None) -> int | None:
    """The last id of the previous page of a list in id order (None: the first page)."""
    if cursor is None:
        return None
    (last,) = decode_cursor(kind, cursor, arity=1)
    return _row_id(kind, last)


def decode_time_id_cursor(kind: str, cursor: str | None) -> tuple[datetime, int] | None:
    """The last (time, id) of the previous page of a list in time order (None: the first page)."""
    if cursor is None:
        return None
    at, last = decode_cursor(kind, cursor, arity=2)
    try:
        when = datetime.fromisoformat(at)
    except (TypeError, ValueError):
        raise _not_ours() from None
    if when.tzinfo is None:
        raise _not_ours()
    return when, _row_id(kind, last)
