"""Rule aggregates: each (rule, subject, window)'s running figures, kept as events arrive.

Inline evaluation no longer measures a window by reading its events again: every new event adds its
share (a :class:`Delta`) to the window's row in ``rule_windows`` with one upsert per request, whose
``RETURNING`` hands back the window's new figures. The cost per event is therefore the same whether the
window holds ten events or fifty thousand. What a row holds, by rule type (the reference evaluator,
:mod:`app.rules.engine`, defines each):

========== ============================================================================================
all        ``n`` considered events; ``hits`` events that count; ``first_at``/``last_at`` of counted ones
ratio      ``part``: how many also match ``numerator``
distinct   ``part``: how many distinct values; each value is a row of ``rule_window_values`` (a hash of
           its normal form), inserted if absent, and only the new ones are added to ``part``
sum        ``total``: the exact sum (PostgreSQL NUMERIC; decimal text summed by Python on SQLite)
off_hours  ``hits``: the events outside ``allowed_hours``
spike      ``n`` (the baseline is the rows of the windows before)
========== ============================================================================================

Aggregates are derived data; the events stay the only source of truth. A rule's rows are valid for one
*fingerprint* of its definition (what the figures depend on: type, domains, filter, subject, window,
field, numerator, hours, and the zone), recorded in ``rule_builds``. The inline upsert joins that table
on the fingerprint the worker's rule has: a worker whose rules are not the ones the rows were built for
writes nothing for that rule, and :class:`StaleAggregates` sends the request back to be retried once the
worker has the rules in force and their rows are built (:func:`ensure_built`). Building a rule's rows
(:func:`build`) replaces them from the stored events under an exclusive advisory lock on the rule, which
inline evaluation takes shared (PostgreSQL; SQLite writers are serialised anyway): an event arriving
during a build waits for it, then adds its share to the rebuilt rows.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Any

from sqlalchemy import String, Table, bindparam, delete, func, literal, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from app.db import Database, UTCDateTime, decimal_of, described, driver_rows, utcnow
from app.errors import AppError
from app.events.models import Event
from app.rules import sql
from app.rules.engine import distinct_form, is_number
from app.rules.filters import ATTRIBUTES_PREFIX, getter
from app.rules.models import RuleBuild, RuleWindow, RuleWindowValue
from app.rules.spec import AnyRule, DistinctRule, OffHoursRule, RatioRule, SumRule
from app.rules.windows import Window, WindowGrid, windows_between

log = logging.getLogger("supervision.aggregates")

WINDOWS: Table = RuleWindow.__table__  # type: ignore[assignment]
VALUES: Table = RuleWindowValue.__table__  # type: ignore[assignment]
BUILDS: Table = RuleBuild.__table__  # type: ignore[assignment]

Key = tuple[str, str, datetime]  # (rule id, subject, window start)

_TICK = timedelta(microseconds=1)
_INSERT_CHUNK = 5000


class StaleAggregates(AppError):
    """The rows of these rules were not built for the definitions this worker holds: retry with the rules in force.

    Retried by :func:`app.alerts.inline.evaluating`; a client sees it (503) only if the rules keep changing."""

    status = 503

    def __init__(self, rule_ids: Iterable[str]) -> None:
        self.rule_ids = sorted(set(rule_ids))
        super().__init__(f"the rules changed meanwhile ({', '.join(self.rule_ids)}); send the request again")

    def headers(self) -> dict[str, str] | None:
        return {"Retry-After": "1"}


# --- fingerprints and locks ------------------------------------------------------------------------------------------


# Fingerprints by the identity of the rule object (rules are immutable once loaded) and the zone: every
# request's evaluator needs those of all rules in force, and hashing them each time cost an eighth of a
# single POST. The rule is kept beside its fingerprint, so an id reused by a new object cannot match.
_FINGERPRINTS: dict[tuple[int, str], tuple[AnyRule, str]] = {}
_FINGERPRINTS_KEPT = 4096


def fingerprint(rule: AnyRule, zone: tzinfo) -> str:
    """What a rule's aggregates depend on, hashed: thresholds, labels and severity may change freely."""
    memo = (id(rule), str(zone))
    found = _FINGERPRINTS.get(memo)
    if found is not None and found[0] is rule:
        return found[1]
    if len(_FINGERPRINTS) >= _FINGERPRINTS_KEPT:
        _FINGERPRINTS.clear()
    made = _fingerprint(rule, zone)
    _FINGERPRINTS[memo] = (rule, made)
    return made


def _fingerprint(rule: AnyRule, zone: tzinfo) -> str:
    kept = rule.model_dump(
        mode="json",
        exclude={"id", "label_zh", "label_en", "warn_at", "trip_at", "severity", "probation", "min_events"},
    )
    kept.pop("baseline_windows", None)  # a spike's baseline is read from the rows of earlier windows
    kept["zone"] = str(zone)
    text_form = json.dumps(kept, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text_form.encode()).hexdigest()


def lock_id(*parts: str) -> int:
    """A 64-bit advisory lock id for a key (a collision only serialises two unrelated keys)."""
    digest = hashlib.blake2b("\x00".join(parts).encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def rule_lock_id(rule_id: str) -> int:
    return lock_id("rule-aggregates", rule_id)


def key_lock_id(key: Key) -> int:
    rule_id, subject, start = key
    return lock_id(rule_id, subject, start.isoformat())


# Take the locks of an array of ids in its order, the first ``shared`` ones shared (see LockIds).
_TAKE_LOCKS = (
    "SELECT CASE WHEN i <= CAST(:{shared} AS integer) THEN pg_advisory_xact_lock_shared(k)"
    " ELSE pg_advisory_xact_lock(k) END FROM unnest(CAST(:{ids} AS bigint[])) WITH ORDINALITY AS t(k, i) ORDER BY i"
)
_LOCK = described(text(_TAKE_LOCKS.format(shared="shared", ids="keys")), "locked")
_LOCK_RULE = text("SELECT pg_advisory_xact_lock(:key)")


@dataclass(frozen=True, slots=True)
class LockIds:
    """The advisory locks of some keys, in the order they are taken: the rules' build locks (the first
    ``shared``, taken shared), then the keys' own. ``ids`` is one PostgreSQL array literal: the driver spends
    more on a list parameter than on the query."""

    ids: str
    shared: int

    @classmethod
    def of(cls, rule_ids: Iterable[str], keys: Iterable[Key]) -> LockIds:
        shared = sorted({rule_lock_id(rule_id) for rule_id in rule_ids})
        exclusive = sorted({key_lock_id(key) for key in keys})
        return cls("{" + ",".join(map(str, shared + exclusive)) + "}", len(shared))


NO_LOCKS = LockIds("{}", 0)

# The same locks taken by another statement (the events insert): a condition that is true once they are held.
_LOCKING = _TAKE_LOCKS.format(shared="lock_shared", ids="lock_ids")
LOCKING_CONDITION = f"(SELECT count(*) FROM ({_LOCKING}) AS locked) >= 0"


def lock(connection: Connection, rule_ids: Iterable[str], keys: Iterable[Key]) -> None:
    """Take the rules' build locks shared, then the keys' locks, in one global order (PostgreSQL only)."""
    if connection.dialect.name != "postgresql":
        return
    locks = LockIds.of(rule_ids, keys)
    connection.execute(_LOCK, {"keys": locks.ids, "shared": locks.shared})


# --- what one event adds ---------------------------------------------------------------------------------------------


def value_hash(value: Any) -> str:
    """A distinct value's identity, as the reference tells values apart (1 and 1.0 alike; 1, true and "1" not)."""
    kind, content = distinct_form(value)
    form = f"{kind}:{float(content)!r}" if kind == "number" and content != "nan" else f"{kind}:{content}"
    return hashlib.blake2b(form.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


@dataclass(slots=True)
class Delta:
    """The share of new events in one (rule, subject, window)."""

    window_end: datetime
    n: int = 0
    hits: int = 0
    part: int = 0
    total: Decimal | None = None
    first_at: datetime | None = None  # first and last counted new event
    last_at: datetime | None = None
    values: set[str] = field(default_factory=set)  # distinct: the hashes met
    counted: list[tuple[datetime, int]] = field(default_factory=list)  # (occurred_at, id) of the counted events

    def add(self, rule: AnyRule, event: Mapping[str, Any], at: datetime, zone: tzinfo) -> None:
        """Add one considered event (contract shape, ``occurred_at`` ``at``) as the reference counts it."""
        self.n += 1
        counted = True
        if isinstance(rule, RatioRule):
            self.part += rule.numerator.matches(event)
        elif isinstance(rule, DistinctRule):
            value = getter(rule.field)(event)
            counted = value is not None
            if counted:
                self.values.add(value_hash(value))
        elif isinstance(rule, SumRule):
            value = getter(rule.field)(event)
            counted = is_number(value)
            if counted:
                number = decimal_of(value)
                assert number is not None
                self.total = number if self.total is None else self.total + number
        elif isinstance(rule, OffHoursRule):
            counted = at.astimezone(zone).time() not in rule.allowed_hours
        if counted:
            self.hits += 1
            self.counted.append((at, event["id"]))
            self.first_at = at if self.first_at is None else min(self.first_at, at)
            self.last_at = at if self.last_at is None else max(self.last_at, at)


# --- reading and writing rows --------------------------------------------------------------------------------------

_COLUMNS = "rule_id, subject_id, window_start, n, hits, part, total, first_at, last_at"


def _alerted(table: str) -> str:
    """Whether the key of a ``rule_windows`` row (named ``table``) has an alert: returned beside its figures,
    so that inline evaluation loads alerts only for the keys that have one (most windows never do)."""
    return (
        f"EXISTS (SELECT 1 FROM alerts a WHERE a.rule_id = {table}.rule_id AND a.subject_id = {table}.subject_id"
        f" AND a.window_start = {table}.window_start)"
    )


_WINDOW_ROW = (*_COLUMNS.split(", "), "alerted")
_UPSERT_TEXT = {
    "postgresql": text(
        "INSERT INTO rule_windows AS w (rule_id, subject_id, window_start, window_end, n, hits, part, total,"
        " first_at, last_at)"
        " SELECT k.rule_id, k.subject_id, k.window_start, k.window_end, k.n, k.hits, k.part, k.total, k.first_at,"
        " k.last_at FROM jsonb_to_recordset(CAST(:rows AS jsonb))"
        " AS k(rule_id text, fingerprint text, subject_id text, window_start timestamptz, window_end timestamptz,"
        " n bigint, hits bigint, part bigint, total numeric, first_at timestamptz, last_at timestamptz)"
        " JOIN rule_builds b ON b.rule_id = k.rule_id AND b.fingerprint = k.fingerprint"
        " ORDER BY k.rule_id, k.subject_id, k.window_start"
        " ON CONFLICT (rule_id, subject_id, window_start) DO UPDATE SET"
        " n = w.n + excluded.n, hits = w.hits + excluded.hits, part = w.part + excluded.part,"
        " total = COALESCE(w.total + excluded.total, w.total, excluded.total),"
        " first_at = LEAST(w.first_at, excluded.first_at), last_at = GREATEST(w.last_at, excluded.last_at)"
        f" RETURNING {_COLUMNS}, {_alerted('w')}"
    ),
    "sqlite": text(
        "INSERT INTO rule_windows (rule_id, subject_id, window_start, window_end, n, hits, part, total,"
        " first_at, last_at)"
        " SELECT json_extract(k.value, '$[0]'), json_extract(k.value, '$[2]'), json_extract(k.value, '$[3]'),"
        " json_extract(k.value, '$[4]'), json_extract(k.value, '$[5]'), json_extract(k.value, '$[6]'),"
        " json_extract(k.value, '$[7]'), json_extract(k.value, '$[8]'), json_extract(k.value, '$[9]'),"
        " json_extract(k.value, '$[10]')"
        " FROM json_each(:rows) AS k JOIN rule_builds b"
        " ON b.rule_id = json_extract(k.value, '$[0]') AND b.fingerprint = json_extract(k.value, '$[1]')"
        " WHERE true"
        " ON CONFLICT (rule_id, subject_id, window_start) DO UPDATE SET"
        " n = n + excluded.n, hits = hits + excluded.hits, part = part + excluded.part,"
        " total = decimal_add(total, excluded.total),"
        " first_at = coalesce(min(first_at, excluded.first_at), first_at, excluded.first_at),"
        " last_at = coalesce(max(last_at, excluded.last_at), last_at, excluded.last_at)"
        f" RETURNING {_COLUMNS}, {_alerted('rule_windows')}"
    ),
}
_UPSERT = {dialect: described(statement, *_WINDOW_ROW) for dialect, statement in _UPSERT_TEXT.items()}

_READ_TEXT = {
    "postgresql": text(
        f"SELECT {', '.join('w.' + c for c in _COLUMNS.split(', '))}, {_alerted('w')} FROM rule_windows w"
        " JOIN jsonb_to_recordset(CAST(:keys AS jsonb)) AS k(rule_id text, subject_id text, window_start timestamptz)"
        " ON w.rule_id = k.rule_id AND w.subject_id = k.subject_id AND w.window_start = k.window_start"
    ),
    "sqlite": text(
        f"SELECT {', '.join('w.' + c for c in _COLUMNS.split(', '))}, {_alerted('w')} FROM json_each(:keys) AS k"
        " JOIN rule_windows w ON w.rule_id = json_extract(k.value, '$[0]')"
        " AND w.subject_id = json_extract(k.value, '$[1]') AND w.window_start = json_extract(k.value, '$[2]')"
    ),
}
_READ = {dialect: described(statement, *_WINDOW_ROW) for dialect, statement in _READ_TEXT.items()}

_NEW_VALUES_TEXT = {
    "postgresql": text(
        "INSERT INTO rule_window_values (rule_id, subject_id, window_start, value_hash)"
        " SELECT k.rule_id, k.subject_id, k.window_start, k.value_hash FROM jsonb_to_recordset(CAST(:rows AS jsonb))"
        " AS k(rule_id text, subject_id text, window_start timestamptz, value_hash text) ORDER BY 1, 2, 3, 4"
        " ON CONFLICT DO NOTHING RETURNING rule_id, subject_id, window_start"
    ),
    "sqlite": text(
        "INSERT INTO rule_window_values (rule_id, subject_id, window_start, value_hash)"
        " SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'),"
        " json_extract(value, '$[3]') FROM json_each(:rows) WHERE true"
        " ON CONFLICT DO NOTHING RETURNING rule_id, subject_id, window_start"
    ),
}
_NEW_VALUES = {
    dialect: described(statement, "rule_id", "subject_id", "window_start")
    for dialect, statement in _NEW_VALUES_TEXT.items()
}


def _json_rows(rows: Iterable[Mapping[str, Any]]) -> str:
    """Rows for PostgreSQL's ``jsonb_to_recordset``: one text parameter, where a dozen arrays (one per
    column) cost the driver more than the statement itself for the few keys an event touches."""
    return json.dumps(list(rows), ensure_ascii=False)


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


def _time(at: datetime | None) -> str | None:
    return None if at is None else sql.sqlite_time(at)


def _utc(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)  # type: ignore[no-any-return]


def _rows(
    result: Iterable[Any], rules: Mapping[str, AnyRule], alerted: set[Key] | None = None
) -> dict[Key, sql.Aggregate]:
    """Figures by key from rows of ``_COLUMNS``; with ``alerted``, the rows also say whether their key has an
    alert, and those keys are added to it."""
    found: dict[Key, sql.Aggregate] = {}
    for row in result:
        rule_id, subject, start, n, hits, part, total, first_at, last_at = row[:9]
        rule = rules.get(rule_id)
        exact = None if total is None else Decimal(str(total))
        value = float(exact or 0) if isinstance(rule, SumRule) else float(part)
        at = _utc(start)
        assert at is not None
        found[(rule_id, subject, at)] = sql.Aggregate(int(n), int(hits), value, _utc(first_at), _utc(last_at), exact)
        if alerted is not None and row[9]:
            alerted.add((rule_id, subject, at))
    return found


def add(
    connection: Connection,
    rules: Mapping[str, AnyRule],
    deltas: Mapping[Key, Delta],
    fingerprints: Mapping[str, str],
    alerted: set[Key] | None = None,
) -> dict[Key, sql.Aggregate]:
    """Add the deltas to their rows (created when absent); the rows' new figures (and, into ``alerted``, the
    keys that have an alert).

    The keys must be locked. A rule whose stored fingerprint is not ``fingerprints[rule]`` gets nothing
    written and raises :class:`StaleAggregates` (the caller's transaction must then roll back)."""
    if not deltas:
        return {}
    dialect = connection.dialect.name
    ordered = sorted(deltas.items(), key=lambda item: item[0])
    new_values = _insert_values(connection, ordered)
    for key, count in new_values.items():
        deltas[key].part += count
    if dialect == "postgresql":
        # The rows travel as one JSON document (see _json_rows); sums as decimal text, exact.
        parameters: dict[str, Any] = {
            "rows": _json_rows(
                {
                    "rule_id": k[0],
                    "fingerprint": fingerprints[k[0]],
                    "subject_id": k[1],
                    "window_start": k[2].isoformat(),
                    "window_end": d.window_end.isoformat(),
                    "n": d.n,
                    "hits": d.hits,
                    "part": d.part,
                    "total": None if d.total is None else str(d.total),
                    "first_at": _iso(d.first_at),
                    "last_at": _iso(d.last_at),
                }
                for k, d in ordered
            )
        }
    else:
        rows = [
            [
                k[0],
                fingerprints[k[0]],
                k[1],
                sql.sqlite_time(k[2]),
                sql.sqlite_time(d.window_end),
                d.n,
                d.hits,
                d.part,
                None if d.total is None else str(d.total),
                _time(d.first_at),
                _time(d.last_at),
            ]
            for k, d in ordered
        ]
        parameters = {"rows": json.dumps(rows, ensure_ascii=False)}
    result = (
        driver_rows(connection, _UPSERT[dialect], parameters)
        if dialect == "postgresql"
        else connection.execute(_UPSERT[dialect], parameters)
    )
    found = _rows(result, rules, set() if alerted is None else alerted)
    stale = {key[0] for key in deltas if key not in found}
    if stale:
        raise StaleAggregates(stale)
    return found


def _insert_values(connection: Connection, ordered: Sequence[tuple[Key, Delta]]) -> dict[Key, int]:
    """Insert the distinct values not met before; how many were new per key."""
    listed = [(key, h) for key, delta in ordered for h in sorted(delta.values)]
    if not listed:
        return {}
    dialect = connection.dialect.name
    if dialect == "postgresql":
        parameters: dict[str, Any] = {
            "rows": _json_rows(
                {"rule_id": k[0], "subject_id": k[1], "window_start": k[2].isoformat(), "value_hash": h}
                for k, h in listed
            )
        }
    else:
        rows = [[k[0], k[1], sql.sqlite_time(k[2]), h] for k, h in listed]
        parameters = {"rows": json.dumps(rows, ensure_ascii=False)}
    new: dict[Key, int] = {}
    for rule_id, subject, start in connection.execute(_NEW_VALUES[dialect], parameters):
        at = _utc(start)
        assert at is not None
        key = (rule_id, subject, at)
        new[key] = new.get(key, 0) + 1
    return new


def read(
    connection: Connection, rules: Mapping[str, AnyRule], keys: Iterable[Key], alerted: set[Key] | None = None
) -> dict[Key, sql.Aggregate]:
    """The stored figures of the given keys (absent: no considered event there); into ``alerted``, those of
    them that have an alert."""
    listed = sorted(set(keys))
    if not listed:
        return {}
    dialect = connection.dialect.name
    if dialect == "postgresql":
        parameters: dict[str, Any] = {
            "keys": _json_rows({"rule_id": k[0], "subject_id": k[1], "window_start": k[2].isoformat()} for k in listed)
        }
    else:
        rows = [[k[0], k[1], sql.sqlite_time(k[2])] for k in listed]
        parameters = {"keys": json.dumps(rows, ensure_ascii=False)}
    return _rows(connection.execute(_READ[dialect], parameters), rules, set() if alerted is None else alerted)


def store(
    connection: Connection, rule: AnyRule, found: Mapping[sql.Key, sql.Aggregate], ends: Mapping[datetime, datetime]
) -> None:
    """Write measured figures as the rule's rows, absolute values replacing what the rows held."""
    table = WINDOWS
    insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
    statement = insert(table)
    statement = statement.on_conflict_do_update(
        index_elements=["rule_id", "subject_id", "window_start"],
        set_={
            name: statement.excluded[name]
            for name in ("window_end", "n", "hits", "part", "total", "first_at", "last_at")
        },
    )
    rows = [
        {
            "rule_id": rule.id,
            "subject_id": subject,
            "window_start": start,
            "window_end": ends[start],
            "n": figures.n,
            "hits": figures.hits,
            "part": 0 if isinstance(rule, SumRule) else int(figures.part),
            "total": figures.total,
            "first_at": figures.first_at,
            "last_at": figures.last_at,
        }
        for (subject, start), figures in sorted(found.items())
    ]
    for i in range(0, len(rows), _INSERT_CHUNK):
        connection.execute(statement, rows[i : i + _INSERT_CHUNK])


def remove(connection: Connection, rule_id: str, keys: Iterable[sql.Key]) -> None:
    """Delete the rows (and distinct values) of keys that hold no considered event."""
    for table in (WINDOWS, VALUES):
        for subject, start in keys:
            connection.execute(
                delete(table).where(
                    table.c.rule_id == rule_id, table.c.subject_id == subject, table.c.window_start == start
                )
            )


# --- building from the events ------------------------------------------------------------------------------------


def _field_reader(rule: DistinctRule) -> tuple[Any, Callable[[Any], Any]]:
    """The column a rule's field is read from, and how to get the field's value from that column's value."""
    path = rule.field
    if not path.startswith(ATTRIBUTES_PREFIX):
        return sql.COLUMNS[path], lambda value: value
    name = path[len(ATTRIBUTES_PREFIX) :]
    return sql.E.attributes, lambda attributes: attributes.get(name) if isinstance(attributes, dict) else None


def distinct_values(
    connection: Connection, rule: DistinctRule, zone: tzinfo, keys: Iterable[sql.Key] | None = None
) -> dict[sql.Key, set[str]]:
    """The distinct values' hashes of every (subject, window) of the rule (or of the given keys only)."""
    column, value_of = _field_reader(rule)
    dialect = connection.dialect.name
    subject = sql.subject_sql(rule.group_by)
    grid = WindowGrid(rule.window, zone)
    statement = select(subject, sql.E.occurred_at, column).where(sql.considered_sql(rule, dialect))
    if keys is not None:
        wanted = sorted(set(keys))
        if not wanted:
            return {}
        statements = [
            statement.where(
                sql.subject_is(rule.group_by, literal(who, String)),
                sql.E.occurred_at >= start,
                sql.E.occurred_at < grid.window(start).end,
            )
            for who, start in wanted
        ]
    else:
        statements = [statement]
    found: dict[sql.Key, set[str]] = {}
    for each in statements:
        for who, at, raw in connection.execute(each):
            value = value_of(raw)
            if value is None:
                continue
            when = _utc(at)
            assert when is not None
            found.setdefault((who, grid.window(when).start), set()).add(value_hash(value))
    return found


def store_values(connection: Connection, rule_id: str, values: Mapping[sql.Key, set[str]]) -> None:
    rows = [
        {"rule_id": rule_id, "subject_id": who, "window_start": start, "value_hash": h}
        for (who, start), hashes in sorted(values.items())
        for h in sorted(hashes)
    ]
    for i in range(0, len(rows), _INSERT_CHUNK):
        connection.execute(VALUES.insert(), rows[i : i + _INSERT_CHUNK])


def measure_all(
    connection: Connection, rule: AnyRule, zone: tzinfo, start: datetime, end: datetime
) -> tuple[dict[sql.Key, sql.Aggregate], dict[datetime, datetime]]:
    """The rule's figures over every window of [start, end) holding events, and the windows' ends by start."""
    windows = list(windows_between(start, end, rule.window, zone))
    return sql.measure_windows(connection, rule, zone, windows), {w.start: w.end for w in windows}


_UNLIST = {
    "postgresql": text("UPDATE alerts SET evidence = evidence - 'listed_until' WHERE rule_id = :rule"),
    "sqlite": text("UPDATE alerts SET evidence = json_remove(evidence, '$.listed_until') WHERE rule_id = :rule"),
}


def build(db: Database, rule: AnyRule, zone: tzinfo, *, force: bool = False) -> RuleBuild | None:
    """Replace the rule's rows from the stored events, unless they follow its definition already (``force``:
    always). Answers the build's record, or None when there was nothing to do."""
    wanted = fingerprint(rule, zone)
    started = time.perf_counter()
    with db.session(write=True) as session:
        connection = session.connection()
        if connection.dialect.name == "postgresql":
            connection.execute(_LOCK_RULE, {"key": rule_lock_id(rule.id)})
        record = session.get(RuleBuild, rule.id)
        if record is not None and record.fingerprint == wanted and not force:
            return None
        for table in (WINDOWS, VALUES):
            connection.execute(delete(table).where(table.c.rule_id == rule.id))
        if record is not None and record.fingerprint != wanted:
            # The rule's alerts listed the events its previous definition counted: they are listed again
            # when next evaluated (inline or by a scan).
            connection.execute(_UNLIST[connection.dialect.name], {"rule": rule.id})
        first, last = connection.execute(select(func.min(Event.occurred_at), func.max(Event.occurred_at))).one()
        found: dict[sql.Key, sql.Aggregate] = {}
        if first is not None:
            found, ends = measure_all(connection, rule, zone, first, last + _TICK)
            if isinstance(rule, DistinctRule):
                values = distinct_values(connection, rule, zone)
                store_values(connection, rule.id, values)
                found = {key: replace(figures, part=float(len(values.get(key, ())))) for key, figures in found.items()}
            store(connection, rule, found, ends)
        if record is None:
            record = RuleBuild(rule_id=rule.id)
            session.add(record)
        record.fingerprint = wanted
        record.built_at = utcnow()
        record.windows = len(found)
        record.duration_ms = int((time.perf_counter() - started) * 1000)
        session.flush()
        session.expunge(record)
    log.info("aggregates of %s built: %s windows in %s ms", rule.id, record.windows, record.duration_ms)
    return record


def ensure_built(db: Database, rules: Iterable[AnyRule], zone: tzinfo) -> list[RuleBuild]:
    """Build the rows of every rule whose rows follow another definition (or none); drop those of rules no
    longer in ``rules``. Answers the builds made."""
    listed = list(rules)
    with db.session() as session:
        recorded = {
            row.rule_id: row.fingerprint for row in session.execute(select(RuleBuild.rule_id, RuleBuild.fingerprint))
        }
    builds = [
        made
        for rule in listed
        if recorded.get(rule.id) != fingerprint(rule, zone) and (made := build(db, rule, zone)) is not None
    ]
    gone = set(recorded) - {rule.id for rule in listed}
    if gone:
        with db.session(write=True) as session:
            for table in (BUILDS, WINDOWS, VALUES):
                session.execute(delete(table).where(table.c.rule_id.in_(sorted(gone))))
    return builds


# --- reconciliation (scans) --------------------------------------------------------------------------------------


def stored(connection: Connection, rule: AnyRule, first: datetime, last: datetime) -> dict[sql.Key, sql.Aggregate]:
    """The rule's rows of the windows starting in [first, last]."""
    statement = text(
        f"SELECT {_COLUMNS} FROM rule_windows"
        " WHERE rule_id = :rule AND window_start >= :first AND window_start <= :last"
    ).bindparams(bindparam("first", type_=UTCDateTime), bindparam("last", type_=UTCDateTime))
    found = _rows(connection.execute(statement, {"rule": rule.id, "first": first, "last": last}), {rule.id: rule})
    return {(subject, start): figures for (_, subject, start), figures in found.items()}


def repair(connection: Connection, rule: AnyRule, zone: tzinfo, keys: Mapping[sql.Key, Window]) -> int:
    """Measure the given keys again under their locks and rewrite the rows that differ; how many did."""
    if not keys:
        return 0
    lock(connection, [rule.id], ((rule.id, subject, start) for subject, start in keys))
    measured = sql.measure_many(connection, zone, {rule: [(subject, window) for (subject, _), window in keys.items()]})[
        rule.id
    ]
    values: dict[sql.Key, set[str]] = {}
    if isinstance(rule, DistinctRule):
        values = distinct_values(connection, rule, zone, keys)
        measured = {key: replace(figures, part=float(len(values.get(key, ())))) for key, figures in measured.items()}
    current = {
        (subject, start): figures
        for (_, subject, start), figures in read(
            connection, {rule.id: rule}, ((rule.id, subject, start) for subject, start in keys)
        ).items()
    }
    differ = [
        key
        for key in keys
        if (key in measured) != (key in current) or (key in measured and not same_figures(measured[key], current[key]))
    ]
    if not differ:
        return 0
    remove(connection, rule.id, differ)
    if values:
        store_values(connection, rule.id, {key: values[key] for key in differ if key in values})
    store(
        connection,
        rule,
        {key: measured[key] for key in differ if key in measured},
        {start: w.end for (_, start), w in keys.items()},
    )
    return len(differ)


def same_figures(a: sql.Aggregate, b: sql.Aggregate) -> bool:
    return (
        a.n == b.n
        and a.hits == b.hits
        and sql.same_value(a.part, b.part)
        and a.first_at == b.first_at
        and a.last_at == b.last_at
    )
