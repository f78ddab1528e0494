"""Exemptions (报备): a business system files, an inspector or admin who is not the filer decides."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel

from app.auth.deps import InspectorKey, require
from app.auth.service import Principal, Role
from app.db import utcnow
from app.deps import ReadSession, WriteSession
from app.errors import responses
from app.events.domains import Domain
from app.exemptions import service
from app.exemptions.models import Exemption
from app.exemptions.schemas import DecisionIn, ExemptionIn, ExemptionOut, ExemptionStatus, RevokeIn
from app.pagination import Cursor, Limit, Page, decode_id_cursor, encode_cursor
from app.params import QueryId, RowId
from app.rules.router import Rules
from app.units.service import subtree

router = APIRouter(prefix="/v1/exemptions", tags=["exemptions"])

FilingKey = Annotated[Principal, Depends(require(Role.SOURCE, Role.INSPECTOR))]


def exemption_out(exemption: Exemption, now: datetime) -> ExemptionOut:
    return ExemptionOut(
        id=exemption.id,
        status=ExemptionStatus(exemption.status),
        active=service.is_active(exemption, now),
        rule_id=exemption.rule_id,
        domains=[Domain(d) for d in exemption.domains.strip(",").split(",")],
        subject_type=exemption.subject_type,
        subject_id=exemption.subject_id,
        starts_at=exemption.starts_at,
        ends_at=exemption.ends_at,
        reason=exemption.reason,
        reference=exemption.reference,
        requested_by=exemption.requested_by,
        filed_at=exemption.filed_at,
        late=exemption.filed_at > exemption.starts_at,
        decided_by=exemption.decided_by,
        decided_at=exemption.decided_at,
        decision_reason=exemption.decision_reason,
        revoked_by=exemption.revoked_by,
        revoked_at=exemption.revoked_at,
        revoke_reason=exemption.revoke_reason,
    )


def _json(model: BaseModel, status: int = 200) -> Response:
    # `from`/`to` are serialisation aliases: answer with them (a return annotation would dump by field name).
    return Response(model.model_dump_json(by_alias=True), status_code=status, media_type="application/json")


def _scope(principal: Principal) -> service.Scope:
    """A scoped inspector sees its units' subjects; a source key sees what it filed."""
    return service.Scope(
        units=subtree(principal.unit_id) if principal.unit_id else None,
        requester=principal.name if principal.role is Role.SOURCE else None,
    )


@router.post(
    "",
    status_code=201,
    response_model=ExemptionOut,
    responses=responses(400, 401, 403, 413, 422),
)
def request_exemption(body: ExemptionIn, principal: FilingKey, rules: Rules, session: WriteSession) -> Response:
    """File an exemption (报备) for legitimate bulk business; it takes effect once someone else approves it."""
    exemption = service.request(
        session,
        rules,
        rule_id=body.rule_id,
        domains=[d.value for d in body.domains] if body.domains else None,
        subject_type=body.subject_type.value,
        subject_id=body.subject_id,
        starts_at=body.starts_at,
        ends_at=body.ends_at,
        reason=body.reason,
        reference=body.reference,
        actor=principal.name,
        now=utcnow(),
    )
    return _json(exemption_out(exemption, utcnow()), 201)


@router.get("", response_model=Page[ExemptionOut], responses=responses(401, 403, 422))
def list_exemptions(
    principal: FilingKey,
    session: ReadSession,
    status: ExemptionStatus | None = None,
    subject: QueryId = None,
    active: bool | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Response:
    """Exemptions, newest first (a source key reads only those it filed)."""
    now = utcnow()
    rows = service.list_exemptions(
        session,
        status=status.value if status else None,
        subject=subject,
        active=active,
        now=now,
        limit=limit + 1,
        after=decode_id_cursor("exemptions", cursor),
        scope=_scope(principal),
    )
    page = rows[:limit]
    next_cursor = encode_cursor("exemptions", [page[-1].id]) if len(rows) > limit else None
    return _json(Page[ExemptionOut](items=[exemption_out(row, now) for row in page], next_cursor=next_cursor))


@router.get("/{exemption_id}", response_model=ExemptionOut, responses=responses(401, 403, 404, 422))
def get_exemption(exemption_id: RowId, principal: FilingKey, session: ReadSession) -> Response:
    """One exemption."""
    return _json(exemption_out(service.get(session, exemption_id, scope=_scope(principal)), utcnow()))


@router.post(
    "/{exemption_id}/decision", response_model=ExemptionOut, responses=responses(400, 401, 403, 404, 409, 413, 422)
)
def decide_exemption(
    exemption_id: RowId, body: DecisionIn, principal: InspectorKey, rules: Rules, session: WriteSession
) -> Response:
    """Approve or reject a requested exemption; its requester may not (four eyes: 409). Approval marks the alerts
    it covers as exempted."""
    now = utcnow()
    exemption = service.get(session, exemption_id, scope=_scope(principal), lock=True)
    service.decide(session, rules, exemption, approve=body.approve, reason=body.reason, actor=principal.name, now=now)
    return _json(exemption_out(exemption, now))


@router.post(
    "/{exemption_id}/revoke", response_model=ExemptionOut, responses=responses(400, 401, 403, 404, 409, 413, 422)
)
def revoke_exemption(
    exemption_id: RowId, body: RevokeIn, principal: InspectorKey, rules: Rules, session: WriteSession
) -> Response:
    """Revoke a requested or approved exemption; the alerts it covered count again at once (and may trip)."""
    now = utcnow()
    exemption = service.get(session, exemption_id, scope=_scope(principal), lock=True)
    service.revoke(session, rules, exemption, reason=body.reason, actor=principal.name, now=now)
    return _json(exemption_out(exemption, now))
