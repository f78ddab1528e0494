"""Rules measured by the database: one set-based statement per rule, on SQLite and PostgreSQL.

The reference evaluator (:mod:`app.rules.engine`) defines what a rule measures; this module computes the
same thing with SQL, so that no scan reads events into Python one by one.
A rule's filter, subject, window and value become one ``SELECT … GROUP BY subject, window`` over the
``events`` table joined to a list of windows computed by :mod:`app.rules.windows` (so window edges are
exactly the reference ones in any zone, daylight saving included). The statement returns, per (subject,
window) holding considered events, the aggregates a value is made of; :func:`value_of` turns them into
the value. Scans pass every window of a time range, and to build a rule's aggregates
(:mod:`app.rules.aggregates`, which the inline evaluation keeps up to date without reading events again);
a scan's repair and the evidence of an alert pass the (subject, window) pairs they need, which the indexes
on ``(subject column, occurred_at)`` answer without reading anything outside those windows.

Filter semantics follow :mod:`app.rules.filters`: values compare only with values of the same kind (text,
number, true/false), text orders by code point, and an absent field matches only ``ne``/``not_in``.
``sum`` adds exact decimals (NUMERIC on PostgreSQL, ``decimal_sum`` on SQLite); the reference rounds its sum
of floats exactly once, so the two may differ in the last bits; :func:`same_value` is the comparison to use.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta, tzinfo
from decimal import Decimal
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Float,
    Integer,
    Numeric,
    Select,
    String,
    Time,
    and_,
    bindparam,
    case,
    cast,
    column,
    false,
    func,
    literal,
    literal_column,
    not_,
    or_,
    select,
    text,
    true,
    type_coerce,
    union_all,
    values,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection

from app.db import UTCDateTime
from app.events.models import Event
from app.rules.filters import ATTRIBUTES_PREFIX, Condition, Filter, Operator, Scalar
from app.rules.spec import (
    AnyRule,
    CountRule,
    DistinctRule,
    GroupBy,
    OffHoursRule,
    RatioRule,
    SpikeRule,
    SumRule,
)
from app.rules.windows import Window, offsets_between, previous, windows_between

__all__ = [
    "EVIDENCE_CAP",
    "Aggregate",
    "Key",
    "aggregate_of",
    "evidence",
    "measure_many",
    "measure_windows",
    "same_value",
    "scan_windows",
    "value_of",
]

E = Event.__table__.c

# Field paths that are columns of the events table.
COLUMNS: dict[str, ColumnElement[Any]] = {
    "domain": E.domain,
    "action": E.action,
    "source": E.source,
    "source_event_id": E.source_event_id,
    "agent_id": E.agent_id,
    "object_ref": E.object_ref,
    "operator.id": E.operator_id,
    "operator.kind": E.operator_kind,
    "operator.unit": E.operator_unit,
    "operator.responsible_officer": E.responsible_officer,
    "business_unit.id": E.business_unit_id,
    "business_unit.kind": E.business_unit_kind,
}

# Windows travel to the database in chunks, as a VALUES list (three parameters a window; SQLite allows
# 32,766 parameters a statement).
_WINDOW_CHUNK = 2000

# How many event ids an alert's evidence keeps (the count of all that counted is kept beside them).
EVIDENCE_CAP = 100


# --- fields ------------------------------------------------------------------------------------------------------


class _Field:
    """A field path read by SQL: is it of a kind, and its value as text, number or true/false."""

    def __init__(self, path: str, dialect: str) -> None:
        self.path = path
        self.dialect = dialect
        self.column = COLUMNS.get(path)
        self.name = path[len(ATTRIBUTES_PREFIX) :] if self.column is None else ""
        if self.column is None and not path.startswith(ATTRIBUTES_PREFIX):  # pragma: no cover - paths are checked
            raise ValueError(f"unknown field path {path!r}")

    # JSON access to attributes.<name>
    def _json(self) -> ColumnElement[Any]:
        return type_coerce(E.attributes, JSONB)[self.name]

    def _json_path(self) -> str:
        return '$."' + self.name.replace("\\", "\\\\").replace('"', '\\"') + '"'

    def json_type(self) -> ColumnElement[str]:
        if self.dialect == "postgresql":
            return func.jsonb_typeof(self._json())
        return func.json_type(E.attributes, self._json_path())

    def is_text(self) -> ColumnElement[bool]:
        if self.column is not None:
            return self.column.is_not(None)
        return self.json_type() == ("string" if self.dialect == "postgresql" else "text")

    def is_number(self) -> ColumnElement[bool]:
        if self.column is not None:
            return false()
        if self.dialect == "postgresql":
            return self.json_type() == "number"
        return self.json_type().in_(("integer", "real"))

    def text(self) -> ColumnElement[str]:
        if self.column is not None:
            value = self.column
        elif self.dialect == "postgresql":
            value = type_coerce(E.attributes, JSONB)[self.name].astext
        else:
            value = func.json_extract(E.attributes, self._json_path())
        # Code point order, as Python compares text (PostgreSQL would otherwise use the database's collation).
        return value.collate("C") if self.dialect == "postgresql" else value

    def exact(self) -> ColumnElement[Any]:
        """The number as an exact decimal (PostgreSQL NUMERIC; on SQLite the JSON number, summed by decimal_sum)."""
        if self.dialect == "postgresql":
            return cast(type_coerce(E.attributes, JSONB)[self.name].astext, Numeric)
        return func.json_extract(E.attributes, self._json_path())

    def number(self) -> ColumnElement[float]:
        if self.dialect == "postgresql":
            return cast(type_coerce(E.attributes, JSONB)[self.name].astext, Float)
        return type_coerce(func.json_extract(E.attributes, self._json_path()), Float)

    def is_bool(self, value: bool) -> ColumnElement[bool]:
        if self.column is not None:
            return false()
        if self.dialect == "postgresql":
            return and_(self.json_type() == "boolean", self._json().astext == str(value).lower())
        return self.json_type() == ("true" if value else "false")

    def present(self) -> ColumnElement[bool]:
        """The field holds a value (not absent, not null)."""
        if self.column is not None:
            return self.column.is_not(None)
        return and_(self.json_type().is_not(None), self.json_type() != "null")

    def distinct_key(self) -> ColumnElement[Any]:
        """A value telling field values apart as the reference does (1 and 1.0 alike; 1, true and "1" not)."""
        if self.column is not None:
            return self.column
        if self.dialect == "postgresql":
            return case((self.json_type() != "null", self._json()))
        kind = self.json_type()
        raw = func.json_extract(E.attributes, self._json_path())
        return case(
            (kind.in_(("integer", "real")), literal("n") + cast(cast(raw, Float), String)),
            (kind == "text", literal("s") + raw),
            (kind == "true", literal("b1")),
            (kind == "false", literal("b0")),
            (kind.in_(("array", "object")), literal("j") + raw),
        )


def _equals(field: _Field, value: Scalar) -> ColumnElement[bool]:
    if isinstance(value, bool):
        return field.is_bool(value)
    if isinstance(value, str):
        return and_(field.is_text(), field.text() == value)
    if field.column is not None:
        return false()
    return and_(field.is_number(), field.number() == float(value))


def _ordered(field: _Field, op: Operator, value: Scalar) -> ColumnElement[bool]:
    actual: ColumnElement[Any]
    bound: ColumnElement[Any]
    if isinstance(value, str):
        guard, actual, bound = field.is_text(), field.text(), literal(value, String)
    else:
        if field.column is not None:
            return false()
        guard, actual, bound = field.is_number(), field.number(), literal(float(value), Float)
    compared = {
        Operator.GT: actual > bound,
        Operator.GTE: actual >= bound,
        Operator.LT: actual < bound,
        Operator.LTE: actual <= bound,
    }[op]
    return and_(guard, compared)


def _holds(expression: ColumnElement[bool]) -> ColumnElement[bool]:
    # NULL (an absent field) is "does not hold", so that NOT of it holds, as ne/not_in require.
    return func.coalesce(expression, false())


def condition_sql(condition: Condition, dialect: str) -> ColumnElement[bool]:
    field = _Field(condition.path, dialect)
    op, value = condition.op, condition.value
    if op in (Operator.IN, Operator.NOT_IN):
        assert isinstance(value, tuple)
        member = _holds(or_(false(), *(_equals(field, v) for v in value)))
        return member if op is Operator.IN else not_(member)
    assert not isinstance(value, tuple)
    if op is Operator.EQ:
        return _holds(_equals(field, value))
    if op is Operator.NE:
        return not_(_holds(_equals(field, value)))
    return _holds(_ordered(field, op, value))


def filter_sql(filter: Filter, dialect: str) -> ColumnElement[bool]:
    return and_(true(), *(condition_sql(c, dialect) for c in filter.conditions))


# --- subjects ----------------------------------------------------------------------------------------------------


def subject_sql(group_by: GroupBy) -> ColumnElement[str]:
    """The subject an event counts for, as the reference's ``subject_of`` (NULL: not counted)."""
    if group_by is GroupBy.OPERATOR:
        return E.operator_id
    if group_by is GroupBy.BUSINESS_UNIT:
        return E.business_unit_id
    if group_by is GroupBy.AGENT:
        return E.agent_id
    if group_by is GroupBy.ORG_UNIT:
        return E.operator_unit
    return case((E.operator_kind == "police", E.operator_id), else_=E.responsible_officer)


def subject_is(group_by: GroupBy, subject: ColumnElement[str]) -> ColumnElement[bool]:
    """Events that count for ``subject``, written so that the (subject column, occurred_at) indexes serve it."""
    if group_by is GroupBy.RESPONSIBLE_OFFICER:
        return or_(
            and_(E.operator_id == subject, E.operator_kind == "police"),
            and_(E.responsible_officer == subject, E.operator_kind != "police"),
        )
    return subject_sql(group_by) == subject


# --- what counts ---------------------------------------------------------------------------------------------------


Span = tuple[datetime, datetime]  # the instants a statement reads
Offsets = tuple[tuple[datetime | None, timedelta], ...]  # the zone's UTC offsets over a span (offsets_between)


def offsets_over(zone: tzinfo, span: Span) -> Offsets:
    return tuple(offsets_between(zone, *span))


def _local_time_inside(start: time, end: time, dialect: str, zone: tzinfo, offsets: Offsets) -> ColumnElement[bool]:
    if dialect == "postgresql":
        local = cast(func.timezone(str(zone), E.occurred_at), Time)
        return and_(local >= start, local < end)
    # SQLite has no zones: the offset is constant between the zone's transitions, so the local
    # minute of day is strftime over occurred_at shifted by the offset in force (a CASE over the
    # transitions of the years the events span). Comparing minutes is exact: the hours are whole minutes.
    shifted = func.strftime("%H:%M", E.occurred_at, _sqlite_offset(offsets))
    return and_(shifted >= start.strftime("%H:%M"), shifted < end.strftime("%H:%M"))


def _sqlite_offset(spans: Offsets) -> ColumnElement[str]:
    modifier = [f"{int(offset.total_seconds())} seconds" for _, offset in spans]
    if len(spans) == 1:
        return literal(modifier[0])
    whens = [
        (E.occurred_at < literal(until, UTCDateTime), literal(shift))
        for (until, _), shift in zip(spans, modifier, strict=True)
    ]
    return case(*whens[:-1], else_=literal(modifier[-1]))


def counted_sql(rule: AnyRule, dialect: str, zone: tzinfo, offsets: Offsets) -> ColumnElement[bool]:
    """Among considered events, those that count toward the value (the reference's ``hits``)."""
    if isinstance(rule, DistinctRule):
        return _Field(rule.field, dialect).present()
    if isinstance(rule, SumRule):
        return _holds(_Field(rule.field, dialect).is_number())
    if isinstance(rule, OffHoursRule):
        hours = rule.allowed_hours
        return not_(_holds(_local_time_inside(hours.start, hours.end, dialect, zone, offsets)))
    return true()


def considered_sql(rule: AnyRule, dialect: str, *, by_subject: bool = False) -> ColumnElement[bool]:
    """Events the rule looks at: of its domains, passing its filter, with a subject.

    ``by_subject``: the statement names its subjects, and the (subject, occurred_at) indexes should find
    the events. SQLite's planner, without statistics, would rather take the (domain, occurred_at) index,
    which reads every event of the domain in the time span; the domain test is then written so that no
    index serves it (SQLite's unary ``+``)."""
    domains = [str(domain.value) for domain in rule.domains]
    domain: ColumnElement[str] = E.domain
    if by_subject and dialect == "sqlite":
        domain = literal_column("+events.domain", String)
    return and_(
        domain.in_(domains) if len(domains) > 1 else domain == domains[0],
        filter_sql(rule.filter, dialect),
        subject_sql(rule.group_by).is_not(None),
    )


# --- measuring -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Aggregate:
    """What one (subject, window) holds for a rule: the parts its value is made of."""

    n: int  # considered events
    hits: int  # events that count toward the value
    part: float  # ratio: numerator matches; sum: the sum; distinct: distinct values; others unused
    first_at: datetime | None  # first counted event
    last_at: datetime | None
    total: Decimal | None = None  # sum: the exact sum (None: no number counted)


def aggregate_of(rule: AnyRule, n: Any, hits: Any, part: Any, first_at: Any, last_at: Any) -> Aggregate:
    """An aggregate from a measuring statement's row (sums arrive exact: NUMERIC, or decimal text on SQLite)."""
    total = Decimal(str(part)) if isinstance(rule, SumRule) and part is not None else None
    return Aggregate(int(n), int(hits or 0), float(part or 0), first_at, last_at, total)


Key = tuple[str, datetime]  # (subject, window start)


def _count_if(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.sum(case((condition, 1), else_=0))


def _aggregates(rule: AnyRule, dialect: str, zone: tzinfo, offsets: Offsets) -> list[ColumnElement[Any]]:
    counted = counted_sql(rule, dialect, zone, offsets)
    if isinstance(rule, RatioRule):
        part: ColumnElement[Any] = _count_if(filter_sql(rule.numerator, dialect))
    elif isinstance(rule, SumRule):
        value = case((_Field(rule.field, dialect).is_number(), _Field(rule.field, dialect).exact()))
        part = func.sum(value) if dialect == "postgresql" else func.decimal_sum(value)
    elif isinstance(rule, DistinctRule):
        part = func.count(_Field(rule.field, dialect).distinct_key().distinct())
    else:
        part = literal(0)
    return [
        func.count().label("n"),
        _count_if(counted).label("hits"),
        part.label("part"),
        type_coerce(func.min(case((counted, E.occurred_at))), UTCDateTime).label("first_at"),
        type_coerce(func.max(case((counted, E.occurred_at))), UTCDateTime).label("last_at"),
    ]


def _scan_statement(rule: AnyRule, dialect: str, zone: tzinfo, windows: Sequence[Window]) -> Select[Any]:
    w = (
        values(column("ws", UTCDateTime), column("we", UTCDateTime), name="w")
        .data([(window.start, window.end) for window in windows])
        .cte("w")
    )
    subject = subject_sql(rule.group_by)
    return (
        select(subject.label("subject"), w.c.ws, *_aggregates(rule, dialect, zone, offsets_over(zone, _span(windows))))
        .select_from(Event.__table__)
        .join(w, and_(E.occurred_at >= w.c.ws, E.occurred_at < w.c.we))
        .where(considered_sql(rule, dialect))
        .group_by(subject, w.c.ws)
    )


# The (subject, window) pairs of a keyed measurement (a scan's repair) travel as arrays (PostgreSQL) or one JSON text
# (SQLite), so that each rule's statement is built and compiled once and only its parameters change.
def _keys_source(dialect: str, n: int) -> Any:
    """The (subject, ws, we) rows of member ``n`` of a statement, from its parameters."""
    if dialect == "postgresql":
        sql = (
            f"SELECT * FROM unnest(CAST(:subjects_{n} AS text[]), CAST(:starts_{n} AS timestamptz[]),"
            f" CAST(:ends_{n} AS timestamptz[])) AS k(subject, ws, we)"
        )
    else:
        sql = (
            "SELECT json_extract(value, '$[0]') AS subject, json_extract(value, '$[1]') AS ws,"
            f" json_extract(value, '$[2]') AS we FROM json_each(:keys_{n})"
        )
    return text(sql).columns(column("subject", String), column("ws", UTCDateTime), column("we", UTCDateTime))


def sqlite_time(at: datetime) -> str:
    """An instant as SQLite stores UTCDateTime values (naive UTC text, which sorts as time does)."""
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _keys_parameters(dialect: str, keys: Sequence[tuple[str, Window]], n: int = 0) -> dict[str, Any]:
    # The span of all the windows too: it bounds the scan of events by time whatever plan the database picks.
    lo, hi = _span(window for _, window in keys)
    if dialect == "postgresql":
        return {
            f"subjects_{n}": [subject for subject, _ in keys],
            f"starts_{n}": [window.start for _, window in keys],
            f"ends_{n}": [window.end for _, window in keys],
            f"lo_{n}": lo,
            f"hi_{n}": hi,
        }
    rows = [[subject, sqlite_time(window.start), sqlite_time(window.end)] for subject, window in keys]
    return {f"keys_{n}": json.dumps(rows, ensure_ascii=False), f"lo_{n}": lo, f"hi_{n}": hi}


@lru_cache(maxsize=256)
def _keys_statement(rule: AnyRule, dialect: str, zone: tzinfo, offsets: Offsets, n: int = 0) -> Select[Any]:
    """Member ``n`` of a keyed measurement: the rule's aggregates for the (subject, window) rows it is given,
    tagged ``n`` so that one statement can measure several rules."""
    k = _keys_source(dialect, n).cte(f"k{n}")
    return (
        select(literal(n).label("member"), k.c.subject, k.c.ws, *_aggregates(rule, dialect, zone, offsets))
        .select_from(Event.__table__)
        .join(k, and_(subject_is(rule.group_by, k.c.subject), E.occurred_at >= k.c.ws, E.occurred_at < k.c.we))
        .where(
            E.occurred_at >= bindparam(f"lo_{n}", type_=UTCDateTime),
            E.occurred_at < bindparam(f"hi_{n}", type_=UTCDateTime),
            considered_sql(rule, dialect, by_subject=True),
        )
        .group_by(k.c.subject, k.c.ws)
    )


@lru_cache(maxsize=1024)
def _union_statement(members: tuple[tuple[AnyRule, Offsets], ...], dialect: str, zone: tzinfo) -> Any:
    parts = [_keys_statement(rule, dialect, zone, offsets, n) for n, (rule, offsets) in enumerate(members)]
    return parts[0] if len(parts) == 1 else union_all(*parts)


def _span(windows: Iterable[Window]) -> Span:
    listed = list(windows)
    return min(w.start for w in listed), max(w.end for w in listed)


def _window_start(connection: Connection, ws: Any) -> datetime:
    if isinstance(ws, str):  # SQLite may return the rows' text as it is
        ws = datetime.fromisoformat(ws)
    if ws.tzinfo is None:
        ws = UTCDateTime().process_result_value(ws, connection.dialect)
    return ws  # type: ignore[no-any-return]


def _read(
    connection: Connection, rule: AnyRule, statement: Select[Any], parameters: dict[str, Any] | None = None
) -> Iterator[tuple[Key, Aggregate]]:
    for subject, ws, n, hits, part, first_at, last_at in connection.execute(statement, parameters or {}):
        yield (subject, _window_start(connection, ws)), aggregate_of(rule, n, hits, part, first_at, last_at)


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


_UNIX = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_S = 4 * 86_400  # 1970-01-05 00:00, where windows are aligned, in seconds after 1970-01-01


def _index_statement(
    rule: AnyRule, dialect: str, zone: tzinfo, span: Span, offset_s: int, length_s: int
) -> Select[Any]:
    """Where the zone keeps one UTC offset over ``span``, every window is ``length`` long and an event's
    window is arithmetic: its index is ⌊(epoch seconds + offset − 1970-01-05) / length⌋. Grouping by the
    index needs no join (whole seconds suffice: windows start on whole seconds)."""
    seconds: ColumnElement[int]
    if dialect == "postgresql":
        seconds = cast(func.floor(func.extract("epoch", E.occurred_at)), BigInteger)
    else:
        seconds = cast(func.strftime("%s", E.occurred_at), Integer)
    index = (seconds + (offset_s - _EPOCH_S)) // length_s
    subject = subject_sql(rule.group_by)
    return (
        select(subject.label("subject"), index.label("w"), *_aggregates(rule, dialect, zone, offsets_over(zone, span)))
        .where(E.occurred_at >= span[0], E.occurred_at < span[1], considered_sql(rule, dialect))
        .group_by(subject, index)
    )


def measure_windows(
    connection: Connection, rule: AnyRule, zone: tzinfo, windows: Sequence[Window]
) -> dict[Key, Aggregate]:
    """Every (subject, window) among ``windows`` (consecutive) holding events the rule considers, with its
    aggregates. One GROUP BY over the range when the zone keeps one offset there; otherwise (daylight
    saving) a join with the windows, in chunks."""
    found: dict[Key, Aggregate] = {}
    if not windows:
        return found
    dialect = connection.dialect.name
    span = _span(windows)
    offsets = offsets_between(zone, *span)
    length = rule.window
    if (
        len(offsets) == 1
        and all(w.end - w.start == length for w in windows)
        and length % timedelta(seconds=1) == timedelta(0)
    ):
        offset_s, length_s = int(offsets[0][1].total_seconds()), int(length.total_seconds())
        by_index = {_window_index(w, offset_s, length_s): w.start for w in windows}
        for subject, index, n, hits, part, first_at, last_at in connection.execute(
            _index_statement(rule, dialect, zone, span, offset_s, length_s)
        ):
            found[(subject, by_index[int(index)])] = aggregate_of(rule, n, hits, part, first_at, last_at)
        return found
    for chunk in _chunks(windows, _WINDOW_CHUNK):
        found.update(_read(connection, rule, _scan_statement(rule, dialect, zone, chunk)))
    return found


def _window_index(window: Window, offset_s: int, length_s: int) -> int:
    seconds = int((window.start - _UNIX).total_seconds())
    return (seconds + offset_s - _EPOCH_S) // length_s


def measure_many(
    connection: Connection, zone: tzinfo, wanted: Mapping[AnyRule, Iterable[tuple[str, Window]]]
) -> dict[str, dict[Key, Aggregate]]:
    """The aggregates of the given (subject, window) pairs of each rule (absent: no considered event there),
    in one statement when they are few keys (a scan's repair of drifted rows)."""
    dialect = connection.dialect.name
    found: dict[str, dict[Key, Aggregate]] = {rule.id: {} for rule in wanted}
    members: list[tuple[AnyRule, Offsets]] = []
    parameters: dict[str, Any] = {}
    for rule, keys in sorted(wanted.items(), key=lambda item: item[0].id):
        ordered = sorted(set(keys), key=lambda key: (key[0], key[1].start))
        if not ordered:
            continue
        for chunk in _chunks(ordered, _WINDOW_CHUNK):
            parameters.update(_keys_parameters(dialect, chunk, len(members)))
            members.append((rule, offsets_over(zone, _span(w for _, w in chunk))))
            if len(parameters) >= 3 * _UNION_MEMBERS or len(chunk) == _WINDOW_CHUNK:
                _run(connection, members, parameters, zone, found)
                members, parameters = [], {}
    if members:
        _run(connection, members, parameters, zone, found)
    return found


_UNION_MEMBERS = 16  # members per statement


def _run(
    connection: Connection,
    members: list[tuple[AnyRule, Offsets]],
    parameters: dict[str, Any],
    zone: tzinfo,
    found: dict[str, dict[Key, Aggregate]],
) -> None:
    statement = _union_statement(tuple(members), connection.dialect.name, zone)
    for member, subject, ws, n, hits, part, first_at, last_at in connection.execute(statement, parameters):
        rule = members[member][0]
        found[rule.id][(subject, _window_start(connection, ws))] = aggregate_of(rule, n, hits, part, first_at, last_at)


def value_of(
    rule: AnyRule, key: Key, aggregates: Mapping[Key, Aggregate], baseline: Sequence[Window] = ()
) -> float | None:
    """The value of an evaluated (subject, window), or None when it is not evaluated (as the reference)."""
    found = aggregates.get(key)
    if found is None or found.n == 0:
        return None
    if isinstance(rule, CountRule):
        return float(found.n)
    if isinstance(rule, RatioRule):
        return None if found.n < rule.min_events else found.part / found.n
    if isinstance(rule, DistinctRule | SumRule):
        return found.part
    if isinstance(rule, OffHoursRule):
        return float(found.hits)
    if isinstance(rule, SpikeRule):
        if found.n < rule.min_events:
            return None
        subject = key[0]
        total = sum(aggregates[(subject, w.start)].n for w in baseline if (subject, w.start) in aggregates)
        mean = total / rule.baseline_windows
        return found.n / (mean if mean > 0 else 1.0)
    raise TypeError(f"unknown rule type {type(rule).__name__}")  # pragma: no cover


def same_value(a: float | None, b: float | None) -> bool:
    """Values equal up to float summation order (``sum`` rules)."""
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def evidence(
    connection: Connection, rule: AnyRule, zone: tzinfo, subject: str, window: Window, *, cap: int = EVIDENCE_CAP
) -> list[tuple[int, datetime, str, str, str | None]]:
    """The first ``cap`` events that count toward (subject, window), in (occurred_at, id) order:
    (id, occurred_at, operator unit, operator kind, responsible officer)."""
    dialect = connection.dialect.name
    statement = (
        select(E.id, E.occurred_at, E.operator_unit, E.operator_kind, E.responsible_officer)
        .where(
            subject_is(rule.group_by, literal(subject, String)),
            E.occurred_at >= window.start,
            E.occurred_at < window.end,
            considered_sql(rule, dialect),
            counted_sql(rule, dialect, zone, offsets_over(zone, (window.start, window.end))),
        )
        .order_by(E.occurred_at, E.id)
        .limit(cap)
    )
    return [(row[0], row[1], row[2], row[3], row[4]) for row in connection.execute(statement)]


def scan_windows(rule: AnyRule, zone: tzinfo, start: datetime, end: datetime) -> list[Window]:
    """The windows a scan of [start, end) evaluates, plus, for ``spike``, the baseline windows before them."""
    found = list(windows_between(start, end, rule.window, zone))
    if isinstance(rule, SpikeRule) and found:
        found = list(reversed(previous(found[0], rule.baseline_windows, rule.window, zone))) + found
    return found
