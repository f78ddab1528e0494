"""Keyset pagination: `{items, next_cursor}` with an opaque cursor holding the last row's sort key."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel

from app.errors import InvalidInput
from app.events.domains import text_problem

T = TypeVar("T")

DEFAULT_LIMIT = 50
MAX_LIMIT = 500

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"page size, at most {MAX_LIMIT}")]
Cursor = Annotated[str | None, Query(max_length=512, description="`next_cursor` of the previous page")]


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
        raise InvalidInput([(("query", "cursor"), "not a cursor returned by this list")])
    return list(value[1:])


def decode_id_cursor(kind: str, cursor: str | None) -> int | None:
    """The last id of the previous page of a list in id order (None: the first page)."""
    if cursor is None:
        return None
    (last,) = decode_cursor(kind, cursor, arity=1)
    if not isinstance(last, int) or isinstance(last, bool):
        raise InvalidInput([(("query", "cursor"), "not a cursor returned by this list")])
    return last
