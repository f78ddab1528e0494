from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from app.auth.deps import InspectorKey
from app.db import utcnow
from app.deps import ReadSession
from app.errors import InvalidInput, responses
from app.params import QueryTime
from app.reports import service
from app.units.service import subtree

router = APIRouter(prefix="/v1/reports", tags=["reports"])

# The pattern is for the document; service.period_range checks it, with messages that say what is wrong.
Period = Annotated[str, Field(json_schema_extra={"pattern": service.PERIOD_PATTERN})]


class SummaryRow(BaseModel):
    group: str = Field(description="the unit, domain or rule id")
    alerts_raised: int = Field(description="alerts of the period not covered by an exemption")
    alerts_exempted: int = Field(description="alerts covered by an approved exemption (报备), counted apart")
    reached: dict[str, int] = Field(description="alerts that reached each stage (supervision … dismissed)")
    interviews: dict[str, int] = Field(description="interviews by level: unit, discipline, committee (三级约谈)")
    accountability: dict[str, dict[str, int]] = Field(
        description="accountability outcomes by the subject's operator kind (police, auxiliary, staff, other)"
    )
    business_units_suspended: int
    overdue_supervisions: int = Field(description="alerts in supervision past their due time now")
    median_hours: dict[str, float | None] = Field(description="median hours spent in each stage, of stays ended")


class Summary(BaseModel):
    group_by: str
    time_from: datetime | None = Field(serialization_alias="from")
    time_to: datetime | None = Field(serialization_alias="to")
    items: list[SummaryRow]
    next_cursor: None = Field(default=None, description="always null: one page holds every group")


@router.get(
    "/summary",
    responses={
        200: {"content": {"text/csv": {}}, "description": "JSON, or CSV with a header row (Accept: text/csv)"},
        **responses(401, 403, 422),
    },
)
def get_summary(
    request: Request,
    principal: InspectorKey,
    session: ReadSession,
    group_by: Literal["unit", "domain", "rule"] = "unit",
    period: Annotated[Period | None, Query(max_length=7, description="2026-03, 2026-Q1 or 2026 (local time)")] = None,
    time_from: Annotated[QueryTime | None, Query(alias="from", description="window_start ≥ from")] = None,
    time_to: Annotated[QueryTime | None, Query(alias="to", description="window_start < to")] = None,
) -> Response:
    """Per unit, domain or rule: alerts raised in the period (by window start), stages reached, interviews by
    level, accountability outcomes by operator kind, business units suspended, overdue supervisions and the
    median time in each stage. `Accept: text/csv` gives the same as CSV."""
    if period is not None:
        if time_from is not None or time_to is not None:
            raise InvalidInput([(("query", "period"), "give a period or from/to, not both")])
        time_from, time_to = service.period_range(period, request.app.state.settings.zone)
    elif time_from is not None and time_to is not None and time_to <= time_from:
        raise InvalidInput([(("query", "to"), "must be after `from`")])
    rows = service.summary(
        session,
        group_by=group_by,
        time_from=time_from,
        time_to=time_to,
        now=utcnow(),
        units=subtree(principal.unit_id) if principal.unit_id else None,
    )
    if "text/csv" in request.headers.get("accept", ""):
        lines = [service.flat(row) for row in rows]
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(service.flat(service.Row(group="")).keys()), lineterminator="\n")
        writer.writeheader()
        writer.writerows(lines)
        return Response(out.getvalue(), media_type="text/csv; charset=utf-8")
    body = Summary(
        group_by=group_by,
        time_from=time_from,
        time_to=time_to,
        items=[SummaryRow(**vars(row)) for row in rows],
    )
    return Response(body.model_dump_json(by_alias=True), media_type="application/json")
