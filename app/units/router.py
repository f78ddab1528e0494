from __future__ import annotations

from fastapi import APIRouter, Response

from app.auth.deps import AdminKey, InspectorKey
from app.deps import ReadSession, WriteSession
from app.errors import responses
from app.pagination import Cursor, Limit, Page, decode_cursor, encode_cursor
from app.params import PathId, QueryId
from app.units import service
from app.units.models import Unit
from app.units.schemas import UnitIn, UnitOut

router = APIRouter(prefix="/v1/units", tags=["units"])


def unit_out(unit: Unit) -> UnitOut:
    return UnitOut(
        id=unit.id,
        parent=unit.parent_id,
        label_zh=unit.label_zh,
        label_en=unit.label_en,
        registered_by=unit.registered_by,
        created_at=unit.created_at,
        updated_at=unit.updated_at,
    )


@router.put(
    "/{unit_id}",
    responses={201: {"model": UnitOut, "description": "created"}, **responses(400, 401, 403, 413, 422)},
)
def put_unit(unit_id: PathId, body: UnitIn, admin: AdminKey, session: WriteSession, response: Response) -> UnitOut:
    """Create or replace an org unit (200 replaced, 201 created)."""
    saved = service.put_unit(
        session,
        unit_id=unit_id,
        parent=body.parent,
        label_zh=body.label_zh,
        label_en=body.label_en,
        actor=admin.name,
    )
    if saved.created:
        response.status_code = 201
    return unit_out(saved.unit)


@router.get("", responses=responses(401, 403, 422))
def list_units(
    principal: InspectorKey,
    session: ReadSession,
    parent: QueryId = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[UnitOut]:
    """The org units (within the key's unit for a scoped key), by id; `parent` lists one unit's children."""
    after = str(decode_cursor("units", cursor, arity=1)[0]) if cursor else None
    rows = service.list_units(session, limit=limit + 1, after=after, parent=parent, scope=principal.unit_id)
    page = rows[:limit]
    next_cursor = encode_cursor("units", [page[-1].id]) if len(rows) > limit else None
    return Page[UnitOut](items=[unit_out(unit) for unit in page], next_cursor=next_cursor)


@router.get("/{unit_id}", responses=responses(401, 403, 404, 422))
def get_unit(unit_id: PathId, principal: InspectorKey, session: ReadSession) -> UnitOut:
    """One org unit."""
    return unit_out(service.get_unit(session, unit_id=unit_id, scope=principal.unit_id))
