"""Sign-in and the alert pages of the console; `install` puts the whole console on the app."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import tzinfo
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.concurrency import run_in_threadpool

from app.alerts import service as alerts
from app.alerts import workflow
from app.alerts.schemas import InterviewLevel, Outcome, Stage, TransitionIn
from app.auth.deps import look_up
from app.auth.service import active_key
from app.breakers import service as breakers
from app.breakers.state import effective_state
from app.console import exemptions as exemption_pages
from app.console import pages
from app.console import session as sessions
from app.console.web import (
    ROLES,
    STATIC,
    Console,
    ConsoleFormError,
    field_errors,
    form_body,
    form_of,
    install_error_pages,
    local_times,
    page,
    redirect,
    scope,
    zone_of,
)
from app.db import Database, utcnow
from app.errors import InvalidInput, NotFound, PreconditionFailed, Unauthorized
from app.events import service as events
from app.events.domains import Domain
from app.fields import Ident
from app.pagination import decode_time_id_cursor, encode_cursor
from app.params import QueryTime, RowId
from app.rules.spec import Severity

router = APIRouter(prefix="/console", include_in_schema=False)

PAGE_SIZE = 50
EVIDENCE_SHOWN = 50

# ---- sign-in -------------------------------------------------------------------------------------------------


def _signin_page(request: Request, *, status_code: int = 200, message: str | None = None) -> Response:
    token = request.cookies.get(sessions.SIGNIN_CSRF_COOKIE) or sessions.new_signin_csrf()
    response = page(
        request,
        "signin.html",
        console=None,
        status_code=status_code,
        signin_csrf=token,
        message=message,
        next=_safe_next(request.query_params.get("next")),
    )
    response.set_cookie(
        sessions.SIGNIN_CSRF_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/console",
    )
    return response


def _safe_next(target: str | None) -> str:
    if target and target.startswith("/console/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/console/alerts"


@router.get("")
async def console_home(request: Request) -> Response:
    if await sessions.current(request) is None:
        return _signin_page(request)
    return redirect("/console/alerts")


@router.get("/signin")
async def signin_page(request: Request) -> Response:
    return _signin_page(request)


@router.post("/signin")
async def sign_in(request: Request) -> Response:
    body = (await request.body()).decode("utf-8", "replace")
    form = dict(parse_qsl(body, keep_blank_values=True))
    if not sessions.same(form.get("csrf"), request.cookies.get(sessions.SIGNIN_CSRF_COOKIE)):
        return _signin_page(request, status_code=403, message="csrf")
    secret = form.get("key", "").strip()
    db: Database = request.app.state.db
    try:
        if not secret:
            raise Unauthorized("no key")
        principal = await run_in_threadpool(look_up, request, db, secret)
    except Unauthorized:
        return _signin_page(request, status_code=401, message="bad_key")
    if principal.role not in ROLES:
        return _signin_page(request, status_code=403, message="wrong_role")

    def key_hash() -> str | None:
        with db.engine.connect() as conn:
            found = active_key(conn, principal.key_id)
        return found[1] if found else None

    digest = await run_in_threadpool(key_hash)
    if digest is None:
        return _signin_page(request, status_code=401, message="bad_key")
    response = redirect(_safe_next(form.get("next")))
    response.set_cookie(
        sessions.SESSION_COOKIE,
        sessions.issue(principal, digest),
        max_age=sessions.SESSION_SECONDS,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    response.delete_cookie(sessions.SIGNIN_CSRF_COOKIE, path="/console")
    return response


@router.post("/signout")
async def sign_out(request: Request, console: Console) -> Response:
    await form_of(request, console)
    token = request.cookies.get(sessions.SESSION_COOKIE)
    if token is not None:
        await run_in_threadpool(sessions.end, request.app.state.db, token)
    response = redirect("/console")
    response.delete_cookie(sessions.SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


# ---- alerts --------------------------------------------------------------------------------------------------


class QueueQuery(BaseModel):
    """The queue's filters, as the API's list takes them (an empty form field means no filter)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    stage: Stage | None = None
    domain: Domain | None = None
    rule: Ident | None = None
    subject: Ident | None = None
    unit: Ident | None = None
    severity: Severity | None = None
    overdue: bool | None = None
    cleared: bool | None = None
    # As the API: exempted alerts (报备) are hidden unless `true` or `any`.
    exempted: Literal["true", "false", "any"] = "false"
    time_from: QueryTime | None = None
    time_to: QueryTime | None = None
    cursor: str | None = None


@router.get("/alerts")
def alert_queue(request: Request, console: Console) -> Response:
    raw = {k: v for k, v in request.query_params.items() if v != "" and k != "lang"}
    times = local_times(
        {"time_from": raw.pop("from", ""), "time_to": raw.pop("to", "")}, ("time_from", "time_to"), zone_of(request)
    )
    try:
        query = QueueQuery.model_validate({**raw, **times})
    except ValidationError as exc:
        raise ConsoleFormError([(_name(field), msg) for field, msg in field_errors(exc)]) from exc
    if query.time_from and query.time_to and query.time_to <= query.time_from:
        raise ConsoleFormError([("to", "must be after `from`")])
    try:
        after = decode_time_id_cursor("alerts", query.cursor)
    except InvalidInput as exc:
        raise ConsoleFormError([("cursor", "not a cursor of this list")]) from exc
    filters = alerts.AlertFilter(
        stage=query.stage.value if query.stage else None,
        domain=query.domain.value if query.domain else None,
        rule=query.rule,
        subject=query.subject,
        unit=query.unit,
        severity=query.severity.value if query.severity else None,
        overdue=query.overdue,
        cleared=query.cleared,
        exempted=None if query.exempted == "any" else query.exempted == "true",
        time_from=query.time_from,
        time_to=query.time_to,
    )
    db: Database = request.app.state.db
    now = utcnow()
    units = scope(console.principal)
    with db.session() as session:
        rows = alerts.list_alerts(session, now=now, filters=filters, limit=PAGE_SIZE + 1, after=after, units=units)
        counts = alerts.count_by_stage(session, now=now, filters=filters, units=units)
    shown = rows[:PAGE_SIZE]
    kept = {k: v for k, v in request.query_params.items() if v != "" and k not in ("cursor", "lang")}
    next_url = None
    if len(rows) > PAGE_SIZE:
        last = shown[-1]
        cursor = encode_cursor("alerts", [last.window_start.isoformat(), last.id])
        next_url = "/console/alerts?" + urlencode({**kept, "cursor": cursor})
    rules = request.app.state.rules.current(db)
    return page(
        request,
        "alerts.html",
        console=console,
        rows=[(row, alerts.is_overdue(row, now), rules.get(row.rule_id)) for row in shown],
        counts=counts,
        values=kept,
        stages=[s.value for s in Stage],
        domains=[d.value for d in Domain],
        severities=[s.value for s in Severity],
        next_url=next_url,
        first_url="/console/alerts?" + urlencode(kept) if query.cursor else None,
        count_url=lambda stage: (
            "/console/alerts?" + urlencode({**{k: v for k, v in kept.items() if k != "stage"}, "stage": stage})
        ),
    )


def _name(field: str) -> str:
    return {"time_from": "from", "time_to": "to"}.get(field, field)


def _alert_page(
    request: Request,
    console: sessions.ConsoleSession,
    alert_id: RowId,
    *,
    status_code: int = 200,
    stale: bool = False,
    notice: str | None = None,
) -> Response:
    db: Database = request.app.state.db
    now = utcnow()
    units = scope(console.principal)
    with db.session() as session:
        alert = alerts.get_alert(session, alert_id, units=units)
        history = alerts.history(session, alert.id)
        tripped = breakers.for_alert(session, alert.id)
        evidence_events = []
        for event_id in list(alert.evidence.get("event_ids", []))[:EVIDENCE_SHOWN]:
            try:
                evidence_events.append(events.get_event(session, event_id=int(event_id), units=units))
            except NotFound:
                continue
        session.expunge_all()
    rule = request.app.state.rules.current(db).get(alert.rule_id)
    targets = [(target.value, workflow.FIELDS[target]) for target in workflow.allowed_targets(Stage(alert.stage))]
    return page(
        request,
        "alert.html",
        console=console,
        status_code=status_code,
        alert=alert,
        overdue=alerts.is_overdue(alert, now),
        rule=rule,
        history=history,
        tripped=[(b, effective_state(b, now)) for b in tripped],
        evidence=alert.evidence,
        evidence_events=evidence_events,
        targets=targets,
        levels=[level.value for level in InterviewLevel],
        outcomes=[outcome.value for outcome in Outcome],
        stale=stale,
        notice=notice,
    )


@router.get("/alerts/{alert_id}")
def alert_detail(request: Request, alert_id: RowId, console: Console) -> Response:
    notice = "moved" if request.query_params.get("moved") else None
    return _alert_page(request, console, alert_id, notice=notice)


def transition_body(form: Mapping[str, str], zone: tzinfo) -> TransitionIn:
    """The transition body from the form: the same field names; empty fields are not sent."""
    body: dict[str, Any] = {k: v for k, v in form.items() if v.strip() != "" and k != "version"}
    body.update(local_times(form, ("due_at", "held_at"), zone))
    if "interviewees" in body:
        body["interviewees"] = [p.strip() for p in body["interviewees"].replace("，", ",").split(",") if p.strip()]
    return form_body(TransitionIn, body)


@router.post("/alerts/{alert_id}/transitions")
async def move_alert(request: Request, alert_id: RowId, console: Console) -> Response:
    form = await form_of(request, console)
    move = transition_body(form, zone_of(request))
    version = form.get("version", "").strip()
    db: Database = request.app.state.db

    def apply() -> None:
        with db.session(write=True) as session:
            alerts.transition(
                session,
                alert_id,
                move,
                actor=console.principal.name,
                if_match=f'"{version}"' if version else None,
                now=utcnow(),
                units=scope(console.principal),
            )

    try:
        await run_in_threadpool(apply)
    except PreconditionFailed:
        return await run_in_threadpool(_alert_page, request, console, alert_id, status_code=412, stale=True)
    return redirect(f"/console/alerts/{alert_id}?moved=1")


def install(app: FastAPI) -> None:
    """Routes, static files and the console's error pages."""
    app.include_router(router)
    app.include_router(pages.router)
    app.include_router(exemption_pages.router)
    app.mount("/console/static", StaticFiles(directory=STATIC), name="console-static")
    install_error_pages(app)
