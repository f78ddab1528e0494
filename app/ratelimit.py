"""Rate limits with the `limits` library: per API key on ingestion, per client address on failed keys.

- Ingestion (`POST /v1/events`, `POST /v1/events/batch`) counts, per key, its requests and its events
  (a batch counts each of its events) against `SUPERVISION_RATE_LIMIT_REQUESTS` and
  `SUPERVISION_RATE_LIMIT_EVENTS`. Several windows give a rate with a burst: `20000/second;600000/minute`
  lets 20,000 events through in one second, and 10,000 a second on average over a minute.
- Failed authentication (an unknown or revoked key) counts per client address against
  `SUPERVISION_RATE_LIMIT_AUTH_FAILURES`; once an address is over, every request with a key from it is
  refused until its window passes, so guessing learns nothing more (a right guess is refused too).

Refused requests answer 429 with `Retry-After` (seconds until the window that refused them ends), and
count in their windows like any other. Windows are fixed (limits' "fixed window" strategy, each
starting at its first hit): the one strategy every storage here supports.

Where the counts live, so that all workers of a deployment share them:

- `SUPERVISION_REDIS_URL` set: Redis (limits' own storage), shared by every worker of every host.
- otherwise, under `supervision serve --workers N` (N > 1): a SQLite file in a folder `serve` makes
  and removes, named to its workers by `SUPERVISION_RATE_LIMIT_FILE`. `limits` has no storage that the
  processes of one host share without a server (its memory storage is per process), so
  :class:`SQLiteFileStorage` gives it one: a `limits` storage (the library keeps the strategy and the
  arithmetic of windows) whose counters are rows of a small SQLite table, one atomic upsert per hit.
- otherwise (one process): limits' memory storage.

If the storage fails (Redis down), requests are let through and a warning is logged: a limiter must
not take the service down with it.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from limits import RateLimitItem, parse_many
from limits.errors import StorageError
from limits.storage import MemoryStorage, RedisStorage, Storage
from limits.strategies import FixedWindowRateLimiter

from app.config import Settings
from app.errors import TooManyRequests

log = logging.getLogger("supervision.ratelimit")


class SQLiteFileStorage(Storage):
    """A `limits` storage (fixed windows) in a SQLite file that the processes of one host share."""

    STORAGE_SCHEME = ["supervision+sqlite"]

    _UPSERT = (
        "INSERT INTO counters (key, count, expires) VALUES (:key, :amount, :now + :expiry)"
        " ON CONFLICT (key) DO UPDATE SET"
        " count = CASE WHEN expires <= :now THEN :amount ELSE count + :amount END,"
        " expires = CASE WHEN expires <= :now THEN :now + :expiry ELSE expires END"
        " RETURNING count"
    )
    _PURGE_EVERY = 1000  # hits between deletions of expired counters

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options: Any) -> None:
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        self.path = Path((uri or "").removeprefix("supervision+sqlite:///"))
        self._local = threading.local()
        self._hits = 0
        with self._connection() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS counters (key TEXT PRIMARY KEY, count INTEGER, expires REAL)")

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return sqlite3.Error

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            # Autocommit; each statement is atomic. The counters are disposable: no fsync.
            conn = sqlite3.connect(self.path, timeout=5, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=OFF")
            self._local.conn = conn
        return conn

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        conn = self._connection()
        now = time.time()
        (count,) = conn.execute(self._UPSERT, {"key": key, "amount": amount, "now": now, "expiry": expiry}).fetchone()
        self._hits += 1
        if self._hits % self._PURGE_EVERY == 0:
            conn.execute("DELETE FROM counters WHERE expires <= ?", (now,))
        return int(count)

    def get(self, key: str) -> int:
        row = (
            self._connection()
            .execute("SELECT count FROM counters WHERE key = ? AND expires > ?", (key, time.time()))
            .fetchone()
        )
        return int(row[0]) if row else 0

    def get_expiry(self, key: str) -> float:
        row = self._connection().execute("SELECT expires FROM counters WHERE key = ?", (key,)).fetchone()
        return float(row[0]) if row else time.time()

    def check(self) -> bool:
        self._connection().execute("SELECT 1")
        return True

    def reset(self) -> int | None:
        return int(self._connection().execute("DELETE FROM counters").rowcount)

    def clear(self, key: str) -> None:
        self._connection().execute("DELETE FROM counters WHERE key = ?", (key,))


def make_storage(settings: Settings) -> Storage:
    if settings.redis_url is not None:
        return RedisStorage(
            settings.redis_url.get_secret_value(),
            key_prefix=settings.rate_limit_prefix,
            wrap_exceptions=True,
            socket_timeout=1,
            socket_connect_timeout=1,
        )
    if settings.rate_limit_file is not None:
        return SQLiteFileStorage(f"supervision+sqlite:///{settings.rate_limit_file}", wrap_exceptions=True)
    return MemoryStorage(wrap_exceptions=True)


class RateLimits:
    """The service's limits; a no-op when `SUPERVISION_RATE_LIMIT_ENABLED` is false."""

    def __init__(self, settings: Settings) -> None:
        self.enabled = settings.rate_limit_enabled
        self.events: list[RateLimitItem] = parse_many(settings.rate_limit_events)
        self.requests: list[RateLimitItem] = parse_many(settings.rate_limit_requests)
        self.auth_failures: list[RateLimitItem] = parse_many(settings.rate_limit_auth_failures)
        self.storage = make_storage(settings) if self.enabled else None
        self.limiter = FixedWindowRateLimiter(self.storage) if self.storage is not None else None

    def ingest(self, *, key_id: int, events: int) -> None:
        """Count one ingest request of `events` events by the key; 429 when a window of either is full."""
        if self.limiter is None:
            return
        identity = f"key:{key_id}"
        self._hit([(item, "requests", 1) for item in self.requests], identity, "requests")
        if events:
            self._hit([(item, "events", events) for item in self.events], identity, "events")

    def before_authentication(self, address: str) -> None:
        """429 while the address is over its failed-authentication limit."""
        if self.limiter is None:
            return
        limiter = self.limiter
        for item in self.auth_failures:
            try:
                allowed = limiter.test(item, "auth-failures", address)
            except StorageError as exc:
                self._storage_failed(exc)
                return
            if not allowed:
                raise TooManyRequests(
                    f"too many requests with unknown keys from {address}; wait before sending a key again",
                    retry_after=self._retry_after(item, "auth-failures", address),
                )

    def authentication_failed(self, address: str) -> None:
        if self.limiter is None:
            return
        for item in self.auth_failures:
            try:
                self.limiter.hit(item, "auth-failures", address)
            except StorageError as exc:
                self._storage_failed(exc)
                return

    def _hit(self, items: list[tuple[RateLimitItem, str, int]], identity: str, what: str) -> None:
        assert self.limiter is not None
        refused: list[tuple[RateLimitItem, str]] = []
        for item, namespace, cost in items:
            try:
                if not self.limiter.hit(item, namespace, identity, cost=cost):
                    refused.append((item, namespace))
            except StorageError as exc:
                self._storage_failed(exc)
                return
        if refused:
            # Every window that refused must have passed before a retry can succeed.
            wait = max(self._retry_after(item, namespace, identity) for item, namespace in refused)
            limits = ", ".join(str(item) for item, _ in refused)
            raise TooManyRequests(
                f"this key's {what} are over the limit ({limits}); send again after Retry-After seconds",
                retry_after=wait,
            )

    def _retry_after(self, item: RateLimitItem, *identifiers: str) -> int:
        assert self.limiter is not None
        try:
            reset = self.limiter.get_window_stats(item, *identifiers).reset_time
        except StorageError:
            return int(item.get_expiry())
        return max(1, math.ceil(reset - time.time()))

    def _storage_failed(self, exc: StorageError) -> None:
        log.warning("rate limit storage unavailable, request let through: %s", exc.storage_error.__class__.__name__)
