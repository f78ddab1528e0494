"""API keys: random secrets shown once, stored only as a SHA-256 hash."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import Connection, Table, bindparam, select, update
from sqlalchemy.orm import Session

from app.audit import service as audit
from app.auth.models import ApiKey
from app.db import insert_ignoring, utcnow
from app.errors import InvalidInput, NotFound
from app.units.models import Unit

API_KEYS: Table = ApiKey.__table__  # type: ignore[assignment]
KEY_PREFIX = "sv_"
BOOTSTRAP_KEY_NAME = "bootstrap-admin"


class Role(StrEnum):
    SOURCE = "source"
    INSPECTOR = "inspector"
    ADMIN = "admin"


@dataclass(frozen=True)
class Principal:
    key_id: int
    name: str
    role: Role
    unit_id: str | None


@dataclass(frozen=True)
class CreatedKey:
    key: ApiKey
    secret: str


def hash_secret(secret: str) -> str:
    # Keys are 256-bit random secrets, so a fast hash is safe: there is nothing to brute-force.
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(
    session: Session, *, name: str, role: Role, unit_id: str | None = None, actor: str = "cli"
) -> CreatedKey:
    name = name.strip()
    if not name or len(name) > 64:
        raise InvalidInput([(("name",), "a key name is 1 to 64 characters")])
    if unit_id is not None:
        if role is not Role.INSPECTOR:
            raise InvalidInput([(("unit",), "only inspector keys are scoped to a unit")])
        if session.get(Unit, unit_id) is None:
            raise InvalidInput([(("unit",), f"unknown unit {unit_id!r}: register it first (PUT /v1/units/{{id}})")])
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(
        name=name,
        role=role.value,
        unit_id=unit_id,
        key_hash=hash_secret(secret),
        prefix=secret[: len(KEY_PREFIX) + 6],
        created_at=utcnow(),
    )
    session.add(key)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action=audit.AuditAction.KEY_CREATED,
        object_type="key",
        object_id=str(key.id),
        data={"name": key.name, "role": key.role, "unit": key.unit_id, "prefix": key.prefix},
    )
    return CreatedKey(key=key, secret=secret)


def list_keys(session: Session, *, include_revoked: bool = False) -> list[ApiKey]:
    query = select(ApiKey).order_by(ApiKey.id)
    if not include_revoked:
        query = query.where(ApiKey.revoked_at.is_(None))
    return list(session.scalars(query))


def revoke_key(session: Session, *, key_id: int, actor: str = "cli") -> ApiKey:
    key = session.get(ApiKey, key_id)
    if key is None:
        raise NotFound(f"no API key with id {key_id}")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        session.flush()
        audit.record(
            session,
            actor=actor,
            action=audit.AuditAction.KEY_REVOKED,
            object_type="key",
            object_id=str(key.id),
            data={"name": key.name, "role": key.role},
        )
    return key


# Built once: constructing the query cost as much as running it, on every request.
_ACTIVE_KEY = select(ApiKey.id, ApiKey.name, ApiKey.role, ApiKey.unit_id, ApiKey.key_hash).where(
    ApiKey.key_hash == bindparam("digest"), ApiKey.revoked_at.is_(None)
)


def authenticate(conn: Connection, secret: str) -> Principal | None:
    """The active key whose hash matches `secret`, or None. Revocation takes effect on the next request."""
    digest = hash_secret(secret)
    row = conn.execute(_ACTIVE_KEY, {"digest": digest}).first()
    if row is None or not hmac.compare_digest(row.key_hash, digest):
        return None
    return Principal(key_id=row.id, name=row.name, role=Role(row.role), unit_id=row.unit_id)


def ensure_bootstrap_admin(session: Session, secret: str) -> None:
    """Make sure an active admin key with this exact secret exists (idempotent, safe across workers)."""
    digest = hash_secret(secret)
    values = {
        "name": BOOTSTRAP_KEY_NAME,
        "role": Role.ADMIN.value,
        "key_hash": digest,
        "prefix": secret[:9],
        "created_at": utcnow(),
    }
    created = (
        session.connection()
        .execute(insert_ignoring(session, API_KEYS, conflict=("key_hash",), returning=("id",)), values)
        .first()
    )
    if created is not None:
        audit.record(
            session,
            actor="bootstrap",
            action=audit.AuditAction.KEY_CREATED,
            object_type="key",
            object_id=str(created.id),
            data={"name": BOOTSTRAP_KEY_NAME, "role": Role.ADMIN.value, "from": "SUPERVISION_BOOTSTRAP_ADMIN_KEY"},
        )
    session.execute(
        update(ApiKey).where(ApiKey.key_hash == digest).values(role=Role.ADMIN.value, revoked_at=None, unit_id=None)
    )


_ACTIVE_KEY_BY_ID = select(ApiKey.id, ApiKey.name, ApiKey.role, ApiKey.unit_id, ApiKey.key_hash).where(
    ApiKey.id == bindparam("key_id"), ApiKey.revoked_at.is_(None)
)


def active_key(conn: Connection, key_id: int) -> tuple[Principal, str] | None:
    """The active key with this id and its secret's hash (which signs its console sessions), or None once revoked."""
    row = conn.execute(_ACTIVE_KEY_BY_ID, {"key_id": key_id}).first()
    if row is None:
        return None
    return Principal(key_id=row.id, name=row.name, role=Role(row.role), unit_id=row.unit_id), row.key_hash
