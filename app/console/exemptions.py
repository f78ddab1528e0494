"""The exemptions page (报备) of the console: requests to decide, those in force, and the history.

Decisions and revocations go through `app.exemptions.service` exactly as the API's routes do: the same
scope (a scoped inspector sees the exemptions whose subject has business in its units; 404 outside), the
same four-eyes rule and the same messages.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from app.auth.service import Principal
from app.console.web import Console, form_body, form_of, page, redirect, scope
from app.db import Database, utcnow
from app.exemptions import service as exemptions
from app.exemptions.models import Exemption
from app.exemptions.schemas import DecisionIn, RevokeIn
from app.params import RowId

router = APIRouter(prefix="/console", include_in_schema=False)

SHOWN = 200  # per section; the API pages through the rest


def _scope(principal: Principal) -> exemptions.Scope:
    return exemptions.Scope(units=scope(principal))


def _in_force(row: Exemption, now: datetime) -> bool:
    """Approved and not yet over (active now, or starting later): it can still be revoked."""
    return row.status == exemptions.APPROVED and now < row.ends_at


@router.get("/exemptions")
def exemption_page(request: Request, console: Console) -> Response:
    db: Database = request.app.state.db
    now = utcnow()
    visible = _scope(console.principal)

    def listed(status: str) -> list[Exemption]:
        return exemptions.list_exemptions(
            session, status=status, subject=None, active=None, now=now, limit=SHOWN, after=None, scope=visible
        )

    with db.session() as session:
        requested = listed(exemptions.REQUESTED)
        approved = listed(exemptions.APPROVED)
        history = [
            *listed(exemptions.REJECTED),
            *listed(exemptions.REVOKED),
            *(row for row in approved if not _in_force(row, now)),
        ]
        session.expunge_all()
    history.sort(key=lambda row: row.id, reverse=True)
    notice = next(
        (
            label
            for param, label in (("decided", "exemption.decided"), ("revoked", "exemption.revoked_done"))
            if request.query_params.get(param)
        ),
        None,
    )
    return page(
        request,
        "exemptions.html",
        console=console,
        requested=requested,
        in_force=[(row, exemptions.is_active(row, now)) for row in approved if _in_force(row, now)],
        history=history,
        now=now,
        domains_of=lambda row: row.domains.strip(",").split(","),
        rules=request.app.state.rules.current(db),
        notice=notice,
    )


@router.post("/exemptions/{exemption_id}/decision")
async def decide_exemption(request: Request, exemption_id: RowId, console: Console) -> Response:
    form = await form_of(request, console)
    # The form's two buttons send "true" or "false"; anything else stays as sent and is refused, naming the field.
    choice = {"true": True, "false": False}.get(str(form.get("approve", "")), form.get("approve", ""))
    body = form_body(DecisionIn, {"approve": choice, "reason": form.get("reason", "")})
    db: Database = request.app.state.db

    def apply() -> None:
        with db.session(write=True) as session:
            now = utcnow()
            exemption = exemptions.get(session, exemption_id, scope=_scope(console.principal), lock=True)
            exemptions.decide(
                session,
                request.app.state.rules.current(db),
                exemption,
                approve=body.approve,
                reason=body.reason,
                actor=console.principal.name,
                now=now,
            )

    await run_in_threadpool(apply)
    return redirect(f"/console/exemptions?decided={exemption_id}")


@router.post("/exemptions/{exemption_id}/revoke")
async def revoke_exemption(request: Request, exemption_id: RowId, console: Console) -> Response:
    form = await form_of(request, console)
    body = form_body(RevokeIn, {"reason": form.get("reason", "")})
    db: Database = request.app.state.db

    def apply() -> None:
        with db.session(write=True) as session:
            now = utcnow()
            exemption = exemptions.get(session, exemption_id, scope=_scope(console.principal), lock=True)
            exemptions.revoke(
                session,
                request.app.state.rules.current(db),
                exemption,
                reason=body.reason,
                actor=console.principal.name,
                now=now,
            )

    await run_in_threadpool(apply)
    return redirect(f"/console/exemptions?revoked={exemption_id}")
