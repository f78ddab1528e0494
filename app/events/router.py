from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.alerts.evaluate import Evaluator
from app.alerts.inline import evaluate_stored, evaluating, plan
from app.auth.deps import IngestKey, InspectorKey, forget_ingest_key
from app.auth.service import Principal
from app.breakers.router import breaker_out
from app.db import Database, utcnow
from app.deps import ReadSession
from app.errors import InvalidInput, Unauthorized, responses
from app.events import service
from app.events.domains import Domain
from app.events.models import Event
from app.events.schemas import (
    BatchIn,
    BatchOut,
    BusinessUnitOut,
    EventIn,
    EventOut,
    IngestResult,
    OperatorOut,
)
from app.logging import remember_object_ref
from app.metrics import count_after_commit
from app.pagination import Cursor, Limit, Page, decode_time_id_cursor, encode_cursor
from app.params import BigRowId, QueryId, QueryTime
from app.ratelimit import RateLimits
from app.units.service import subtree

if TYPE_CHECKING:
    from app.rules.state import RulesInForce

router = APIRouter(prefix="/v1/events", tags=["events"])

INGEST_429 = (
    "over a rate limit: the key's events a second (a batch counts its events) or requests a second, "
    "or unknown keys from this address; nothing was stored: send again after `Retry-After` seconds"
)


def _store(request: Request, principal: Principal, events: list[EventIn], *, batch: bool) -> list[IngestResult]:
    """Count against the key's rate limits, validate, then store and evaluate the rules in one transaction
    that commits before the answer is sent."""
    limits: RateLimits = request.app.state.rate_limits
    limits.ingest(key_id=principal.key_id, events=len(events))
    service.validate(events, batch=batch)
    db: Database = request.app.state.db
    in_force: RulesInForce = request.app.state.rules
    source = principal.name

    def work(session: Session, evaluator: Evaluator) -> list[IngestResult]:
        planned = plan(evaluator, source=source, events=events)
        stored = service.ingest(
            session, source=source, events=events, batch=batch, key_id=principal.key_id, locks=planned.locks
        )
        verdicts, _ = evaluate_stored(session, evaluator, source=source, stored=stored, now=utcnow(), planned=planned)
        count_after_commit(
            session,
            source=source,
            new_domains=[item.event.domain.value for item in stored if not item.duplicate],
            duplicates=sum(item.duplicate for item in stored),
        )
        return [
            IngestResult(
                id=item.id,
                duplicate=item.duplicate,
                alerts=verdict.alerts,
                blocked=verdict.blocked,
                breakers=[breaker_out(b) for b in verdict.breakers],
            )
            for item, verdict in zip(stored, verdicts, strict=True)
        ]

    try:
        return evaluating(db, request.app.state.settings.zone, lambda refresh: in_force.rules_for(db, refresh), work)
    except Unauthorized:
        forget_ingest_key(principal)  # revoked since this process last met it
        raise


# The ingest routes are async and hand their whole unit of work to the thread pool in one call: each
# hop between the event loop and a thread costs a wake-up of the loop, and with a session dependency
# (opened and closed in threads of its own) a small POST made four of them. The key is still checked
# first, by the dependency, so a request without a valid key gets 401 whatever its body.


@router.post(
    "",
    status_code=201,
    response_model=IngestResult,
    responses={
        200: {"model": IngestResult, "description": "a duplicate of a stored event"},
        **responses(400, 401, 403, 409, 413, 422, s429=INGEST_429),
    },
)
async def post_event(event: EventIn, principal: IngestKey, request: Request) -> IngestResult | Response:
    """Report one business event (201 new, 200 duplicate); the answer lists the alerts it raised or updated
    and whether a breaker stops its subject (`blocked`: stop the business)."""
    remember_object_ref(event.object_ref)
    (result,) = await run_in_threadpool(_store, request, principal, [event], batch=False)
    if result.duplicate:
        # Answered here rather than through a `Response` parameter, which FastAPI would build for every request.
        return Response(result.model_dump_json(), status_code=200, media_type="application/json")
    return result


@router.post(
    "/batch",
    responses=responses(
        400,
        401,
        403,
        409,
        413,
        422,
        s413="the body is over 1 MiB, or the batch holds over 1000 events",
        s429=INGEST_429,
    ),
)
async def post_event_batch(batch: BatchIn, principal: IngestKey, request: Request) -> BatchOut:
    """Report up to 1000 events at once: all are stored, or none."""
    for event in batch.events:
        remember_object_ref(event.object_ref)
    return BatchOut(items=await run_in_threadpool(_store, request, principal, batch.events, batch=True))


def event_out(event: Event) -> EventOut:
    business_unit = (
        BusinessUnitOut.model_validate({"id": event.business_unit_id, "kind": event.business_unit_kind})
        if event.business_unit_id is not None
        else None
    )
    return EventOut(
        id=event.id,
        source=event.source,
        source_event_id=event.source_event_id,
        domain=Domain(event.domain),
        action=event.action,
        occurred_at=event.occurred_at,
        operator=OperatorOut.model_validate(
            {
                "id": event.operator_id,
                "kind": event.operator_kind,
                "unit": event.operator_unit,
                "responsible_officer": event.responsible_officer,
            }
        ),
        business_unit=business_unit,
        agent_id=event.agent_id,
        object_ref=event.object_ref,
        attributes=event.attributes,
        content_hash=event.content_hash,
        received_at=event.received_at,
    )


@router.get("", responses=responses(401, 403, 422))
def list_events(
    principal: InspectorKey,
    session: ReadSession,
    domain: Domain | None = None,
    operator: QueryId = None,
    business_unit: QueryId = None,
    agent: QueryId = None,
    source: QueryId = None,
    action: QueryId = None,
    time_from: Annotated[QueryTime | None, Query(alias="from", description="occurred_at ≥ from")] = None,
    time_to: Annotated[QueryTime | None, Query(alias="to", description="occurred_at < to")] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[EventOut]:
    """Stored events, newest first, filtered and paged."""
    if time_from is not None and time_to is not None and time_to <= time_from:
        raise InvalidInput([(("query", "to"), "must be after `from`")])
    after = decode_time_id_cursor("events", cursor)
    filters = service.EventFilter(
        domain=domain.value if domain else None,
        operator=operator,
        business_unit=business_unit,
        agent=agent,
        source=source,
        action=action,
        time_from=time_from,
        time_to=time_to,
    )
    scope = subtree(principal.unit_id) if principal.unit_id else None
    rows = service.list_events(session, filters=filters, limit=limit + 1, after=after, units=scope)
    page, more = rows[:limit], len(rows) > limit
    next_cursor = encode_cursor("events", [page[-1].occurred_at.isoformat(), page[-1].id]) if more else None
    return Page[EventOut](items=[event_out(row) for row in page], next_cursor=next_cursor)


@router.get("/{event_id}", responses=responses(401, 403, 404, 422))
def get_event(event_id: BigRowId, principal: InspectorKey, session: ReadSession) -> EventOut:
    """One stored event."""
    scope = subtree(principal.unit_id) if principal.unit_id else None
    return event_out(service.get_event(session, event_id=event_id, units=scope))
