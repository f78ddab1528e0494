"""Console pages for breakers, reports and audit."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, tzinfo
from typing import Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from app.audit import service as audit
from app.auth.service import Role
from app.breakers import service as breakers
from app.breakers.schemas import ResetIn
from app.breakers.state import effective_state
from app.console import svg
from app.console.labels import LABELS, label
from app.console.web import (
    SECURITY_HEADERS,
    Console,
    ConsoleFormError,
    form_body,
    form_of,
    lang_of,
    page,
    redirect,
    scope,
    zone_of,
)
from app.db import Database, utcnow
from app.errors import InvalidInput
from app.events.domains import Domain
from app.params import RowId
from app.reports import service as reports

router = APIRouter(prefix="/console", include_in_schema=False)

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
async def reset_breaker(request: Request, breaker_id: RowId, console: Console) -> Response:
    form = await form_of(request, console)
    body = form_body(ResetIn, {"reason": form.get("reason", "")})
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
    return redirect(f"/console/breakers?reset={breaker_id}")


# ---- reports -------------------------------------------------------------------------------------------------


def _report_query(request: Request) -> tuple[str, Literal["unit", "domain", "rule"]]:
    today = utcnow().astimezone(zone_of(request))
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
    zone = zone_of(request)
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
    rule_set = request.app.state.rules.current(db)

    def group_label(group: str) -> str:
        """A domain's or rule's label in the page's language; a unit by its id."""
        if group_by == "domain" and f"domain.{group}" in LABELS:
            return label(f"domain.{group}", lang)
        rule = rule_set.get(group) if group_by == "rule" else None
        if rule is not None:
            return f"{rule.label_en if lang == 'en' else rule.label_zh} ({group})"
        return group

    table = [{**_report_line(row), "label": group_label(row.group)} for row in rows]
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
    time_from, time_to = _period_range(period, zone_of(request))
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
