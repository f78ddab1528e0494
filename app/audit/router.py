"""Audit endpoints (审计日志): list the trail, verify it, take a checkpoint of the events."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.audit import service
from app.audit.models import AuditEntry
from app.audit.schemas import AuditEntryOut, VerdictOut
from app.auth.deps import AdminKey, InspectorKey
from app.deps import DatabaseDep
from app.errors import InvalidInput, responses
from app.pagination import Cursor, Limit, Page, decode_id_cursor, encode_cursor
from app.params import QueryId, QueryTime
from app.units.service import subtree

router = APIRouter(prefix="/v1/audit", tags=["audit"])


def entry_out(entry: AuditEntry) -> AuditEntryOut:
    seq, prev_hash, digest = entry.seq, entry.prev_hash, entry.hash
    if seq is None or prev_hash is None or digest is None:
        raise ValueError(f"audit entry {entry.id} is not sealed yet")
    return AuditEntryOut(
        id=entry.id,
        seq=seq,
        at=entry.at,
        actor=entry.actor,
        action=entry.action,
        object_type=entry.object_type,
        object_id=entry.object_id,
        unit=entry.unit,
        data=entry.data,
        prev_hash=prev_hash,
        hash=digest,
    )


# Sync routes: FastAPI runs them in its thread pool, where sealing and the walk over the chain block nothing.


@router.get("", responses=responses(401, 403, 422))
def list_audit(
    principal: InspectorKey,
    db: DatabaseDep,
    action: QueryId = None,
    object_type: QueryId = None,
    object_id: QueryId = None,
    actor: QueryId = None,
    time_from: Annotated[QueryTime | None, Query(alias="from", description="at ≥ from")] = None,
    time_to: Annotated[QueryTime | None, Query(alias="to", description="at < to")] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[AuditEntryOut]:
    """The audit trail, newest first (by seq), filtered and paged; a unit-scoped key sees its units' entries."""
    if time_from is not None and time_to is not None and time_to <= time_from:
        raise InvalidInput([(("query", "to"), "must be after `from`")])
    after = decode_id_cursor("audit", cursor)
    filters = service.AuditFilter(
        action=action,
        object_type=object_type,
        object_id=object_id,
        actor=actor,
        time_from=time_from,
        time_to=time_to,
    )
    service.seal_pending(db)
    with db.session() as session:
        rows = service.list_entries(
            session,
            filters=filters,
            limit=limit + 1,
            after=after,
            units=subtree(principal.unit_id) if principal.unit_id else None,
        )
        page = rows[:limit]
        next_cursor = encode_cursor("audit", [page[-1].seq]) if len(rows) > limit else None
        return Page[AuditEntryOut](items=[entry_out(row) for row in page], next_cursor=next_cursor)


@router.get("/verify", responses=responses(401, 403))
def verify_audit(principal: InspectorKey, db: DatabaseDep) -> VerdictOut:
    """Recompute the hash chain and every checkpoint of the events; name the first entry that does not hold."""
    service.seal_pending(db)
    with db.session() as session:
        verdict = service.verify(session)
    # The details name events and changes of any unit: a unit-scoped key is told only where the chain breaks.
    scoped = principal.unit_id is not None
    return VerdictOut(
        ok=verdict.ok,
        checked=verdict.checked,
        first_mismatch=verdict.first_mismatch,
        reason=None if scoped else verdict.reason,
        changed_events=[] if scoped else verdict.changed_events,
        head_seq=verdict.head_seq,
        head_hash=verdict.head_hash,
    )


@router.post(
    "/checkpoints",
    status_code=201,
    responses=responses(
        401,
        403,
        s503="the database is unavailable or busy, or transactions writing events did not finish in time; "
        "send the request again after Retry-After",
    ),
)
def post_audit_checkpoint(admin: AdminKey, db: DatabaseDep) -> AuditEntryOut:
    """Append a checkpoint of the events stored so far (count, last id, hash over their content hashes)."""
    return entry_out(service.take_checkpoint(db, actor=admin.name))
