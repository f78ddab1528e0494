"""The summary report (监督情况汇总): per unit, domain or rule, what the alerts of a period became.

An alert belongs to the period holding its window start (when the risky business happened), so the
October report counts October's business however late its events or scans arrived. Every figure is
computed by the database with GROUP BY; medians too (the middle one or two of each ordered group).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, case, func, literal, or_, select, true, union_all, values
from sqlalchemy import column as sql_column
from sqlalchemy.orm import Session

from app.alerts.models import Alert, AlertTransition
from app.alerts.schemas import InterviewLevel, Outcome, Stage
from app.alerts.service import overdue_sql
from app.alerts.workflow import PEOPLE_OUTCOMES
from app.errors import InvalidInput
from app.events.domains import Domain
from app.fields import MAX_TIME, MIN_TIME

GROUPS = ("unit", "domain", "rule")
KINDS = ("police", "auxiliary", "staff")
REACHED = (Stage.SUPERVISION, Stage.INTERVIEW, Stage.ACCOUNTABILITY, Stage.CLOSED, Stage.DISMISSED)
STAYS = (Stage.WARNING, Stage.SUPERVISION, Stage.INTERVIEW, Stage.ACCOUNTABILITY)
_PERIOD = re.compile(r"^([0-9]{4})(?:-([0-9]{2})|-Q([1-4]))?$")
# What period_range accepts, for the OpenAPI document: the years every stored time lies in.
PERIOD_PATTERN = r"^20[0-9]{2}(-(0[1-9]|1[0-2])|-Q[1-4])?$"


def period_range(period: str, zone: tzinfo) -> tuple[datetime, datetime]:
    """``2026-03`` (month), ``2026-Q1`` (quarter) or ``2026`` (year), in the configured zone: [start, end)."""
    match = _PERIOD.match(period)
    if match is None:
        raise InvalidInput([(("query", "period"), "a month (2026-03), a quarter (2026-Q1) or a year (2026)")])
    year = int(match.group(1))
    if not MIN_TIME.year <= year < MAX_TIME.year:
        raise InvalidInput([(("query", "period"), f"the year must be {MIN_TIME.year} to {MAX_TIME.year - 1}")])
    if match.group(2):
        month = int(match.group(2))
        if not 1 <= month <= 12:
            raise InvalidInput([(("query", "period"), "the month must be 01 to 12")])
        first, months = date(year, month, 1), 1
    elif match.group(3):
        first, months = date(year, 3 * int(match.group(3)) - 2, 1), 3
    else:
        first, months = date(year, 1, 1), 12
    index = first.year * 12 + first.month - 1 + months
    after = date(index // 12, index % 12 + 1, 1)
    start = datetime(first.year, first.month, 1, tzinfo=zone)
    end = datetime(after.year, after.month, 1, tzinfo=zone)
    return start, end


@dataclass
class Row:
    group: str
    alerts_raised: int = 0
    alerts_exempted: int = 0  # covered by an approved exemption (报备): counted apart, not in alerts_raised
    reached: dict[str, int] = field(default_factory=lambda: {s.value: 0 for s in REACHED})
    interviews: dict[str, int] = field(default_factory=lambda: {level.value: 0 for level in InterviewLevel})
    accountability: dict[str, dict[str, int]] = field(
        default_factory=lambda: {kind: dict.fromkeys(PEOPLE_OUTCOMES, 0) for kind in (*KINDS, "other")}
    )
    business_units_suspended: int = 0
    overdue_supervisions: int = 0
    median_hours: dict[str, float | None] = field(default_factory=lambda: {s.value: None for s in STAYS})


def _groups(group_by: str) -> Any:
    """The alerts joined to their group key (an alert of a rule over two domains counts in both)."""
    if group_by == "domain":
        domains = values(sql_column("d", Alert.domains.type), name="d").data([(d.value,) for d in Domain]).cte("d")
        return select(Alert.id.label("alert_id"), domains.c.d.label("g")).join_from(
            Alert, domains, Alert.domains.contains(literal(",") + domains.c.d + literal(","))
        )
    key = Alert.unit if group_by == "unit" else Alert.rule_id
    return select(Alert.id.label("alert_id"), key.label("g"))


def _seconds(later: Any, earlier: Any, dialect: str) -> Any:
    if dialect == "postgresql":
        return func.extract("epoch", later - earlier)
    return (func.julianday(later) - func.julianday(earlier)) * 86400.0


def summary(
    session: Session,
    *,
    group_by: str,
    time_from: datetime | None,
    time_to: datetime | None,
    now: datetime,
    units: Select[tuple[str]] | None = None,
) -> list[Row]:
    """One row per group holding alerts of the period, by group."""
    dialect = session.get_bind().dialect.name
    base = _groups(group_by)
    conditions: list[ColumnElement[bool]] = [true()]
    if time_from is not None:
        conditions.append(Alert.window_start >= time_from)
    if time_to is not None:
        conditions.append(Alert.window_start < time_to)
    if units is not None:
        conditions.append(Alert.unit.in_(units))
    grouped = base.where(*conditions).cte("grouped")
    rows: dict[str, Row] = {}

    def row(group: str) -> Row:
        return rows.setdefault(group, Row(group=group))

    for group, raised, exempted, overdue in session.execute(
        select(
            grouped.c.g,
            func.sum(case((Alert.exempted, 0), else_=1)),
            func.sum(case((Alert.exempted, 1), else_=0)),
            func.sum(case((overdue_sql(now), 1), else_=0)),
        )
        .join(Alert, Alert.id == grouped.c.alert_id)
        .group_by(grouped.c.g)
    ):
        row(group).alerts_raised = int(raised or 0)
        row(group).alerts_exempted = int(exempted or 0)
        row(group).overdue_supervisions = int(overdue or 0)

    moved = select(grouped.c.g, AlertTransition.to_stage, func.count(func.distinct(AlertTransition.alert_id)))
    for group, stage, count in session.execute(
        moved.join(AlertTransition, AlertTransition.alert_id == grouped.c.alert_id).group_by(
            grouped.c.g, AlertTransition.to_stage
        )
    ):
        if stage in row(group).reached:
            row(group).reached[stage] = count

    level = AlertTransition.details["level"].as_string()
    for group, lvl, count in session.execute(
        select(grouped.c.g, level, func.count())
        .join(AlertTransition, AlertTransition.alert_id == grouped.c.alert_id)
        .where(AlertTransition.to_stage == Stage.INTERVIEW.value)
        .group_by(grouped.c.g, level)
    ):
        if lvl in row(group).interviews:
            row(group).interviews[lvl] = count

    outcome = AlertTransition.details["outcome"].as_string()
    kind = func.coalesce(Alert.subject_kind, "other")
    accountable = (
        select(grouped.c.g, kind, outcome, func.count(), func.count(func.distinct(Alert.subject_id)))
        .join(AlertTransition, AlertTransition.alert_id == grouped.c.alert_id)
        .join(Alert, Alert.id == grouped.c.alert_id)
        .where(AlertTransition.to_stage == Stage.ACCOUNTABILITY.value)
        .group_by(grouped.c.g, kind, outcome)
    )
    for group, who, what, count, subjects in session.execute(accountable):
        if what == Outcome.SUSPENSION.value:
            row(group).business_units_suspended += subjects
        elif what in PEOPLE_OUTCOMES:
            row(group).accountability[who if who in KINDS else "other"][what] += count

    for group, stage, hours in session.execute(_medians(grouped, dialect)):
        if stage in row(group).median_hours:
            row(group).median_hours[stage] = None if hours is None else round(float(hours) / 3600, 2)
    return [rows[key] for key in sorted(rows)]


def _medians(grouped: Any, dialect: str) -> Select[Any]:
    """The median time spent in each stage left so far, per group: a stay starts when the alert entered the
    stage (raised, or moved there) and ends with the next move."""
    t = AlertTransition
    first_move = select(t.alert_id, func.min(t.id).label("first_id")).group_by(t.alert_id).subquery("first_move")
    warning_stays = (
        select(
            grouped.c.g,
            literal(Stage.WARNING.value).label("stage"),
            _seconds(t.at, Alert.created_at, dialect).label("s"),
        )
        .join(Alert, Alert.id == grouped.c.alert_id)
        .join(first_move, first_move.c.alert_id == grouped.c.alert_id)
        .join(t, t.id == first_move.c.first_id)
    )
    following = func.lead(t.at).over(partition_by=t.alert_id, order_by=t.id)
    moves = select(t.alert_id, t.to_stage, t.at, following.label("left_at")).subquery("moves")
    later_stays = (
        select(grouped.c.g, moves.c.to_stage.label("stage"), _seconds(moves.c.left_at, moves.c.at, dialect).label("s"))
        .join(moves, moves.c.alert_id == grouped.c.alert_id)
        .where(moves.c.left_at.is_not(None))
    )
    stays = union_all(warning_stays, later_stays).subquery("stays")
    ranked = select(
        stays.c.g,
        stays.c.stage,
        stays.c.s,
        func.row_number().over(partition_by=(stays.c.g, stays.c.stage), order_by=stays.c.s).label("rn"),
        func.count().over(partition_by=(stays.c.g, stays.c.stage)).label("c"),
    ).subquery("ranked")
    middle = or_(ranked.c.rn == (ranked.c.c + 1) // 2, ranked.c.rn == (ranked.c.c + 2) // 2)
    return (
        select(ranked.c.g, ranked.c.stage, func.avg(ranked.c.s))
        .where(and_(middle))
        .group_by(ranked.c.g, ranked.c.stage)
    )


def flat(row: Row) -> dict[str, Any]:
    """One CSV line: every figure in its own column."""
    line: dict[str, Any] = {
        "group": row.group,
        "alerts_raised": row.alerts_raised,
        "alerts_exempted": row.alerts_exempted,
    }
    line.update({f"reached_{stage}": n for stage, n in row.reached.items()})
    line.update({f"interviews_{level}": n for level, n in row.interviews.items()})
    for kind, outcomes in row.accountability.items():
        line.update({f"accountability_{kind}_{outcome}": n for outcome, n in outcomes.items()})
    line["business_units_suspended"] = row.business_units_suspended
    line["overdue_supervisions"] = row.overdue_supervisions
    line.update({f"median_hours_{stage}": hours for stage, hours in row.median_hours.items()})
    return line


__all__ = ["GROUPS", "Row", "flat", "period_range", "summary"]
