"""JSON helpers shared by the database layer, hashing and responses."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import rfc8785

# RFC 8785 sorts keys by UTF-16 code units; Python sorts by code points. The two orders agree
# unless a key holds a character from U+E000 up (BMP private use and above, or astral characters).
_UTF16_ORDER_LIMIT = "\ue000"
_MAX_EXACT = 2**53


def dumps(value: Any) -> str:
    # Chinese text is stored as itself, not as \u escapes, so the database reads like the input.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _plain(value: Any) -> Any:
    """`value` with integral floats as ints, or None when only the full RFC 8785 encoder is exact
    (a fractional float, whose ECMAScript spelling can differ from Python's, or a key whose
    UTF-16 order differs from Python's)."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if max(key, default="") >= _UTF16_ORDER_LIMIT:
                return None
            plain = _plain(item)
            if plain is None and item is not None:
                return None
            out[key] = plain
        return out
    if isinstance(value, list):
        items = []
        for item in value:
            plain = _plain(item)
            if plain is None and item is not None:
                return None
            items.append(plain)
        return items
    if isinstance(value, float):
        return int(value) if value.is_integer() and abs(value) < _MAX_EXACT else None
    return value


def canonical_json(value: Any) -> bytes:
    """The RFC 8785 (JCS) encoding of `value`.

    Most event content holds only text, integers and integral numbers, for which the C JSON encoder
    with sorted keys already produces the JCS bytes; anything else goes through the rfc8785 library.
    """
    plain = _plain(value)
    if plain is None and value is not None:
        return rfc8785.dumps(value)
    return json.dumps(plain, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def canonical_hash(value: Any) -> str:
    """SHA-256 (hex) of the canonical encoding: equal content gives an equal hash."""
    return hashlib.sha256(canonical_json(value)).hexdigest()


# Limits of the free-form JSON a client sends (an event's `attributes`); the contract's other fields
# are bounded by their schemas (app/fields.py).
MAX_TEXT = 4096  # characters of any string, a key or a value
MAX_ITEMS = 1000  # items of any array
MAX_KEYS = 64  # keys of the outermost object
MAX_DEPTH = 8  # levels of nesting, the outermost object being level 1
MAX_BYTES = 16 * 1024  # of its UTF-8 JSON text as stored

Loc = tuple[str | int, ...]


def size_errors(value: Any, loc: Loc) -> Iterator[tuple[Loc, str]]:
    """Where free-form JSON (an object) passes the limits above, each naming the offending place. It
    does not descend past MAX_DEPTH, so nothing here recurses further than that."""
    if isinstance(value, dict) and len(value) > MAX_KEYS:
        yield loc, f"at most {MAX_KEYS} keys; this has {len(value)}"
    found = list(_nested_errors(value, loc, 1))
    yield from found
    if not found:
        size = len(dumps(value).encode("utf-8", "surrogatepass"))
        if size > MAX_BYTES:
            yield loc, f"at most {MAX_BYTES} bytes as JSON; this is {size}"


def _nested_errors(value: Any, loc: Loc, level: int) -> Iterator[tuple[Loc, str]]:
    if isinstance(value, dict | list):
        if level > MAX_DEPTH:
            yield loc, f"at most {MAX_DEPTH} levels deep"
            return
        if isinstance(value, list):
            if len(value) > MAX_ITEMS:
                yield loc, f"at most {MAX_ITEMS} items; this has {len(value)}"
            for index, item in enumerate(value):
                yield from _nested_errors(item, (*loc, index), level + 1)
        else:
            for key, item in value.items():
                if len(key) > MAX_TEXT:
                    yield (*loc, key[:32] + "…"), f"keys are at most {MAX_TEXT} characters; this one has {len(key)}"
                yield from _nested_errors(item, (*loc, key), level + 1)
    elif isinstance(value, str) and len(value) > MAX_TEXT:
        yield loc, f"at most {MAX_TEXT} characters; this has {len(value)}"
