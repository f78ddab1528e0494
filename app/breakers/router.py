from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy.orm import Session

from app.auth.deps import InspectorKey, require
from app.auth.service import Principal, Role
from app.breakers import service
from app.breakers.models import Breaker, BreakerChange
from app.breakers.schemas import BreakerChangeOut, BreakerDetail, BreakerOut, BreakerState, CheckOut, ResetIn
from app.breakers.state import effective_state
from app.db import utcnow
from app.deps import ReadSession, WriteSession
from app.errors import responses
from app.events.domains import Domain
from app.pagination import Cursor, Limit, Page, decode_id_cursor, encode_cursor
from app.params import QueryId, RowId
from app.rules.spec import GroupBy
from app.units.service import subtree

router = APIRouter(prefix="/v1/breakers", tags=["breakers"])

CheckKey = Annotated[Principal, Depends(require(Role.SOURCE, Role.INSPECTOR))]


def breaker_out(breaker: Breaker) -> BreakerOut:
    return BreakerOut(
        id=breaker.id,
        kind=breaker.kind,
        suspended_until=breaker.suspended_until,
        subject_type=breaker.subject_type,
        subject_id=breaker.subject_id,
        domains=[Domain(d) for d in breaker.domains.strip(",").split(",")],
        state=BreakerState(effective_state(breaker, utcnow())),
        rule_id=breaker.rule_id,
        alert_id=breaker.alert_id,
        opened_at=breaker.opened_at,
        reset_at=breaker.reset_at,
        probation_until=breaker.probation_until,
    )


@router.get("", responses=responses(401, 403, 422))
def list_breakers(
    principal: InspectorKey,
    session: ReadSession,
    state: BreakerState | None = None,
    subject_type: GroupBy | None = None,
    subject_id: QueryId = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[BreakerOut]:
    """Breakers, newest first; `state` reads half_open past its probation as closed."""
    after = decode_id_cursor("breakers", cursor)
    rows = service.list_breakers(
        session,
        now=utcnow(),
        state=state.value if state else None,
        subject_type=subject_type.value if subject_type else None,
        subject_id=subject_id,
        limit=limit + 1,
        after=after,
        units=subtree(principal.unit_id) if principal.unit_id else None,
    )
    page = rows[:limit]
    next_cursor = encode_cursor("breakers", [page[-1].id]) if len(rows) > limit else None
    return Page[BreakerOut](items=[breaker_out(b) for b in page], next_cursor=next_cursor)


# Every role may check, so no 403.
@router.get("/check", responses=responses(401, 422))
def check_breakers(
    principal: CheckKey,
    session: ReadSession,
    subject_type: Annotated[GroupBy, Query(description="a rule group_by: operator, business_unit, agent, …")],
    subject_id: Annotated[QueryId, Query(min_length=1)],
    domain: Domain | None = None,
) -> CheckOut:
    """May this subject do business (in this domain)? For business systems, before they act. A key scoped to a
    unit is told only of breakers whose alert is within its units."""
    assert subject_id is not None
    found = service.check(
        session,
        subject_type=subject_type.value,
        subject_id=subject_id,
        domain=domain.value if domain else None,
        now=utcnow(),
        units=subtree(principal.unit_id) if principal.unit_id else None,
    )
    return CheckOut(allowed=not found, breakers=[breaker_out(b) for b in found])


def breaker_detail(session: Session, breaker: Breaker, history: list[BreakerChange] | None = None) -> BreakerDetail:
    """The breaker as `GET /v1/breakers/{id}` shows it (webhook payloads carry the same; they pass the
    `history` read for many breakers at once)."""
    changes = [
        BreakerChangeOut(
            action=c.action,
            from_state=BreakerState(c.from_state),
            to_state=BreakerState(c.to_state),
            actor=c.actor,
            reason=c.reason,
            alert_id=c.alert_id,
            at=c.at,
        )
        for c in (service.history(session, breaker.id) if history is None else history)
    ]
    return BreakerDetail(**breaker_out(breaker).model_dump(), history=changes)


@router.get("/{breaker_id}", responses=responses(401, 403, 404, 422))
def get_breaker(breaker_id: RowId, principal: InspectorKey, session: ReadSession) -> BreakerDetail:
    """One breaker with its history of trips and resets."""
    units = subtree(principal.unit_id) if principal.unit_id else None
    return breaker_detail(session, service.get_breaker(session, breaker_id, units=units))


@router.post("/{breaker_id}/reset", responses=responses(400, 401, 403, 404, 409, 413, 422))
def reset_breaker(
    breaker_id: RowId, body: ResetIn, principal: InspectorKey, session: WriteSession, request: Request
) -> BreakerDetail:
    """Let an open breaker's subject do business again, on probation for the rule's `probation` (half_open).
    A suspension (停业整改, `kind: suspension`) is lifted at once instead, and only by an admin."""
    breaker = service.reset(
        session,
        breaker_id,
        rules=request.app.state.rules.current(request.app.state.db),
        actor=principal.name,
        reason=body.reason,
        now=utcnow(),
        may_lift_suspension=principal.role is Role.ADMIN,
        units=subtree(principal.unit_id) if principal.unit_id else None,
    )
    return breaker_detail(session, breaker)
