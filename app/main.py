"""The ASGI application."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy.exc import SQLAlchemyError

from app.alerts.router import router as alerts_router
from app.audit.router import router as audit_router
from app.auth.service import ensure_bootstrap_admin
from app.breakers.router import router as breakers_router
from app.config import Settings, get_settings
from app.console import docs as console_docs
from app.console import router as console
from app.db import Database
from app.edge import EdgeMiddleware
from app.errors import install_error_handlers
from app.events.openapi import discriminate_by_domain
from app.events.router import router as events_router
from app.exemptions.router import router as exemptions_router
from app.logging import always_redact, configure_logging
from app.openapi import install_openapi
from app.ops.router import router as ops_router
from app.ratelimit import RateLimits
from app.reports.router import router as reports_router
from app.routing import operation_id
from app.rules.router import router as rules_router
from app.rules.state import RulesInForce
from app.scans.router import router as scans_router
from app.scans.service import periodic_scans
from app.units.router import router as units_router
from app.webhooks import outbox
from app.webhooks.delivery import Deliverer
from app.webhooks.router import router as webhooks_router

log = logging.getLogger("supervision")

DESCRIPTION = """
交管业务综合监管平台 — traffic-police business supervision. Business systems report what their
operators do (业务事件); threshold rules (预警阈值熔断) raise alerts (业务预警) and stop a subject's
business; discipline inspectors move each alert through 预警 → 提级督办 → 警示约谈 → 追责问责.
Errors are RFC 9457 `application/problem+json`.
"""


def create_app(settings: Settings | None = None, *, freeze_startup: bool = False) -> FastAPI:
    """The application. ``freeze_startup`` (a server process, one app for its lifetime): once started, what
    exists is exempted from garbage collection (``gc.freeze``); tests make many apps and leave it off."""
    settings = settings or get_settings()
    if settings.bootstrap_admin_key is not None:
        always_redact(settings.bootstrap_admin_key.get_secret_value())
    db = Database(settings)
    outbox.set_ttl(settings.webhook_cache_ttl)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.bootstrap_admin_key is not None:
            try:
                with db.session(write=True) as session:
                    ensure_bootstrap_admin(session, settings.bootstrap_admin_key.get_secret_value())
            except SQLAlchemyError:
                # Not fatal: /readyz reports the database, and the next start retries.
                log.exception("could not ensure the bootstrap admin key (has `supervision migrate` run?)")
        # Everything made while starting (modules, rules, the OpenAPI schema, pools) lives as long as the
        # process: moved out of the collector's sight, it is not traversed again by every full collection.
        if freeze_startup:
            gc.collect()
            gc.freeze()
        task = None
        if settings.scan_interval is not None:
            task = asyncio.create_task(periodic_scans(db, app.state.rules, settings))
        # Every server worker delivers webhooks (claims keep them from sending one delivery twice).
        deliverer = Deliverer(db, settings) if settings.webhook_delivery else None
        if deliverer is not None:
            deliverer.start()
        yield
        if deliverer is not None:
            await asyncio.to_thread(deliverer.stop)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        db.dispose()

    app = FastAPI(
        # ASCII: a client generated from the document is named after the title.
        title="Supervision",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        generate_unique_id_function=operation_id,
        # Served from local assets by app.console.docs: the intranet has no CDN.
        docs_url=None,
        redoc_url=None,
    )
    app.state.db = db
    app.state.settings = settings
    app.state.rate_limits = RateLimits(settings)
    # Loaded once; a failure leaves an empty set in force and /readyz reporting the problem.
    app.state.rules = RulesInForce(settings.rules_dir, db)
    install_error_handlers(app)
    install_openapi(app, refinements=[discriminate_by_domain])
    app.add_middleware(EdgeMiddleware)
    app.include_router(ops_router)
    app.include_router(events_router)
    app.include_router(units_router)
    app.include_router(rules_router)
    app.include_router(alerts_router)
    app.include_router(breakers_router)
    app.include_router(exemptions_router)
    app.include_router(scans_router)
    app.include_router(reports_router)
    app.include_router(audit_router)
    app.include_router(webhooks_router)
    console.install(app)
    console_docs.install(app)
    return app


def app_factory() -> FastAPI:
    """The entry point for `uvicorn --factory app.main:app_factory` and `supervision serve`."""
    settings = get_settings()
    configure_logging(settings.log_level, access_log=settings.access_log)
    return create_app(settings, freeze_startup=True)
