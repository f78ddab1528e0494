"""JSON helpers shared by the database layer, hashing and responses."""

from __future__ import annotations

import hashlib
import json
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
