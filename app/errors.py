"""One error base class and the handlers that turn every error into RFC 9457 problem+json."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

from app.logging import request_id_var
from app.routing import allow_header, path_table, route_path

log = logging.getLogger("supervision.errors")

PROBLEM_JSON = "application/problem+json"

Loc = tuple[str | int, ...]


class ProblemResponse(JSONResponse):
    media_type = PROBLEM_JSON

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except UnicodeEncodeError:
            # A lone surrogate the client sent (say, as an attribute's name) is echoed in `loc` or
            # `detail`; UTF-8 cannot carry it, so it is answered as U+FFFD instead.
            return super().render(_replace_surrogates(content))


def _replace_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if isinstance(value, dict):
        return {_replace_surrogates(key): _replace_surrogates(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_replace_surrogates(item) for item in value]
    return value


def problem(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    type_: str | None = None,
    errors: Sequence[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> ProblemResponse:
    phrase = HTTPStatus(status).phrase
    slug = phrase.lower().replace(" ", "-").replace("'", "")
    body: dict[str, Any] = {
        "type": type_ or f"/problems/{slug}",
        "title": title or phrase,
        "status": status,
        "detail": detail,
    }
    if errors is not None:
        body["errors"] = list(errors)
    body.update(extra)
    request_id = request_id_var.get()
    if request_id:
        body["request_id"] = request_id
    return ProblemResponse(body, status_code=status, headers=headers)


class AppError(Exception):
    """Base of every error the service raises on purpose; `status` picks the HTTP answer."""

    status = 500
    title: str | None = None

    def __init__(self, detail: str, *, errors: Sequence[tuple[Loc, str]] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = None if errors is None else [{"loc": list(loc), "msg": msg} for loc, msg in errors]
        self.extra = extra

    def headers(self) -> dict[str, str] | None:
        return None


class Unauthorized(AppError):
    status = 401

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="supervision"'}


class Forbidden(AppError):
    status = 403


class NotFound(AppError):
    status = 404


class Conflict(AppError):
    status = 409


class PreconditionFailed(AppError):
    """The client's If-Match names a version that is no longer current."""

    status = 412


class PayloadTooLarge(AppError):
    status = 413


class TooManyRequests(AppError):
    """Over a rate limit (app/ratelimit.py); `retry_after` seconds until the window that refused it ends."""

    status = 429

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class InvalidInput(AppError):
    """A 422 for input that passed the schema but breaks a rule of the domain."""

    status = 422

    title = "Validation failed"

    def __init__(self, errors: Sequence[tuple[Loc, str]], detail: str | None = None) -> None:
        summary = "; ".join(f"{_loc_text(loc)}: {msg}" for loc, msg in errors[:5])
        super().__init__(detail or summary, errors=errors)


def _loc_text(loc: Sequence[str | int]) -> str:
    return ".".join(str(part) for part in loc)


def validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for error in exc.errors():
        msg = str(error.get("msg", "invalid"))
        out.append({"loc": list(error.get("loc", ())), "msg": msg, "type": error.get("type")})
    return out


async def _app_error(_request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, AppError)
    return problem(exc.status, exc.detail, title=exc.title, errors=exc.errors, headers=exc.headers(), **exc.extra)


async def _validation_error(_request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, RequestValidationError)
    errors = validation_errors(exc)
    detail = "; ".join(f"{_loc_text(e['loc'])}: {e['msg']}" for e in errors[:5]) or "invalid request"
    return problem(422, detail, title="Validation failed", errors=errors)


async def _http_error(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    headers = dict(exc.headers) if exc.headers else {}
    if exc.status_code == 405:
        # Starlette names only the methods of the first route that matched the path.
        served = path_table(request.app).methods(route_path(request.scope))
        if served:
            headers["Allow"] = allow_header(served)
    return problem(exc.status_code, detail, headers=headers or None)


def _transient(exc: Exception) -> bool:
    """Whether a database error passes by itself. SQLite raises OperationalError for SQL it cannot
    run, too (SQLITE_ERROR: a syntax error, a missing table): that is a bug, not a busy database,
    and retrying would never help, so it is left to the 500 handler."""
    orig = getattr(exc, "orig", None)
    return not (isinstance(orig, sqlite3.Error) and getattr(orig, "sqlite_errorname", None) == "SQLITE_ERROR")


async def _database_unavailable(_request: Request, exc: Exception) -> ProblemResponse:
    # A lost connection, a failover, SQLite's write lock held past the busy timeout, or no pooled
    # connection free in time: the request did nothing (its transaction rolled back) and may simply
    # be sent again.
    if not _transient(exc):
        raise exc
    log.warning("database unavailable: %s", exc.__class__.__name__, exc_info=exc)
    return problem(
        503, "the database is unavailable for the moment; send the request again", headers={"Retry-After": "1"}
    )


async def _database_error(request: Request, exc: Exception) -> ProblemResponse:
    # Other driver errors are a 503 too when they mean the connection is gone (a closed connection
    # is an InterfaceError in psycopg); anything else is a bug, answered as the edge answers bugs.
    assert isinstance(exc, DBAPIError)
    if exc.connection_invalidated or isinstance(exc, InterfaceError):
        return await _database_unavailable(request, exc)
    log.error("unhandled database error", exc_info=exc)
    return problem(500, "An unexpected error occurred; it has been logged with this request id.")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(OperationalError, _database_unavailable)
    # No connection free in the pool within its timeout: busy, not broken.
    app.add_exception_handler(PoolTimeout, _database_unavailable)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)


class ErrorItem(BaseModel):
    loc: list[str | int]
    msg: str


class ProblemOut(BaseModel):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[ErrorItem] | None = None
    request_id: str | None = None


_DESCRIPTIONS = {
    400: "the body is not UTF-8 encoded JSON",
    401: "no key, or a key that is unknown or revoked",
    403: "the key's role may not do this",
    404: "not found (or outside the key's unit)",
    409: "conflicts with the stored state",
    412: "If-Match does not match the current version",
    413: "the body is over 1 MiB",
    415: "the body is not of a media type this operation reads",
    422: "invalid input: `errors[].loc` names each bad field",
    429: "too many requests with unknown keys from this address: wait `Retry-After` seconds",
    503: "the database is unavailable or busy for the moment: nothing was done; send the request again",
}

_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"description": 'Bearer realm="supervision"', "schema": {"type": "string"}}},
    429: {"Retry-After": {"description": "seconds until the refusing window ends", "schema": {"type": "integer"}}},
    503: {"Retry-After": {"description": "seconds to wait before sending again", "schema": {"type": "integer"}}},
}


def responses(*codes: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the problem answers a route can give; 503 (the database unavailable) is
    added to every route, since each one reads its key or its data from the database, and 429 to every
    route that reads a key (401), since failed keys from an address are limited. A keyword
    `s413="…"` replaces the description of a code."""
    entries: dict[int | str, dict[str, Any]] = {}
    for code in sorted({*codes, 503, *((429,) if 401 in codes else ())}):
        entry: dict[str, Any] = {
            "description": descriptions.get(f"s{code}", _DESCRIPTIONS[code]),
            "model": ProblemOut,
            "content": {PROBLEM_JSON: {}},
        }
        if code in _HEADERS:
            entry["headers"] = _HEADERS[code]
        entries[code] = entry
    return entries
