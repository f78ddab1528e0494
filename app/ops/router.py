"""Liveness, readiness and metrics for orchestrators and Prometheus."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from app import metrics
from app.db import Database
from app.deps import get_db
from app.errors import problem, responses
from app.migrate import at_head
from app.rules.service import readiness
from app.rules.state import RulesInForce

router = APIRouter(tags=["operations"])
log = logging.getLogger("supervision.ops")


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", responses=responses(s503="not ready: database unreachable or behind, or no rules"))
def readyz(request: Request, db: Annotated[Database, Depends(get_db)]) -> Response:
    """Ready to serve: the database answers, its schema is at the migrations' head and the rules loaded."""
    checks: dict[str, str] = {}
    try:
        with db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            checks["database"] = "ok"
            checks["migrations"] = "head" if at_head(conn) else "behind: run `supervision migrate`"
    except SQLAlchemyError as exc:
        log.warning("readiness check failed: %s", exc.__class__.__name__)
        checks["database"] = "unreachable"
    in_force: RulesInForce = request.app.state.rules
    rules_ready, checks["rules"] = readiness(in_force.rules, in_force.error)
    if checks.get("database") == "ok" and checks.get("migrations") == "head" and rules_ready:
        return JSONResponse({"status": "ready", **checks})
    return problem(503, "not ready: " + ", ".join(f"{k} {v}" for k, v in checks.items()), checks=checks)


@router.get("/metrics", response_class=Response)
def get_metrics(db: Annotated[Database, Depends(get_db)]) -> Response:
    """Prometheus metrics: requests, events, and alerts by stage and overdue (read from the database)."""
    body, content_type = metrics.render(db)
    return Response(content=body, media_type=content_type)
