"""Hash chaining and the canonical content of stored events: pure functions, no database.

An entry's hash is SHA-256 (hex) over the RFC 8785 encoding of its content, its place in the chain
(`seq`) and the hash of the entry before it (`prev_hash`; 64 zeros for the first), so changing,
removing or reordering any entry breaks every link after it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from app.events.domains import MAX_SAFE_INTEGER
from app.jsonutil import canonical_hash

GENESIS = "0" * 64


def utc_text(at: datetime) -> str:
    """An instant as RFC 3339 text in UTC with a `Z`, as event content is hashed."""
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def as_sent(value: Any) -> Any:
    """A JSON value read back from the database, as it was before storing.

    Integers past ±2^53 are refused on input, so one read back was a float: PostgreSQL's jsonb keeps
    numbers as decimals and writes 1e21 as 1000000000000000000000, which reads back as an int.
    """
    if isinstance(value, dict):
        return {key: as_sent(item) for key, item in value.items()}
    if isinstance(value, list):
        return [as_sent(item) for item in value]
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_SAFE_INTEGER:
        return float(value)
    return value


def entry_hash(
    *,
    entry_id: int,
    seq: int,
    at: datetime,
    actor: str,
    action: str,
    object_type: str,
    object_id: str,
    unit: str | None,
    data: Any,
    prev_hash: str,
) -> str:
    """The hash that seals an entry at position `seq` after the entry whose hash is `prev_hash`."""
    body = {
        "id": entry_id,
        "seq": seq,
        "at": utc_text(at),
        "actor": actor,
        "action": action,
        "object_type": object_type,
        "object_id": object_id,
        "unit": unit,
        "data": data,
        "prev_hash": prev_hash,
    }
    if _flat(data):
        return _sha256_json(body)
    body["data"] = as_sent(data)
    return canonical_hash(body)


def event_content(row: Mapping[Any, Any]) -> dict[str, Any]:
    """The canonical content of a stored event (a row of `events`, by column name), exactly as
    `app.events.service.canonical_content` builds it from the event as posted: absent fields left
    out, the time in UTC, plus the source."""
    return _content(row, as_sent(row["attributes"]))


def _content(row: Mapping[Any, Any], attributes: Any) -> dict[str, Any]:
    operator = {"id": row["operator_id"], "kind": row["operator_kind"], "unit": row["operator_unit"]}
    if row["responsible_officer"] is not None:
        operator["responsible_officer"] = row["responsible_officer"]
    body: dict[str, Any] = {
        "source_event_id": row["source_event_id"],
        "domain": row["domain"],
        "action": row["action"],
        "occurred_at": utc_text(row["occurred_at"]),
        "operator": operator,
        "attributes": attributes,
        "source": row["source"],
    }
    if row["business_unit_id"] is not None or row["business_unit_kind"] is not None:
        body["business_unit"] = {"id": row["business_unit_id"], "kind": row["business_unit_kind"]}
    for name in ("agent_id", "object_ref"):
        if row[name] is not None:
            body[name] = row[name]
    return body


def _flat(document: Any) -> bool:
    """True for one level of text, safe integers, booleans and nulls under ASCII keys (most events and
    entries): then the standard encoder with sorted keys already writes RFC 8785, and nothing needs
    converting. Verify and seal run for every event and entry, and this skips the general encoder's walk."""
    if type(document) is not dict:
        return False
    for key, value in document.items():
        kind = type(value)
        if not key.isascii():
            return False
        if kind is str or kind is bool or value is None:
            continue
        if kind is int and -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            continue
        return False
    return True


def event_hash(row: Mapping[Any, Any]) -> str:
    """What the event's `content_hash` must be, recomputed from its columns."""
    return event_hash_with(row, row["attributes"])


def event_hash_with(row: Mapping[Any, Any], attributes: Any) -> str:
    """`event_hash` of a row whose attributes were read separately (verify reads them as text and parses
    them itself: a third of the time PostgreSQL's driver takes to hand over jsonb)."""
    if _flat(attributes):
        return _sha256_json(_content(row, attributes))
    return canonical_hash(_content(row, as_sent(attributes)))


def _sha256_json(value: dict[str, Any]) -> str:
    # Only for content whose keys are ASCII and whose numbers are safe integers (see _flat): for it the
    # standard encoder with sorted keys writes exactly the RFC 8785 bytes, as app.jsonutil does.
    text = json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
