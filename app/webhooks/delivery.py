"""Sending deliveries: claimed per webhook, signed (Standard Webhooks), retried with backoff, in order.

Claim. A worker takes a *webhook*, not a delivery: in one short transaction it selects live webhooks that
have due pending deliveries and no unexpired lease, ``FOR NO KEY UPDATE SKIP LOCKED`` on PostgreSQL (so
several workers and hosts each take different webhooks, and ingest's foreign-key checks on the webhook
row are not blocked), and sets the webhook's lease (``lease_until``, ``lease_holder``). The HTTP calls
happen after that commit, outside any transaction; each result is written in its own short transaction,
which also extends the lease. On SQLite, writers are serialised (``BEGIN IMMEDIATE``), so the same lease
gives the same guarantee across processes; one process is the expected deployment there.

Sequence. When a worker claims a webhook it numbers the webhook's unnumbered pending deliveries from the
webhook's ``next_sequence`` counter, in id order. A delivery becomes visible only when its transaction
commits, and changes to one object are serialised by that object's row lock, so sequence order is the
order in which changes became visible, and for one object the order they happened. Numbering at claim
time (under the webhook's lease) rather than at outbox-write time keeps ingest transactions from queueing
on one counter row per webhook on PostgreSQL with several workers.

Order while retrying. Deliveries to one webhook go strictly in sequence order: only the lowest-numbered
pending delivery (the head) is attempted; while it is retrying, later ones wait (head-of-line). When it
succeeds, the ones behind it follow at once; when it is given up (``failed``, after ``webhook_retry_for``,
24 h by default) the next one goes. A receiver down for an hour thus gets everything, in order, when it is
back. A lease that expires while its holder is still sending (a worker stalled for longer than
the lease (2 × timeout + 10 s)) can let another worker send the same delivery too: delivery is at least once, receivers
dedupe on ``id``.

Backoff. After the n-th failed attempt the next is due after a random delay in [d/2, d] where
d = min(base · 2^(n-1), cap): with the defaults, within 5 s, 10 s, 20 s … up to 10 minutes.
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2 as httpx
from sqlalchemy import and_, bindparam, exists, func, or_, select, update
from sqlalchemy.orm import Session
from standardwebhooks import Webhook as Signer

from app.alerts.models import Alert
from app.breakers.models import Breaker
from app.config import Settings
from app.db import Database, UTCDateTime, utcnow
from app.webhooks import outbox
from app.webhooks.models import Webhook, WebhookDelivery

log = logging.getLogger("supervision.webhooks")

BATCH = 50  # deliveries one claim takes per webhook (sent one after another, in order)
CLAIM = 8  # webhooks one claim takes
PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"


@dataclass(frozen=True)
class Outgoing:
    id: int
    webhook_id: int
    url: str
    secret: str
    type: str
    sequence: int
    data: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class Result:
    item: Outgoing
    code: int | None
    error: str | None
    at: datetime


def backoff(attempts: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds to wait after the `attempts`-th failed attempt (full jitter over the upper half)."""
    ceiling = min(base * 2 ** max(attempts - 1, 0), cap)
    return (rng or random).uniform(ceiling / 2, ceiling)


def body_of(item: Outgoing) -> str:
    envelope = {
        "id": item.id,
        "type": item.type,
        "timestamp": item.created_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "sequence": item.sequence,
        "data": item.data,
    }
    return json.dumps(envelope, ensure_ascii=False, separators=(",", ":"))


def signed_headers(item: Outgoing, body: str, at: datetime) -> dict[str, str]:
    """Standard Webhooks headers; a retry keeps `webhook-id` and signs anew with its own timestamp."""
    msg_id = str(item.id)
    at = at.astimezone(UTC)
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Signer(item.secret).sign(msg_id, at, body),
        "user-agent": "supervision-webhooks",
    }


class Deliverer:
    """Claims and sends deliveries; `run_once`/`drain` for tests, `start`/`stop` for a server's worker thread."""

    def __init__(self, db: Database, settings: Settings, *, holder: str | None = None) -> None:
        self.db = db
        self.settings = settings
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.client = httpx.Client(
            timeout=httpx.Timeout(settings.webhook_timeout), follow_redirects=False, trust_env=False
        )
        # Longer than a timeout plus writing its result; a holder killed mid-send delays its webhook this long.
        self.lease = timedelta(seconds=2 * settings.webhook_timeout + 10)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._unsubscribe = outbox.on_wake(self._wake.set)

    # --- claiming ---------------------------------------------------------------------------------------------

    def claim(self, now: datetime | None = None) -> list[list[Outgoing]]:
        """Lease webhooks with due work and answer, per webhook, the run of deliveries to send now, in order."""
        now = now or utcnow()
        due = exists().where(
            WebhookDelivery.webhook_id == Webhook.id,
            WebhookDelivery.status == PENDING,
            WebhookDelivery.next_attempt_at <= now,
        )
        query = (
            select(Webhook)
            .where(Webhook.deleted_at.is_(None), or_(Webhook.lease_until.is_(None), Webhook.lease_until < now), due)
            .order_by(Webhook.lease_until.is_not(None), Webhook.id)
            .limit(CLAIM)
        )
        runs: list[list[Outgoing]] = []
        with self.db.session() as session:  # a read first: no write lock (SQLite) when there is nothing to do
            if not session.scalar(select(self._due_now(now))):
                return runs
        with self.db.session(write=True) as session:
            if self.db.dialect == "postgresql":
                query = query.with_for_update(skip_locked=True, key_share=True)
            for webhook in session.scalars(query.execution_options(populate_existing=True)).all():
                run = self._claim_webhook(session, webhook, now)
                if run:
                    webhook.lease_until, webhook.lease_holder = now + self.lease, self.holder
                    runs.append(run)
        return runs

    def _claim_webhook(self, session: Session, webhook: Webhook, now: datetime) -> list[Outgoing]:
        unnumbered = session.scalars(
            select(WebhookDelivery.id)
            .where(
                WebhookDelivery.webhook_id == webhook.id,
                WebhookDelivery.status == PENDING,
                WebhookDelivery.sequence.is_(None),
            )
            .order_by(WebhookDelivery.id)
        ).all()
        if unnumbered:
            first = webhook.next_sequence
            session.execute(
                update(WebhookDelivery),
                [{"id": d, "sequence": first + i} for i, d in enumerate(unnumbered)],
            )
            webhook.next_sequence = first + len(unnumbered)
        pending = session.scalars(
            select(WebhookDelivery)
            .where(WebhookDelivery.webhook_id == webhook.id, WebhookDelivery.status == PENDING)
            .order_by(WebhookDelivery.sequence)
            .limit(BATCH)
            .execution_options(populate_existing=True)
        ).all()
        run: list[Outgoing] = []
        for delivery in pending:
            if delivery.next_attempt_at > now:
                break  # the head (or the next one) is waiting for its retry: the rest wait behind it
            assert delivery.sequence is not None
            run.append(
                Outgoing(
                    delivery.id,
                    webhook.id,
                    webhook.url,
                    webhook.secret,
                    delivery.type,
                    delivery.sequence,
                    delivery.data,
                    delivery.created_at,
                )
            )
        return run

    # --- sending ------------------------------------------------------------------------------------------------

    def send(self, item: Outgoing) -> tuple[int | None, str | None]:
        """One attempt: (status code, error); success is a 2xx within the timeout."""
        body = body_of(item)
        limit = self.settings.webhook_timeout
        started = time.monotonic()
        try:
            response = self.client.post(item.url, content=body.encode(), headers=signed_headers(item, body, utcnow()))
        except httpx.TimeoutException:
            return None, f"no answer within {limit:g} s"
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}"[:500]
        if time.monotonic() - started > limit:  # httpx's timeout is per read: a trickle can outlast it
            return response.status_code, f"answered after more than {limit:g} s"
        if 200 <= response.status_code < 300:
            return response.status_code, None
        if 300 <= response.status_code < 400:
            return response.status_code, "redirects are not followed"
        return response.status_code, f"HTTP {response.status_code}"

    def _record(self, webhook_id: int, results: list[Result], *, release: bool) -> None:
        """Write attempts' results in one transaction, and extend or release the webhook's lease."""
        now = utcnow()
        with self.db.session(write=True) as session:
            # The webhook's row first, then its deliveries: the order of every writer (claim, delete).
            session.execute(
                update(Webhook)
                .where(Webhook.id == webhook_id, Webhook.lease_holder == self.holder)
                .values(
                    lease_until=None if release else now + self.lease,
                    lease_holder=None if release else self.holder,
                )
            )
            delivered = [r for r in results if r.error is None]
            if delivered:
                table = WebhookDelivery.__table__.c
                session.connection().execute(
                    update(WebhookDelivery.__table__)  # type: ignore[arg-type]
                    .where(table.id == bindparam("delivery_id"), table.status == PENDING)
                    .values(
                        status=DELIVERED,
                        attempts=table.attempts + 1,
                        first_attempt_at=func.coalesce(table.first_attempt_at, bindparam("at", type_=UTCDateTime())),
                        last_attempt_at=bindparam("at", type_=UTCDateTime()),
                        last_status_code=bindparam("code"),
                        last_error=None,
                        delivered_at=bindparam("at", type_=UTCDateTime()),
                    ),
                    [{"delivery_id": r.item.id, "at": r.at, "code": r.code} for r in delivered],
                )
            for result in results:
                if result.error is not None:
                    self._failed(session, result)

    def _failed(self, session: Session, result: Result) -> None:
        delivery = session.get(WebhookDelivery, result.item.id, with_for_update=True, populate_existing=True)
        if delivery is None or delivery.status != PENDING:
            return
        at = result.at
        delivery.attempts += 1
        delivery.first_attempt_at = delivery.first_attempt_at or at
        delivery.last_attempt_at, delivery.last_status_code, delivery.last_error = at, result.code, result.error
        if at - delivery.first_attempt_at >= timedelta(seconds=self.settings.webhook_retry_for):
            delivery.status = FAILED
        else:
            wait = backoff(delivery.attempts, self.settings.webhook_backoff_base, self.settings.webhook_backoff_cap)
            delivery.next_attempt_at = at + timedelta(seconds=wait)

    def deliver(self, run: list[Outgoing]) -> int:
        """Send one webhook's run in order, stopping at the first failure; how many were delivered.

        Results are written together when the run ends, or when a send fails, or every `webhook_timeout`
        seconds (which also extends the lease): a crash in between sends them again (at least once)."""
        delivered = 0
        results: list[Result] = []
        flushed = time.monotonic()
        for i, item in enumerate(run):
            code, error = self.send(item)
            results.append(Result(item, code, error, utcnow()))
            # Stopping (the server shuts down): the rest of the run stays pending for the next worker.
            last = i == len(run) - 1 or error is not None or self._stop.is_set()
            if error is not None:
                log.info(
                    "webhook delivery failed",
                    extra={"webhook_id": item.webhook_id, "delivery_id": item.id, "error": error},
                )
            else:
                delivered += 1
            if last or time.monotonic() - flushed >= self.settings.webhook_timeout:
                self._record(item.webhook_id, results, release=last)
                results, flushed = [], time.monotonic()
            if last:
                break
        return delivered

    def run_once(self, *, housekeeping: bool = True) -> int:
        """One pass: (housekeeping, then) claim and send what is due now; how many were delivered."""
        if housekeeping:
            self.housekeeping()
        runs = self.claim()
        if not runs:
            return 0
        if len(runs) == 1:
            return self.deliver(runs[0])
        # Webhooks in parallel (a slow receiver holds up only its own), each webhook's run in order.
        with ThreadPoolExecutor(max_workers=len(runs), thread_name_prefix="webhook") as pool:
            return sum(pool.map(self.deliver, runs))

    def drain(self, *, rounds: int = 100) -> int:
        """Pass until nothing is due now (tests call this instead of sleeping); how many were delivered."""
        total = 0
        for i in range(rounds):
            sent = self.run_once(housekeeping=i == 0)
            total += sent
            if sent == 0:
                with self.db.session() as session:
                    if not session.scalar(select(self._due_now(utcnow()))):
                        break
        return total

    @staticmethod
    def _due_now(now: datetime) -> Any:
        return exists().where(
            WebhookDelivery.status == PENDING,
            WebhookDelivery.next_attempt_at <= now,
            WebhookDelivery.webhook_id == Webhook.id,
            Webhook.deleted_at.is_(None),
            or_(Webhook.lease_until.is_(None), Webhook.lease_until < now),
        )

    # --- changes nobody commits: probation passing, supervision overdue -------------------------------------------

    def housekeeping(self) -> None:
        """Tell of changes that happen by the clock, when some webhook listens for them: breakers whose
        probation (or suspension) has run out are stored as closed (``breaker.closed``), and supervisions past
        due are flagged (``alert.overdue``, as a scan does)."""
        with self.db.session() as session:
            wanted = {event for sub in outbox.subscriptions(session) for event in sub.events}
        if "breaker.closed" in wanted:
            close_expired(self.db)
        if "alert.overdue" in wanted:
            from app.scans.service import flag_overdue  # scans import the alerts' evaluation

            with self.db.session(write=True) as session:
                flag_overdue(session, now=utcnow(), actor=f"webhooks {self.holder}"[:64])

    # --- the worker thread --------------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="webhook-deliveries", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 15) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._unsubscribe()
        self.client.close()

    def _loop(self) -> None:
        poll = self.settings.webhook_poll_interval
        next_housekeeping = 0.0
        while not self._stop.is_set():
            try:
                monotonic = time.monotonic()
                housekeeping = monotonic >= next_housekeeping
                if housekeeping:
                    next_housekeeping = monotonic + max(poll, 5.0)
                sent = self.run_once(housekeeping=housekeeping)
            except Exception:  # the database may be away for a while: try again at the next poll
                log.exception("webhook delivery pass failed")
                sent = 0
            if sent == 0:
                self._wake.wait(poll)
                self._wake.clear()


def close_expired(db: Database) -> list[int]:
    """Store as closed the breakers whose probation or suspension has run out, telling webhooks; their ids."""
    now = utcnow()
    expired = or_(
        and_(Breaker.state == "half_open", Breaker.probation_until <= now),
        and_(Breaker.state == "open", Breaker.suspended_until <= now),
    )
    with db.session(write=True) as session:
        query = select(Breaker).where(expired).order_by(Breaker.id).limit(500)
        if db.dialect == "postgresql":
            query = query.with_for_update(skip_locked=True)
        closed = []
        for breaker in session.scalars(query.execution_options(populate_existing=True)).all():
            breaker.state = "closed"
            breaker.version += 1
            unit = session.scalar(select(Alert.unit).where(Alert.id == breaker.alert_id))
            outbox.notify(session, "breaker.closed", "breaker", breaker.id, unit)
            closed.append(breaker.id)
        session.flush()
    return closed
