"""Console sessions: a cookie signed with the key's own stored hash, so it dies with the key.

The cookie holds the key id, when it was issued and a random nonce, signed with HMAC over the key's
stored SHA-256 hash; every request reads the key again, so a revoked key (no longer active) ends its
sessions at the next request, and signing out records the session's nonce so that no copy of its cookie
is taken again. The CSRF token of a session is an HMAC of its nonce; the sign-in form,
which has no session yet, uses a random token kept in a cookie and sent back with the form.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta

from fastapi import Request
from sqlalchemy import Table, bindparam, delete, select
from starlette.concurrency import run_in_threadpool

from app.auth.service import Principal, active_key
from app.console.models import EndedSession
from app.db import Database, insert_ignoring, utcnow

SESSION_COOKIE = "sv_console"
SIGNIN_CSRF_COOKIE = "sv_console_csrf"
LANG_COOKIE = "sv_console_lang"
SESSION_SECONDS = 8 * 3600
ENDED: Table = EndedSession.__table__  # type: ignore[assignment]


@dataclass(frozen=True)
class ConsoleSession:
    principal: Principal
    csrf: str


def _sign(key_hash: str, message: str) -> str:
    return hmac.new(key_hash.encode(), message.encode(), hashlib.sha256).hexdigest()


def issue(principal: Principal, key_hash: str, *, now: float | None = None) -> str:
    """A new session cookie value for this key."""
    message = f"{principal.key_id}.{int(now if now is not None else time.time())}.{secrets.token_hex(16)}"
    return f"{message}.{_sign(key_hash, message)}"


def _check(db: Database, token: str) -> ConsoleSession | None:
    parts = token.split(".")
    if len(parts) != 4 or not parts[0].isdigit() or not parts[1].isdigit():
        return None
    key_id, issued, nonce, signature = int(parts[0]), int(parts[1]), parts[2], parts[3]
    if not 0 <= time.time() - issued <= SESSION_SECONDS:
        return None
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        found = active_key(conn, key_id)
        if found is None:
            return None
        principal, key_hash = found
        if not hmac.compare_digest(_sign(key_hash, ".".join(parts[:3])), signature):
            return None
        if conn.execute(_ENDED, {"nonce": nonce}).first() is not None:
            return None  # signed out: this cookie (or a copy of it) is dead
    return ConsoleSession(principal=principal, csrf=_sign(key_hash, f"csrf.{nonce}"))


_ENDED = select(EndedSession.nonce).where(EndedSession.nonce == bindparam("nonce"))


def end(db: Database, token: str) -> None:
    """End the session of this (valid) cookie for good, and forget sessions ended longer ago than any lives."""
    key_id, _, nonce, _ = token.split(".")
    now = utcnow()
    with db.session(write=True) as session:
        session.execute(
            insert_ignoring(session, ENDED, conflict=("nonce",)),
            {"nonce": nonce, "key_id": int(key_id), "ended_at": now},
        )
        session.execute(delete(EndedSession).where(EndedSession.ended_at < now - timedelta(seconds=SESSION_SECONDS)))


async def current(request: Request) -> ConsoleSession | None:
    """The request's console session, or None (no cookie, tampered, expired, or its key revoked)."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token or len(token) > 200:
        return None
    return await run_in_threadpool(_check, request.app.state.db, token)


def new_signin_csrf() -> str:
    return secrets.token_urlsafe(24)


def same(given: str | None, expected: str | None) -> bool:
    return bool(given) and bool(expected) and hmac.compare_digest(str(given), str(expected))
