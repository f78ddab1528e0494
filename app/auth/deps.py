"""Authentication and role checks as FastAPI dependencies."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from app.auth.service import Principal, Role, authenticate, hash_secret
from app.db import Database
from app.deps import get_db
from app.errors import Forbidden, Unauthorized
from app.logging import remember_secret
from app.ratelimit import RateLimits


def bearer_secret(request: Request) -> str:
    """The key sent as `Authorization: Bearer <key>` (401 without one)."""
    scheme, _, secret = request.headers.get("authorization", "").partition(" ")
    remember_secret(secret.strip())  # kept out of this request's log lines, whatever it is
    if scheme.lower() != "bearer" or not secret.strip():
        raise Unauthorized("send an API key as `Authorization: Bearer <key>`")
    return secret.strip()


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def look_up(request: Request, db: Database, secret: str) -> Principal:
    """The active key of ``secret`` (401 when unknown or revoked; 429 once the address failed too often)."""
    limits: RateLimits = request.app.state.rate_limits
    address = _address(request)
    # Checked before the key: once an address is over its limit, a right guess is refused too.
    limits.before_authentication(address)
    # One read, no transaction around it: autocommit saves a BEGIN and a ROLLBACK round trip.
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        principal = authenticate(conn, secret)
    if principal is None:
        limits.authentication_failed(address)
        raise Unauthorized("the API key is unknown or revoked")
    return principal


def current_principal(request: Request, db: Annotated[Database, Depends(get_db)]) -> Principal:
    principal = look_up(request, db, bearer_secret(request))
    request.state.principal = principal
    return principal


# Ingest keys met before, by the hash of their secret. On PostgreSQL the statement that stores a request's
# events also checks that its key is still active (events.service._KEY_ACTIVE), so a known key needs no
# lookup of its own, nor a hop to a thread for it, and a revoked key is still refused at once (and
# forgotten here). Only keys admitted to ingest are kept, so a revoked key of another role meets the lookup.
_INGEST_KEYS: dict[str, Principal] = {}
_INGEST_KEYS_KEPT = 1024
_INGEST_ROLES = frozenset({Role.SOURCE, Role.ADMIN})


def forget_ingest_key(principal: Principal) -> None:
    for digest, known in list(_INGEST_KEYS.items()):
        if known.key_id == principal.key_id:
            _INGEST_KEYS.pop(digest, None)


async def ingest_principal(request: Request) -> Principal:
    """A key admitted to post events (source or admin), checked for revocation by the insert on PostgreSQL.

    (No sub-dependencies: each level of them costs FastAPI more than this whole check.)"""
    db: Database = request.app.state.db
    secret = bearer_secret(request)
    digest = hash_secret(secret)
    principal = _INGEST_KEYS.get(digest) if db.dialect == "postgresql" else None
    if principal is not None:
        limits: RateLimits = request.app.state.rate_limits
        if limits.enabled:
            await run_in_threadpool(limits.before_authentication, _address(request))
    else:
        principal = await run_in_threadpool(look_up, request, db, secret)
        if principal.role in _INGEST_ROLES and db.dialect == "postgresql":
            if len(_INGEST_KEYS) >= _INGEST_KEYS_KEPT:
                _INGEST_KEYS.clear()
            _INGEST_KEYS[digest] = principal
    if principal.role not in _INGEST_ROLES:
        raise role_refused(principal, _INGEST_ROLES)
    request.state.principal = principal
    return principal


def role_refused(principal: Principal, allowed: Iterable[Role]) -> Forbidden:
    """The 403 for a key whose role is not among ``allowed``."""
    names = ", ".join(sorted(role.value for role in allowed))
    return Forbidden(f"this needs the role {names}; the key {principal.name!r} is {principal.role.value}")


def require(*roles: Role) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency admitting the given roles; admins are admitted everywhere."""
    allowed = {*roles, Role.ADMIN}

    async def check(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
        if principal.role not in allowed:
            raise role_refused(principal, allowed)
        return principal

    return check


SourceKey = Annotated[Principal, Depends(require(Role.SOURCE))]
# For the ingest routes: a source (or admin) key whose revocation the storing statement checks.
IngestKey = Annotated[Principal, Depends(ingest_principal)]
InspectorKey = Annotated[Principal, Depends(require(Role.INSPECTOR))]
AdminKey = Annotated[Principal, Depends(require())]
