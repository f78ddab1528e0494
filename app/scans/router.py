from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from app.auth.deps import AdminKey, InspectorKey
from app.db import Database
from app.deps import ReadSession
from app.errors import responses
from app.pagination import Cursor, Limit, Page, decode_id_cursor, encode_cursor
from app.params import RowId
from app.scans import service
from app.scans.models import Scan
from app.scans.schemas import ScanIn, ScanOut

router = APIRouter(prefix="/v1/scans", tags=["scans"])


def scan_out(scan: Scan) -> ScanOut:
    return ScanOut(
        id=scan.id,
        trigger=scan.trigger,
        actor=scan.actor,
        status=scan.status,
        time_from=scan.range_from,
        time_to=scan.range_to,
        started_at=scan.started_at,
        finished_at=scan.finished_at,
        duration_ms=scan.duration_ms,
        rules=scan.rules,
        windows=scan.windows,
        events=scan.events,
        alerts_raised=scan.alerts_raised,
        alerts_updated=scan.alerts_updated,
        alerts_cleared=scan.alerts_cleared,
        breakers_tripped=scan.breakers_tripped,
        overdue_flagged=scan.overdue_flagged,
        windows_repaired=scan.windows_repaired,
        error=scan.error,
    )


@router.post("", status_code=201, responses=responses(400, 401, 403, 413, 422))
async def post_scan(admin: AdminKey, request: Request, body: ScanIn | None = None) -> ScanOut:
    """Run every rule over every window holding stored events in the range (default: all), now; answer the run."""
    body = body or ScanIn()
    db: Database = request.app.state.db
    rules = request.app.state.rules.current(db)
    scan = await run_in_threadpool(
        service.run_scan,
        db,
        rules,
        request.app.state.settings.zone,
        trigger="api",
        actor=admin.name,
        time_from=body.time_from,
        time_to=body.time_to,
    )
    return scan_out(scan)


@router.get("", responses=responses(401, 403, 422))
def list_scans(
    _principal: InspectorKey, session: ReadSession, limit: Limit = 50, cursor: Cursor = None
) -> Page[ScanOut]:
    """Scan runs with their figures, newest first."""
    after = decode_id_cursor("scans", cursor)
    rows = service.list_scans(session, limit=limit + 1, after=after)
    page = rows[:limit]
    next_cursor = encode_cursor("scans", [page[-1].id]) if len(rows) > limit else None
    return Page[ScanOut](items=[scan_out(s) for s in page], next_cursor=next_cursor)


@router.get("/{scan_id}", responses=responses(401, 403, 404, 422))
def get_scan(scan_id: RowId, _principal: InspectorKey, session: ReadSession) -> ScanOut:
    """One scan run."""
    return scan_out(service.get_scan(session, scan_id))
