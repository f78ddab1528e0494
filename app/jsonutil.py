"""JSON helpers shared by the database layer, hashing and responses."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import rfc8785


def dumps(value: Any) -> str:
    # Chinese text is stored as itself, not as \u escapes, so the database reads like the input.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def canonical_hash(value: Any) -> str:
    """SHA-256 (hex) of the RFC 8785 canonical encoding: equal content gives an equal hash."""
    return hashlib.sha256(rfc8785.dumps(value)).hexdigest()
