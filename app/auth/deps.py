"""Authentication and role checks as FastAPI dependencies."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request

from app.auth.service import Principal, Role, authenticate
from app.db import Database
from app.deps import get_db
from app.errors import Forbidden, Unauthorized
from app.logging import remember_secret


def current_principal(request: Request, db: Annotated[Database, Depends(get_db)]) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    remember_secret(secret.strip())
    if scheme.lower() != "bearer" or not secret.strip():
        raise Unauthorized("send an API key as `Authorization: Bearer <key>`")
    # One read, no transaction around it: autocommit saves a BEGIN and a ROLLBACK round trip.
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        principal = authenticate(conn, secret.strip())
    if principal is None:
        raise Unauthorized("the API key is unknown or revoked")
    request.state.principal = principal
    return principal


def require(*roles: Role) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency admitting the given roles; admins are admitted everywhere."""
    allowed = {*roles, Role.ADMIN}

    async def check(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
        if principal.role not in allowed:
            names = ", ".join(sorted(role.value for role in allowed))
            raise Forbidden(f"this needs the role {names}; the key {principal.name!r} is {principal.role.value}")
        return principal

    return check


SourceKey = Annotated[Principal, Depends(require(Role.SOURCE))]
InspectorKey = Annotated[Principal, Depends(require(Role.INSPECTOR))]
AdminKey = Annotated[Principal, Depends(require())]
