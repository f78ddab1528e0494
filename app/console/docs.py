"""/docs and /redoc from local assets: Swagger UI and ReDoc as shipped by the fastapi-offline package (MIT)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

ASSETS = Path(fastapi_offline.__file__).resolve().parent / "static"
PREFIX = "/docs-assets"
REDOC_JS = "/redoc-assets/redoc.standalone.js"
# ReDoc's sidebar shows the Redocly logo from their CDN; the intranet cannot reach it, so the served copy
# points at the console's own icon instead.
REDOC_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"
LOCAL_LOGO = b"/console/static/favicon.svg"


@cache
def redoc_script() -> bytes:
    return (ASSETS / "redoc.standalone.js").read_bytes().replace(REDOC_LOGO, LOCAL_LOGO)


def install(app: FastAPI) -> None:
    app.mount(PREFIX, StaticFiles(directory=ASSETS), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url="/docs/oauth2-redirect",
            swagger_js_url=f"{PREFIX}/swagger-ui-bundle.js",
            swagger_css_url=f"{PREFIX}/swagger-ui.css",
            swagger_favicon_url=f"{PREFIX}/favicon.png",
            # No badge from the public validator: the intranet cannot reach it.
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(REDOC_JS, include_in_schema=False)
    async def redoc_js() -> Response:
        return Response(redoc_script(), media_type="text/javascript", headers={"Cache-Control": "max-age=86400"})

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=REDOC_JS,
            redoc_favicon_url=f"{PREFIX}/favicon.png",
            with_google_fonts=False,
        )
