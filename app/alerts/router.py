from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Query, Response
from sqlalchemy.orm import Session

from app.alerts import service
from app.alerts.models import Alert, AlertTransition
from app.alerts.schemas import AlertDetail, AlertOut, Stage, TransitionIn, TransitionOut
from app.auth.deps import InspectorKey
from app.db import utcnow
from app.deps import ReadSession, WriteSession
from app.errors import InvalidInput, responses
from app.events.domains import Domain
from app.pagination import Cursor, Limit, Page, decode_time_id_cursor, encode_cursor
from app.params import QueryId, QueryTime, RowId
from app.rules.spec import Severity
from app.units.service import subtree

router = APIRouter(prefix="/v1/alerts", tags=["alerts"])


def alert_out(alert: Alert, now: datetime) -> AlertOut:
    return AlertOut(
        id=alert.id,
        rule_id=alert.rule_id,
        severity=Severity(alert.severity),
        subject_type=alert.subject_type,
        subject_id=alert.subject_id,
        domains=[Domain(d) for d in alert.domains.strip(",").split(",")],
        window_start=alert.window_start,
        window_end=alert.window_end,
        value=alert.value,
        hits=alert.hits,
        unit=alert.unit,
        stage=Stage(alert.stage),
        tripped=alert.tripped,
        cleared=alert.cleared,
        cleared_at=alert.cleared_at,
        overdue=service.is_overdue(alert, now),
        assignee_unit=alert.assignee_unit,
        due_at=alert.due_at,
        responsible_officer=alert.responsible_officer,
        exempted=alert.exempted,
        exemption_id=alert.exemption_id,
        first_event_at=alert.first_event_at,
        last_event_at=alert.last_event_at,
        created_at=alert.created_at,
        updated_at=alert.updated_at,
    )


@router.get("", responses=responses(401, 403, 422))
def list_alerts(
    principal: InspectorKey,
    session: ReadSession,
    stage: Stage | None = None,
    domain: Domain | None = None,
    rule: QueryId = None,
    subject: QueryId = None,
    unit: Annotated[QueryId, Query(description="this org unit and the units below it")] = None,
    severity: Severity | None = None,
    overdue: bool | None = None,
    cleared: bool | None = None,
    exempted: Annotated[
        Literal["true", "false", "any"], Query(description="exempted alerts (报备) are hidden unless true or any")
    ] = "false",
    time_from: Annotated[QueryTime | None, Query(alias="from", description="window_start ≥ from")] = None,
    time_to: Annotated[QueryTime | None, Query(alias="to", description="window_start < to")] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[AlertOut]:
    """Alerts, newest window first, filtered and paged (a scoped key sees its units' alerts only)."""
    if time_from is not None and time_to is not None and time_to <= time_from:
        raise InvalidInput([(("query", "to"), "must be after `from`")])
    after = decode_time_id_cursor("alerts", cursor)
    filters = service.AlertFilter(
        stage=stage.value if stage else None,
        domain=domain.value if domain else None,
        rule=rule,
        subject=subject,
        unit=unit,
        severity=severity.value if severity else None,
        overdue=overdue,
        cleared=cleared,
        exempted=None if exempted == "any" else exempted == "true",
        time_from=time_from,
        time_to=time_to,
    )
    scope = subtree(principal.unit_id) if principal.unit_id else None
    now = utcnow()
    rows = service.list_alerts(session, now=now, filters=filters, limit=limit + 1, after=after, units=scope)
    page, more = rows[:limit], len(rows) > limit
    next_cursor = encode_cursor("alerts", [page[-1].window_start.isoformat(), page[-1].id]) if more else None
    return Page[AlertOut](items=[alert_out(row, now) for row in page], next_cursor=next_cursor)


def _detail(session: Session, alert: Alert, response: Response) -> AlertDetail:
    response.headers["ETag"] = service.etag(alert)
    return alert_detail(session, alert)


def alert_detail(session: Session, alert: Alert, transitions: list[AlertTransition] | None = None) -> AlertDetail:
    """The alert as `GET /v1/alerts/{id}` shows it (webhook payloads carry the same; they pass the
    `transitions` read for many alerts at once)."""
    evidence = {**alert.evidence, "responsible_officer": alert.responsible_officer}
    history = [
        TransitionOut(
            from_stage=Stage(t.from_stage),
            to_stage=Stage(t.to_stage),
            actor=t.actor,
            at=t.at,
            reason=t.reason,
            details=t.details,
        )
        for t in (service.history(session, alert.id) if transitions is None else transitions)
    ]
    return AlertDetail(**alert_out(alert, utcnow()).model_dump(), evidence=evidence, history=history)


@router.get("/{alert_id}", responses=responses(401, 403, 404, 422))
def get_alert(alert_id: RowId, principal: InspectorKey, session: ReadSession, response: Response) -> AlertDetail:
    """One alert with its evidence (the triggering events' ids, the measured value) and history; `ETag` is its
    version, for `If-Match` on a transition."""
    scope = subtree(principal.unit_id) if principal.unit_id else None
    return _detail(session, service.get_alert(session, alert_id, units=scope), response)


@router.post("/{alert_id}/transitions", responses=responses(400, 401, 403, 404, 409, 412, 413, 422))
def transition_alert(
    alert_id: RowId,
    move: TransitionIn,
    principal: InspectorKey,
    session: WriteSession,
    response: Response,
    if_match: Annotated[str | None, Header(description="the ETag read; a stale one is a 412")] = None,
) -> AlertDetail:
    """Move the alert through 预警 → 提级督办 → 警示约谈 → 追责问责 (forward only; a stage may be skipped),
    or to closed / dismissed from any open stage. 409 lists the allowed targets."""
    alert = service.transition(
        session,
        alert_id,
        move,
        actor=principal.name,
        if_match=if_match,
        now=utcnow(),
        units=subtree(principal.unit_id) if principal.unit_id else None,
    )
    return _detail(session, alert, response)
