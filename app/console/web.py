"""What every console page shares: templates and labels, the session dependency, forms, error pages."""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import parse_qsl, urlencode

from fastapi import Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, ValidationError

from app.auth.service import Principal, Role
from app.console import session as sessions
from app.console.labels import LABELS, label
from app.errors import AppError, Forbidden
from app.units.service import subtree

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
templates = Jinja2Templates(directory=HERE / "templates")

# No inline script anywhere, and nothing from another origin.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
ROLES = (Role.INSPECTOR, Role.ADMIN)


class NeedSignIn(Exception):
    """No valid session: the browser is sent to the sign-in page."""


class ConsoleFormError(Exception):
    """A form or query the console cannot use: a 422 page naming the fields."""

    def __init__(self, errors: Sequence[tuple[str, str]]) -> None:
        super().__init__("invalid form")
        self.errors = list(errors)


def lang_of(request: Request) -> str:
    asked = request.query_params.get("lang")
    if asked in ("zh", "en"):
        return asked
    return "en" if request.cookies.get(sessions.LANG_COOKIE) == "en" else "zh"


def zone_of(request: Request) -> tzinfo:
    zone: tzinfo = request.app.state.settings.zone
    return zone


def page(
    request: Request,
    template: str,
    *,
    console: sessions.ConsoleSession | None,
    status_code: int = 200,
    **context: Any,
) -> Response:
    lang = lang_of(request)
    zone = zone_of(request)

    def t(key: str) -> str:
        return label(key, lang)

    def tv(prefix: str, value: object) -> str:
        """A stored value (an enum's, an action's) in the page's language; one not in the catalogue as it is."""
        key = f"{prefix}.{value}"
        return label(key, lang) if key in LABELS else str(value)

    def local(value: datetime | None) -> str:
        return "" if value is None else value.astimezone(zone).strftime("%Y-%m-%d %H:%M")

    def detail(name: str, value: Any) -> str:
        """One field of a transition's details, as the page shows it (labels, local times, lists)."""
        if name in ("level", "outcome"):
            return tv(f"{name}", value)
        if name in ("due_at", "held_at") and isinstance(value, str):
            try:
                return local(datetime.fromisoformat(value))
            except ValueError:
                return value
        if isinstance(value, list):
            return ", ".join(str(item) for item in value)
        return str(value)

    other = "zh" if lang == "en" else "en"
    query = {k: v for k, v in request.query_params.items() if k != "lang"}
    response = templates.TemplateResponse(
        request,
        template,
        {
            "t": t,
            "tv": tv,
            "has_label": lambda key: key in LABELS,
            "lang": lang,
            "lang_url": f"{request.url.path}?{urlencode({**query, 'lang': other})}",
            "local": local,
            "detail": detail,
            "console": console,
            "principal": console.principal if console else None,
            "csrf": console.csrf if console else "",
            "path": request.url.path,
            **context,
        },
        status_code=status_code,
        headers=SECURITY_HEADERS,
    )
    if request.query_params.get("lang") in ("zh", "en"):
        response.set_cookie(sessions.LANG_COOKIE, lang, max_age=365 * 86400, samesite="strict", httponly=True)
    return response


async def signed_in(request: Request) -> sessions.ConsoleSession:
    """The console session of an inspector or admin key (sign-in page without one, 403 for another role)."""
    console = await sessions.current(request)
    if console is None:
        raise NeedSignIn()
    request.state.console = console
    if console.principal.role not in ROLES:
        raise Forbidden(
            f"the console needs the role admin or inspector; the key {console.principal.name!r} is "
            f"{console.principal.role.value}"
        )
    return console


Console = Annotated[sessions.ConsoleSession, Depends(signed_in)]


def scope(principal: Principal) -> Any:
    return subtree(principal.unit_id) if principal.unit_id else None


async def form_of(request: Request, console: sessions.ConsoleSession) -> dict[str, str]:
    """The urlencoded form, its CSRF token checked (403 page when it does not match the session)."""
    body = (await request.body()).decode("utf-8", "replace")
    form = dict(parse_qsl(body, keep_blank_values=True))
    if not sessions.same(form.pop("csrf", None), console.csrf):
        raise Forbidden("csrf")
    return form


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers=SECURITY_HEADERS)


def field_errors(exc: ValidationError, prefix: int = 0) -> list[tuple[str, str]]:
    return [(".".join(str(part) for part in error["loc"][prefix:]) or "form", error["msg"]) for error in exc.errors()]


M = TypeVar("M", bound=BaseModel)


def form_body(model: type[M], values: Mapping[str, Any]) -> M:
    """A form read as the API's body model; a field it refuses is the form-error page naming that field."""
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise ConsoleFormError(field_errors(exc)) from exc


def local_times(values: Mapping[str, str], names: Sequence[str], zone: tzinfo) -> dict[str, Any]:
    """`datetime-local` fields (no zone) read in the configured zone; anything else is left to validation."""
    out: dict[str, Any] = {}
    for name in names:
        raw = values.get(name)
        if not raw:
            continue
        try:
            parsed = datetime.fromisoformat(raw)
        except ValueError:
            out[name] = raw
            continue
        out[name] = (parsed.replace(tzinfo=zone) if parsed.tzinfo is None else parsed).isoformat()
    return out


# ---- errors --------------------------------------------------------------------------------------------------

_TITLES = {401: "bad_key", 403: "forbidden", 404: "not_found", 409: "conflict", 412: "stale", 422: "invalid"}


def error_page(request: Request, status: int, detail: str, fields: Sequence[tuple[str, str]] = ()) -> Response:
    console = getattr(request.state, "console", None)
    return page(
        request,
        "error.html",
        console=console,
        status_code=status,
        title=_TITLES.get(status, "error"),
        detail=detail,
        fields=fields,
    )


async def _call(handler: Any, request: Request, exc: Exception) -> Response:
    response = handler(request, exc)
    if inspect.isawaitable(response):
        response = await response
    assert isinstance(response, Response)
    return response


def install_error_pages(app: FastAPI) -> None:
    """The console's error pages: HTML under /console, problem+json elsewhere as before."""
    api_app_error = app.exception_handlers[AppError]
    api_validation_error = app.exception_handlers[RequestValidationError]

    async def on_need_sign_in(request: Request, exc: Exception) -> Response:
        target = request.url.path if request.method == "GET" else "/console/alerts"
        return redirect("/console/signin?" + urlencode({"next": target}))

    async def on_form_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ConsoleFormError)
        return error_page(request, 422, "", exc.errors)

    async def on_app_error(request: Request, exc: Exception) -> Response:
        if not request.url.path.startswith("/console"):
            return await _call(api_app_error, request, exc)
        assert isinstance(exc, AppError)
        fields = [(".".join(str(p) for p in e["loc"] if p != "body"), str(e["msg"])) for e in exc.errors or []]
        if exc.detail == "csrf":
            return error_page(request, 403, label("csrf", lang_of(request)))
        detail = exc.detail
        if "allowed" in exc.extra:
            detail = f"{detail} (allowed: {', '.join(exc.extra['allowed'])})"
        return error_page(request, exc.status, detail, fields)

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        if not request.url.path.startswith("/console"):
            return await _call(api_validation_error, request, exc)
        assert isinstance(exc, RequestValidationError)
        fields = [(".".join(str(p) for p in e["loc"][1:]), str(e["msg"])) for e in exc.errors()]
        return error_page(request, 422, "", fields)

    app.add_exception_handler(NeedSignIn, on_need_sign_in)
    app.add_exception_handler(ConsoleFormError, on_form_error)
    app.add_exception_handler(AppError, on_app_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
