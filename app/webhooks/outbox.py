"""The outbox: changes are told to webhooks through rows written in the transaction of the change.

Services call :func:`notify` as they change an alert, a breaker or an exemption (next to their audit
entry); nothing is written then. Just before the transaction commits, the changes it noted are matched
against the webhooks and one ``webhook_deliveries`` row is inserted per (change, webhook), in the same
transaction: a change that rolls back tells nobody, a committed one is never lost (a crash after the
commit leaves its rows for the next worker). After the commit the worker of this process is woken.

Cost on the ingest path. Noting a change is a list append. Only a transaction that changed something
looks at the webhooks, and that list is cached per process (per database) for ``webhook_cache_ttl``
seconds (5 by default): with no webhook, a change costs no round trip beyond one read every 5 s; with
webhooks, the payloads of one transaction are read with one query per kind of object and one per kind
of history, and its rows go in one ``executemany`` INSERT. A webhook created or deleted in this process is seen at
once here; another process sees it within the TTL, so for up to 5 s a new webhook may miss changes
committed by other workers, and a deleted one may still get rows written (never sent: the worker skips
deleted webhooks). Org-unit subtrees of the webhooks' ``unit`` are cached with the list.

Sequence numbers are not assigned here but when a worker first claims a webhook's deliveries (see
:mod:`app.webhooks.delivery`), so ingest transactions never queue on a per-webhook counter row.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import Engine, event, exists, insert, select
from sqlalchemy.orm import Session

from app.db import after_commit, utcnow
from app.webhooks.models import Webhook, WebhookDelivery

OUTBOX = "supervision.webhooks.outbox"
DEFAULT_TTL = 5.0
_ttl = DEFAULT_TTL  # set from the settings by create_app


@dataclass(frozen=True)
class Change:
    type: str
    kind: str  # alert | breaker | exemption
    object_id: int
    unit: str | None  # the alert's unit (alerts and breakers); None for an exemption


@dataclass(frozen=True)
class Subscription:
    id: int
    events: frozenset[str]
    unit: str | None
    units: frozenset[str]  # the unit's subtree (empty when unit is None)


# Per connection pool (i.e. per database in this process): (read at monotonic time, webhooks).
_CACHE: WeakKeyDictionary[Any, tuple[float, list[Subscription]]] = WeakKeyDictionary()
_WAKERS: list[Callable[[], None]] = []
_WAKERS_LOCK = threading.Lock()


def _pool(session: Session) -> Any:
    bind = session.get_bind()
    return bind.pool if isinstance(bind, Engine) else bind.engine.pool


def notify(session: Session, type: str, kind: str, object_id: int, unit: str | None = None) -> None:
    """Note a change to tell webhooks of when this transaction commits (callers leave exempted alerts out)."""
    session.info.setdefault(OUTBOX, []).append(Change(type, kind, object_id, unit))


def set_ttl(seconds: float) -> None:
    global _ttl
    _ttl = seconds


def forget_webhooks(session: Session | None = None) -> None:
    """Read the webhooks again at next use (through this session's database; None: every database)."""
    if session is None:
        _CACHE.clear()
    else:
        _CACHE.pop(_pool(session), None)


def on_wake(callback: Callable[[], None]) -> Callable[[], None]:
    """Call `callback` after every commit that wrote deliveries in this process; answers an unsubscribe."""
    with _WAKERS_LOCK:
        _WAKERS.append(callback)

    def remove() -> None:
        with _WAKERS_LOCK:
            if callback in _WAKERS:
                _WAKERS.remove(callback)

    return remove


def wake() -> None:
    with _WAKERS_LOCK:
        callbacks = list(_WAKERS)
    for callback in callbacks:
        callback()


def subscriptions(session: Session, ttl: float | None = None) -> list[Subscription]:
    """The live webhooks, as cached by this process (read again after `ttl` seconds)."""
    ttl = _ttl if ttl is None else ttl
    pool = _pool(session)
    found = _CACHE.get(pool)
    now = time.monotonic()
    if found is not None and now - found[0] < ttl:
        return found[1]
    from app.units.service import subtree  # units imports audit, which services import early

    rows = session.execute(select(Webhook.id, Webhook.events, Webhook.unit).where(Webhook.deleted_at.is_(None)))
    listed = []
    trees: dict[str, frozenset[str]] = {}
    for webhook_id, events, unit in rows.all():
        if unit is not None and unit not in trees:
            trees[unit] = frozenset(session.scalars(subtree(unit)))
        units = trees[unit] if unit is not None else frozenset()
        listed.append(Subscription(webhook_id, frozenset(events.strip(",").split(",")), unit, units))
    _CACHE[pool] = (now, listed)
    return listed


def _exemption_in(session: Session, exemption_id: int, units: frozenset[str]) -> bool:
    """Whether the exemption's subject has events in these units."""
    from app.events.models import Event
    from app.exemptions.models import Exemption
    from app.exemptions.service import subject_events

    row = session.get(Exemption, exemption_id)
    if row is None:
        return False
    conditions = subject_events(row.subject_type, row.subject_id)
    return bool(session.scalar(select(exists().where(*conditions, Event.operator_unit.in_(sorted(units))))))


def _matches(session: Session, webhook: Subscription, change: Change, cache: dict[tuple[int, str], bool]) -> bool:
    if change.type not in webhook.events:
        return False
    if webhook.unit is None:
        return True
    if change.kind == "exemption":
        key = (change.object_id, webhook.unit)
        if key not in cache:
            cache[key] = _exemption_in(session, change.object_id, webhook.units)
        return cache[key]
    return change.unit is not None and change.unit in webhook.units


def write(session: Session, changes: list[Change], *, ttl: float | None = None, now: datetime | None = None) -> int:
    """Insert the deliveries of these changes (deduplicated, in order) for the webhooks they match; how many."""
    webhooks = subscriptions(session, ttl)
    if not webhooks:
        return 0
    from app.webhooks.payloads import snapshots  # the payloads use the routers' mappers

    now = now or utcnow()
    matched: list[tuple[Change, list[int]]] = []
    seen: set[Change] = set()
    unit_cache: dict[tuple[int, str], bool] = {}
    for change in changes:
        if change in seen:
            continue
        seen.add(change)
        webhook_ids = [w.id for w in webhooks if _matches(session, w, change, unit_cache)]
        if webhook_ids:
            matched.append((change, webhook_ids))
    if not matched:
        return 0
    data = snapshots(session, {(change.kind, change.object_id) for change, _ in matched}, now)
    rows = [
        {
            "webhook_id": webhook_id,
            "type": change.type,
            "data": data[change.kind, change.object_id],
            "created_at": now,
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": now,
        }
        for change, webhook_ids in matched
        if (change.kind, change.object_id) in data
        for webhook_id in webhook_ids
    ]
    if rows:
        session.execute(insert(WebhookDelivery), rows)
        after_commit(session, wake)
    return len(rows)


@event.listens_for(Session, "before_commit")
def _before_commit(session: Session) -> None:
    changes = session.info.pop(OUTBOX, None)
    if changes:
        write(session, changes)


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop(OUTBOX, None)
