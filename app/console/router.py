"""Console pages: the same services and jurisdiction as the API, rendered as HTML for inspectors."""

from __future__ import annotations

import csv
import inspect
import io
from collections.abc import Mapping, Sequence
from datetime import date, datetime, tzinfo
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.concurrency import run_in_threadpool

from app.alerts import service as alerts
from app.alerts import workflow
from app.alerts.schemas import InterviewLevel, Outcome, Stage, TransitionIn
from app.audit import service as audit
from app.auth.deps import look_up
from app.auth.service import Principal, Role, active_key
from app.breakers import service as breakers
from app.breakers.schemas import ResetIn
from app.breakers.state import effective_state
from app.console import session as sessions
from app.console import svg
from app.console.labels import LABELS, label
from app.db import Database, utcnow
from app.errors import AppError, Forbidden, InvalidInput, NotFound, PreconditionFailed, Unauthorized
from app.events import service as events
from app.events.domains import Domain
from app.fields import Ident
from app.pagination import decode_time_id_cursor, encode_cursor
from app.params import QueryTime
from app.reports import service as reports
from app.rules.spec import Severity
from app.units.service import subtree

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
templates = Jinja2Templates(directory=HERE / "templates")

# No inline script anywhere, and nothing from another origin.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
ROLES = (Role.INSPECTOR, Role.ADMIN)
PAGE_SIZE = 50
EVIDENCE_SHOWN = 50

router = APIRouter(prefix="/console", include_in_schema=False)


class NeedSignIn(Exception):
    """No valid session: the browser is sent to the sign-in page."""


class ConsoleFormError(Exception):
    """A form or query the console cannot use: a 422 page naming the fields."""

    def __init__(self, errors: Sequence[tuple[str, str]]) -> None:
        super().__init__("invalid form")
        self.errors = list(errors)


def lang_of(request: Request) -> str:
    asked = request.query_params.get("lang")
    if asked in ("zh", "en"):
        return asked
    return "en" if request.cookies.get(sessions.LANG_COOKIE) == "en" else "zh"


def _zone(request: Request) -> tzinfo:
    zone: tzinfo = request.app.state.settings.zone
    return zone


def page(
    request: Request,
    template: str,
    *,
    console: sessions.ConsoleSession | None,
    status_code: int = 200,
    **context: Any,
) -> Response:
    lang = lang_of(request)
    zone = _zone(request)

    def t(key: str) -> str:
        return label(key, lang)

    def local(value: datetime | None) -> str:
        return "" if value is None else value.astimezone(zone).strftime("%Y-%m-%d %H:%M")

    other = "zh" if lang == "en" else "en"
    query = {k: v for k, v in request.query_params.items() if k != "lang"}
    response = templates.TemplateResponse(
        request,
        template,
        {
            "t": t,
            "has_label": lambda key: key in LABELS,
            "lang": lang,
            "lang_url": f"{request.url.path}?{urlencode({**query, 'lang': other})}",
            "local": local,
            "console": console,
            "principal": console.principal if console else None,
            "csrf": console.csrf if console else "",
            "path": request.url.path,
            **context,
        },
        status_code=status_code,
        headers=SECURITY_HEADERS,
    )
    if request.query_params.get("lang") in ("zh", "en"):
        response.set_cookie(sessions.LANG_COOKIE, lang, max_age=365 * 86400, samesite="strict", httponly=True)
    return response


async def signed_in(request: Request) -> sessions.ConsoleSession:
    """The console session of an inspector or admin key (sign-in page without one, 403 for another role)."""
    console = await sessions.current(request)
    if console is None:
        raise NeedSignIn()
    request.state.console = console
    if console.principal.role not in ROLES:
        raise Forbidden(
            f"the console needs the role admin or inspector; the key {console.principal.name!r} is "
            f"{console.principal.role.value}"
        )
    return console


Console = Annotated[sessions.ConsoleSession, Depends(signed_in)]


def scope(principal: Principal) -> Any:
    return subtree(principal.unit_id) if principal.unit_id else None


async def form_of(request: Request, console: sessions.ConsoleSession) -> dict[str, str]:
    """The urlencoded form, its CSRF token checked (403 page when it does not match the session)."""
    body = (await request.body()).decode("utf-8", "replace")
    form = dict(parse_qsl(body, keep_blank_values=True))
    if not sessions.same(form.pop("csrf", None), console.csrf):
        raise Forbidden("csrf")
    return form


def _redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers=SECURITY_HEADERS)


def _errors(exc: ValidationError, prefix: int = 0) -> list[tuple[str, str]]:
    return [(".".join(str(part) for part in error["loc"][prefix:]) or "form", error["msg"]) for error in exc.errors()]


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
    return _redirect("/console/alerts")


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
    response = _redirect(_safe_next(form.get("next")))
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
    response = _redirect("/console")
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
    time_from: QueryTime | None = None
    time_to: QueryTime | None = None
    cursor: str | None = None


def _local_times(values: Mapping[str, str], names: Sequence[str], zone: tzinfo) -> dict[str, Any]:
    """`datetime-local` fields (no zone) read in the configured zone; anything else is left to validation."""
    out: dict[str, Any] = {}
    for name in names:
        raw = values.get(name)
        if not raw:
            continue
        try:
            parsed = datetime.fromisoformat(raw)
        except ValueError:
            out[name] = raw
            continue
        out[name] = (parsed.replace(tzinfo=zone) if parsed.tzinfo is None else parsed).isoformat()
    return out


@router.get("/alerts")
def alert_queue(request: Request, console: Console) -> Response:
    raw = {k: v for k, v in request.query_params.items() if v != "" and k != "lang"}
    times = _local_times(
        {"time_from": raw.pop("from", ""), "time_to": raw.pop("to", "")}, ("time_from", "time_to"), _zone(request)
    )
    try:
        query = QueueQuery.model_validate({**raw, **times})
    except ValidationError as exc:
        raise ConsoleFormError([(_name(field), msg) for field, msg in _errors(exc)]) from exc
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
    alert_id: int,
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
def alert_detail(request: Request, alert_id: int, console: Console) -> Response:
    notice = "moved" if request.query_params.get("moved") else None
    return _alert_page(request, console, alert_id, notice=notice)


def transition_body(form: Mapping[str, str], zone: tzinfo) -> TransitionIn:
    """The transition body from the form: the same field names; empty fields are not sent."""
    body: dict[str, Any] = {k: v for k, v in form.items() if v.strip() != "" and k != "version"}
    body.update(_local_times(form, ("due_at", "held_at"), zone))
    if "interviewees" in body:
        body["interviewees"] = [p.strip() for p in body["interviewees"].replace("，", ",").split(",") if p.strip()]
    try:
        return TransitionIn.model_validate(body)
    except ValidationError as exc:
        raise ConsoleFormError(_errors(exc)) from exc


@router.post("/alerts/{alert_id}/transitions")
async def move_alert(request: Request, alert_id: int, console: Console) -> Response:
    form = await form_of(request, console)
    move = transition_body(form, _zone(request))
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
    return _redirect(f"/console/alerts/{alert_id}?moved=1")


# ---- breakers ------------------------------------------------------------------------------------------------


@router.get("/breakers")
def breaker_list(request: Request, console: Console) -> Response:
    db: Database = request.app.state.db
    now = utcnow()
    units = scope(console.principal)
    with db.session() as session:
        rows = [
            *breakers.list_breakers(session, now=now, state="open", limit=200, after=None, units=units),
            *breakers.list_breakers(session, now=now, state="half_open", limit=200, after=None, units=units),
        ]
        session.expunge_all()
    rows.sort(key=lambda b: b.id, reverse=True)
    notice = "reset.done" if request.query_params.get("reset") else None
    return page(
        request,
        "breakers.html",
        console=console,
        rows=[(b, effective_state(b, now)) for b in rows],
        notice=notice,
    )


@router.post("/breakers/{breaker_id}/reset")
async def reset_breaker(request: Request, breaker_id: int, console: Console) -> Response:
    form = await form_of(request, console)
    try:
        body = ResetIn.model_validate({"reason": form.get("reason", "")})
    except ValidationError as exc:
        raise ConsoleFormError(_errors(exc)) from exc
    db: Database = request.app.state.db

    def apply() -> None:
        with db.session(write=True) as session:
            breakers.reset(
                session,
                breaker_id,
                rules=request.app.state.rules.current(db),
                actor=console.principal.name,
                reason=body.reason,
                now=utcnow(),
                may_lift_suspension=console.principal.role is Role.ADMIN,
                units=scope(console.principal),
            )

    await run_in_threadpool(apply)
    return _redirect(f"/console/breakers?reset={breaker_id}")


# ---- reports -------------------------------------------------------------------------------------------------


def _report_query(request: Request) -> tuple[str, Literal["unit", "domain", "rule"]]:
    today = utcnow().astimezone(_zone(request))
    period = request.query_params.get("period") or f"{today.year:04d}-{today.month:02d}"
    group_by = request.query_params.get("group_by") or "unit"
    if group_by not in reports.GROUPS:
        raise ConsoleFormError([("group_by", "one of unit, domain, rule")])
    return period, group_by  # type: ignore[return-value]


def _period_range(period: str, zone: tzinfo) -> tuple[datetime, datetime]:
    try:
        return reports.period_range(period, zone)
    except InvalidInput as exc:
        raise ConsoleFormError([("period", str(e["msg"])) for e in exc.errors or []]) from exc


def _months(period: str, zone: tzinfo) -> list[str]:
    """The months a chart of the period shows: those of a quarter or year; a month with the five before it."""
    start, end = _period_range(period, zone)
    first = date(start.year, start.month, 1)
    count = (end.year * 12 + end.month) - (start.year * 12 + start.month)
    if count == 1:
        first_index = first.year * 12 + first.month - 1 - 5
        count = 6
    else:
        first_index = first.year * 12 + first.month - 1
    return [f"{(first_index + i) // 12:04d}-{(first_index + i) % 12 + 1:02d}" for i in range(count)]


@router.get("/reports")
def report_page(request: Request, console: Console) -> Response:
    period, group_by = _report_query(request)
    zone = _zone(request)
    time_from, time_to = _period_range(period, zone)
    db: Database = request.app.state.db
    now = utcnow()
    units = scope(console.principal)
    lang = lang_of(request)
    with db.session() as session:
        rows = reports.summary(session, group_by=group_by, time_from=time_from, time_to=time_to, now=now, units=units)
        by_unit = (
            rows
            if group_by == "unit"
            else reports.summary(session, group_by="unit", time_from=time_from, time_to=time_to, now=now, units=units)
        )
        by_domain = reports.summary(
            session, group_by="domain", time_from=time_from, time_to=time_to, now=now, units=units
        )
        monthly = []
        for month in _months(period, zone):
            start, end = reports.period_range(month, zone)
            month_rows = reports.summary(session, group_by="unit", time_from=start, time_to=end, now=now, units=units)
            monthly.append((month, sum(r.alerts_raised for r in month_rows)))
    domain_counts = {r.group: r.alerts_raised for r in by_domain}
    raised = sum(r.alerts_raised for r in by_unit)
    funnel_steps = [(label("stage.warning", lang), raised)] + [
        (label(f"stage.{stage}", lang), sum(r.reached[stage] for r in by_unit))
        for stage in ("supervision", "interview", "accountability")
    ]
    table = [_report_line(row) for row in rows]
    return page(
        request,
        "reports.html",
        console=console,
        period=period,
        group_by=group_by,
        table=table,
        totals=_report_totals(table),
        kinds=(*reports.KINDS, "other"),
        csv_url="/console/reports.csv?" + urlencode({"period": period, "group_by": group_by}),
        chart_month=svg.bars(label("chart.by_month", lang), monthly, css_class="chart by-month"),
        chart_domain=svg.bars(
            label("chart.by_domain", lang),
            [(label(f"domain.{d.value}", lang), domain_counts.get(d.value, 0)) for d in Domain],
            css_class="chart by-domain",
        ),
        chart_funnel=svg.funnel(label("chart.funnel", lang), funnel_steps),
    )


def _report_line(row: reports.Row) -> dict[str, Any]:
    """A row in the seed's shape: alerts, escalated, interviews, people held accountable by kind, suspended."""
    return {
        "group": row.group,
        "alerts": row.alerts_raised,
        "escalated": row.reached["supervision"],
        "interviews": sum(row.interviews.values()),
        "accountable": {kind: sum(outcomes.values()) for kind, outcomes in row.accountability.items()},
        "suspended": row.business_units_suspended,
        "overdue": row.overdue_supervisions,
    }


def _report_totals(table: list[dict[str, Any]]) -> dict[str, Any]:
    kinds = (*reports.KINDS, "other")
    return {
        "alerts": sum(r["alerts"] for r in table),
        "escalated": sum(r["escalated"] for r in table),
        "interviews": sum(r["interviews"] for r in table),
        "accountable": {kind: sum(r["accountable"][kind] for r in table) for kind in kinds},
        "suspended": sum(r["suspended"] for r in table),
        "overdue": sum(r["overdue"] for r in table),
    }


@router.get("/reports.csv")
def report_csv(request: Request, console: Console) -> Response:
    period, group_by = _report_query(request)
    time_from, time_to = _period_range(period, _zone(request))
    db: Database = request.app.state.db
    with db.session() as session:
        rows = reports.summary(
            session,
            group_by=group_by,
            time_from=time_from,
            time_to=time_to,
            now=utcnow(),
            units=scope(console.principal),
        )
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(reports.flat(reports.Row(group="")).keys()), lineterminator="\n")
    writer.writeheader()
    writer.writerows(reports.flat(row) for row in rows)
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={**SECURITY_HEADERS, "Content-Disposition": f'attachment; filename="summary-{period}-{group_by}.csv"'},
    )


# ---- audit ---------------------------------------------------------------------------------------------------


@router.get("/audit")
def audit_page(request: Request, console: Console) -> Response:
    db: Database = request.app.state.db
    audit.seal_pending(db)
    with db.session() as session:
        verdict = audit.verify(session)
        entries = audit.list_entries(session, filters=audit.AuditFilter(), limit=50, units=scope(console.principal))
        session.expunge_all()
    return page(
        request,
        "audit.html",
        console=console,
        verdict=verdict,
        # As the API: a unit-scoped key is told only where the chain breaks, not why.
        reason=None if console.principal.unit_id else verdict.reason,
        entries=entries,
    )


# ---- errors --------------------------------------------------------------------------------------------------

_TITLES = {401: "bad_key", 403: "forbidden", 404: "not_found", 409: "conflict", 412: "stale", 422: "invalid"}


def _error_page(request: Request, status: int, detail: str, fields: Sequence[tuple[str, str]] = ()) -> Response:
    console = getattr(request.state, "console", None)
    return page(
        request,
        "error.html",
        console=console,
        status_code=status,
        title=_TITLES.get(status, "error"),
        detail=detail,
        fields=fields,
    )


async def _call(handler: Any, request: Request, exc: Exception) -> Response:
    response = handler(request, exc)
    if inspect.isawaitable(response):
        response = await response
    assert isinstance(response, Response)
    return response


def install(app: FastAPI) -> None:
    """Routes, static files and the console's error pages (HTML under /console, problem+json elsewhere)."""
    app.include_router(router)
    app.mount("/console/static", StaticFiles(directory=STATIC), name="console-static")
    api_app_error = app.exception_handlers[AppError]
    api_validation_error = app.exception_handlers[RequestValidationError]

    async def on_need_sign_in(request: Request, exc: Exception) -> Response:
        target = request.url.path if request.method == "GET" else "/console/alerts"
        return _redirect("/console/signin?" + urlencode({"next": target}))

    async def on_form_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ConsoleFormError)
        return _error_page(request, 422, "", exc.errors)

    async def on_app_error(request: Request, exc: Exception) -> Response:
        if not request.url.path.startswith("/console"):
            return await _call(api_app_error, request, exc)
        assert isinstance(exc, AppError)
        fields = [(".".join(str(p) for p in e["loc"] if p != "body"), str(e["msg"])) for e in exc.errors or []]
        if exc.detail == "csrf":
            return _error_page(request, 403, label("csrf", lang_of(request)))
        detail = exc.detail
        if "allowed" in exc.extra:
            detail = f"{detail} (allowed: {', '.join(exc.extra['allowed'])})"
        return _error_page(request, exc.status, detail, fields)

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        if not request.url.path.startswith("/console"):
            return await _call(api_validation_error, request, exc)
        assert isinstance(exc, RequestValidationError)
        fields = [(".".join(str(p) for p in e["loc"][1:]), str(e["msg"])) for e in exc.errors()]
        return _error_page(request, 422, "", fields)

    app.add_exception_handler(NeedSignIn, on_need_sign_in)
    app.add_exception_handler(ConsoleFormError, on_form_error)
    app.add_exception_handler(AppError, on_app_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
