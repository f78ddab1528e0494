"""The reference evaluation of a rule over a collection of events (the contract's Rules section).

This is the one definition of what a rule measures. Backtests use it directly; the inline engine and
scans are checked against it (a property test compares them), and so are the shipped rules against the
demo month. Pure: no I/O, no clock.

Events are mappings in the contract's JSON shape (the ``POST /v1/events`` body) plus ``id`` (the stored id,
int or str, used as evidence) and ``source``. ``occurred_at`` may be an aware datetime or RFC 3339 text;
a time without an offset is refused (ValueError), as the API refuses it.

How a rule is evaluated:

* A rule *considers* an event when the event's ``domain`` is one of the rule's ``domains`` and the rule's
  ``filter`` matches it.
* The event counts for the subject :func:`subject_of` names under the rule's ``group_by``; an event
  without that subject is not counted at all.
* Considered events are bucketed by (subject, window), the window being the tumbling window of
  ``occurred_at`` (:func:`app.rules.windows.window_of`) in the given zone. A late event therefore counts
  in the window where it happened, whatever order the events come in.
* A (subject, window) is *evaluated* when it holds at least one considered event and, for ``ratio`` and
  ``spike``, at least ``min_events`` of them. Its value, and the events that *count* toward it (its
  ``hits`` and evidence), by type:

  ========== ================================================================ ==========================================
  type       value                                                            events that count (``hits``)
  ========== ================================================================ ==========================================
  count      number of considered events                                      all considered events
  ratio      numerator / considered events, in [0, 1]                         all considered events (the denominator)
  distinct   number of distinct non-null values of ``field``                  events with a non-null ``field``
  sum        exact sum (``math.fsum``) of numeric ``field`` values            events whose ``field`` is a finite number
  off_hours  number of considered events outside ``allowed_hours`` (local)    the off-hours events
  spike      count here / mean count of the ``baseline_windows`` windows      all considered events of this window
             before (a zero mean counts as 1)
  ========== ================================================================ ==========================================

  For ``sum`` a number is an int or a finite float, never a bool; an event whose ``field`` is absent,
  null, text or anything else contributes nothing and is not a hit. For ``distinct`` values are told
  apart by their JSON kind and content (``1`` and ``1.0`` are one value; ``1``, ``true`` and ``"1"`` are
  three; lists and mappings compare by their canonical JSON text).

* A :class:`Finding` is an evaluated (subject, window) whose value is ≥ ``warn_at`` and that has at least
  one hit (an alert always has evidence; this only matters for a rule with ``warn_at: 0``). It is
  ``tripped`` when the rule has a ``trip_at`` and the value is ≥ it.

Results do not depend on the order of the input events: values are computed from multisets (``fsum`` is
exactly rounded), and evidence is ordered by (``occurred_at``, ``id``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any

from app.rules.filters import getter
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
from app.rules.windows import Window, WindowGrid, previous

__all__ = [
    "Event",
    "EventId",
    "Finding",
    "distinct_form",
    "evaluate",
    "is_number",
    "measure",
    "occurred_at",
    "subject_of",
    "subjects",
    "values",
]

Event = Mapping[str, Any]
EventId = int | str


@dataclass(frozen=True, slots=True)
class Finding:
    """A rule's measurement of one subject in one window that reached ``warn_at`` (an alert to raise or update)."""

    rule_id: str
    subject_type: str  # the rule's group_by
    subject_id: str
    window_start: datetime  # aware, UTC
    window_end: datetime  # aware, UTC
    value: float
    hits: int  # the number of events that counted toward the value (see the module docstring)
    tripped: bool  # the rule has a trip_at and value >= trip_at
    event_ids: tuple[EventId, ...]  # the ids of the events that counted, in (occurred_at, id) order
    first_event_at: datetime  # occurred_at of the first event that counted, aware UTC
    last_event_at: datetime  # occurred_at of the last event that counted, aware UTC


# --- reading events ----------------------------------------------------------------------------------------------


def occurred_at(event: Event) -> datetime:
    """The event's ``occurred_at`` as an aware UTC datetime; ValueError when it is missing, malformed or naive."""
    raw = event.get("occurred_at")
    if isinstance(raw, str):
        try:
            at = datetime.fromisoformat(raw)
        except ValueError:
            raise ValueError(f"occurred_at {raw!r} is not an RFC 3339 time") from None
    elif isinstance(raw, datetime):
        at = raw
    else:
        raise ValueError(f"occurred_at must be an RFC 3339 time or an aware datetime, got {raw!r}")
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"occurred_at {raw!s} has no UTC offset")
    return at.astimezone(UTC)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _operator(event: Event) -> Mapping[str, Any] | None:
    operator = event.get("operator")
    return operator if isinstance(operator, Mapping) else None


def _by_operator(event: Event) -> str | None:
    operator = _operator(event)
    return None if operator is None else _text(operator.get("id"))


def _by_responsible_officer(event: Event) -> str | None:
    operator = _operator(event)
    if operator is None:
        return None
    kind = operator.get("kind")
    if kind == "police":
        return _text(operator.get("id"))
    if kind in ("auxiliary", "staff"):
        return _text(operator.get("responsible_officer"))
    return None


def _by_business_unit(event: Event) -> str | None:
    unit = event.get("business_unit")
    return _text(unit.get("id")) if isinstance(unit, Mapping) else None


def _by_agent(event: Event) -> str | None:
    return _text(event.get("agent_id"))


def _by_org_unit(event: Event) -> str | None:
    operator = _operator(event)
    return None if operator is None else _text(operator.get("unit"))


_SUBJECT_OF: dict[GroupBy, Callable[[Event], str | None]] = {
    GroupBy.OPERATOR: _by_operator,
    GroupBy.RESPONSIBLE_OFFICER: _by_responsible_officer,
    GroupBy.BUSINESS_UNIT: _by_business_unit,
    GroupBy.AGENT: _by_agent,
    GroupBy.ORG_UNIT: _by_org_unit,
}


def subject_of(group_by: GroupBy, event: Event) -> str | None:
    """The subject id ``event`` counts for when grouping by ``group_by``; None when it has none.

    operator: ``operator.id``; responsible_officer: a police officer's own id, an auxiliary's
    ``responsible_officer``, a staff member's ``responsible_officer`` if they name one; business_unit:
    ``business_unit.id``; agent: ``agent_id``; org_unit: ``operator.unit``. Empty text counts as absent.
    """
    return _SUBJECT_OF[group_by](event)


def subjects(rule: AnyRule, event: Event) -> str | None:
    """The subject id ``event`` counts for under ``rule.group_by`` (None: the rule does not count it)."""
    return _SUBJECT_OF[rule.group_by](event)


# --- evaluation --------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Item:
    at: datetime
    event: Event

    @property
    def id(self) -> Any:
        return self.event.get("id")


def _id_key(event_id: Any) -> tuple[int, Any]:
    # Ids are ints (stored ids) or text; order them without ever comparing the two kinds.
    if isinstance(event_id, bool) or event_id is None:
        return (0, str(event_id))
    if isinstance(event_id, int):
        return (1, event_id)
    return (2, str(event_id))


def _evidence_key(item: _Item) -> tuple[datetime, tuple[int, Any]]:
    return (item.at, _id_key(item.id))


def distinct_form(value: Any) -> Any:
    """A hashable normal form telling values apart by JSON kind and content."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int | float):
        if isinstance(value, float) and math.isnan(value):
            return ("number", "nan")
        return ("number", value)  # 1 == 1.0 and they hash alike: one JSON number
    if isinstance(value, str):
        return ("text", value)
    return ("json", json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str))


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


# One evaluated (subject, window): the value, and the items that counted toward it (unordered).
_Evaluation = tuple[str, Window, float, list[_Item]]


_Buckets = dict[tuple[str, datetime], list[_Item]]


def _buckets(rule: AnyRule, events: Iterable[Event], zone: tzinfo) -> tuple[_Buckets, dict[datetime, Window]]:
    """The considered events bucketed by (subject, window start), and the windows by start; one pass."""
    domains = frozenset(str(domain.value) for domain in rule.domains)
    matches = rule.filter.matches
    subject = _SUBJECT_OF[rule.group_by]
    length = rule.window
    grid = WindowGrid(length, zone)
    buckets: _Buckets = {}
    for event in events:
        if event.get("domain") not in domains or not matches(event):
            continue
        who = subject(event)
        if who is None:
            continue
        at = occurred_at(event)
        window = grid.window(at)
        key = (who, window.start)
        bucket = buckets.get(key)
        if bucket is None:
            buckets[key] = [_Item(at, event)]
        else:
            bucket.append(_Item(at, event))
    return buckets, grid.by_start


def _evaluations(rule: AnyRule, events: Iterable[Event], zone: tzinfo) -> Iterator[_Evaluation]:
    buckets, windows = _buckets(rule, events, zone)
    if isinstance(rule, SpikeRule):
        yield from _spikes(rule, buckets, windows, zone)
        return
    for (who, start), items in buckets.items():
        window = windows[start]
        if isinstance(rule, CountRule):
            yield who, window, float(len(items)), items
        elif isinstance(rule, RatioRule):
            if len(items) >= rule.min_events:
                numerator = rule.numerator.matches
                hits = sum(1 for item in items if numerator(item.event))
                yield who, window, hits / len(items), items
        elif isinstance(rule, DistinctRule):
            read = getter(rule.field)
            counted = [(item, value) for item in items if (value := read(item.event)) is not None]
            yield who, window, float(len({distinct_form(value) for _, value in counted})), [i for i, _ in counted]
        elif isinstance(rule, SumRule):
            read = getter(rule.field)
            summed = [(item, value) for item in items if is_number(value := read(item.event))]
            yield who, window, math.fsum(value for _, value in summed), [i for i, _ in summed]
        elif isinstance(rule, OffHoursRule):
            hours = rule.allowed_hours
            off = [item for item in items if item.at.astimezone(zone).time() not in hours]
            yield who, window, float(len(off)), off
        else:  # pragma: no cover - every rule type is handled above
            raise TypeError(f"unknown rule type {type(rule).__name__}")


def _spikes(rule: SpikeRule, buckets: _Buckets, windows: dict[datetime, Window], zone: tzinfo) -> Iterator[_Evaluation]:
    baselines: dict[datetime, list[datetime]] = {}  # window start -> starts of the baseline windows
    for (who, start), items in buckets.items():
        count = len(items)
        if count < rule.min_events:
            continue
        window = windows[start]
        before = baselines.get(start)
        if before is None:
            before = baselines[start] = [w.start for w in previous(window, rule.baseline_windows, rule.window, zone)]
        total = sum(len(buckets.get((who, s), ())) for s in before)
        mean = total / rule.baseline_windows
        yield who, window, count / (mean if mean > 0 else 1.0), items


def values(rule: AnyRule, events: Iterable[Event], zone: tzinfo) -> dict[tuple[str, datetime], float]:
    """The value of every evaluated (subject, window start), whether or not it reaches ``warn_at``.

    What the inline engine and scans compare with to clear an alert whose value fell back.
    """
    return {(who, window.start): value for who, window, value, _ in _evaluations(rule, events, zone)}


def measure(rule: AnyRule, events: Iterable[Event], zone: tzinfo) -> list[Finding]:
    """Every evaluated (subject, window) with at least one hit, whatever its value: what an alert of that
    window shows, raised or cleared. By (window start, subject)."""
    findings: list[Finding] = []
    subject_type = str(rule.group_by.value)
    for who, window, value, counted in _evaluations(rule, events, zone):
        if not counted:
            continue
        counted.sort(key=_evidence_key)
        findings.append(
            Finding(
                rule_id=rule.id,
                subject_type=subject_type,
                subject_id=who,
                window_start=window.start,
                window_end=window.end,
                value=value,
                hits=len(counted),
                tripped=rule.trip_at is not None and value >= rule.trip_at,
                event_ids=tuple(item.id for item in counted),
                first_event_at=counted[0].at,
                last_event_at=counted[-1].at,
            )
        )
    findings.sort(key=lambda f: (f.window_start, f.subject_id))
    return findings


def evaluate(rule: AnyRule, events: Iterable[Event], zone: tzinfo) -> list[Finding]:
    """Every (subject, window) where ``rule`` reaches ``warn_at`` over ``events``, by (window start, subject)."""
    return [finding for finding in measure(rule, events, zone) if finding.value >= rule.warn_at]
