"""`supervision audit …`: verify the audit trail, take a checkpoint of the events."""

from __future__ import annotations

import getpass
import os

import typer

from app.audit import service
from app.config import get_settings
from app.db import Database
from app.errors import AppError

audit_cli = typer.Typer(
    help="The audit trail (审计日志): verify the hash chain, checkpoint the events.", no_args_is_help=True
)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container's arbitrary uid)
        return str(os.getuid())


@audit_cli.command("verify")
def verify() -> None:
    """Recompute the chain and the event checkpoints; exit 1 naming the first entry that does not hold."""
    db = Database(get_settings())
    try:
        service.seal_pending(db)
        with db.session() as session:
            verdict = service.verify(session)
    finally:
        db.dispose()
    if verdict.ok:
        head = f"; head seq {verdict.head_seq} hash {verdict.head_hash}" if verdict.head_seq else ""
        typer.echo(f"ok: {verdict.checked} entries checked{head}")
        return
    typer.echo(f"MISMATCH at entry {verdict.first_mismatch}: {verdict.reason}")
    if verdict.changed_events:
        typer.echo(f"events that no longer match their content_hash: {', '.join(map(str, verdict.changed_events))}")
    typer.echo(f"{verdict.checked} entries checked")
    raise typer.Exit(code=1)


@audit_cli.command("checkpoint")
def checkpoint() -> None:
    """Append a checkpoint of the events stored so far to the audit trail."""
    db = Database(get_settings())
    try:
        entry = service.take_checkpoint(db, actor=f"cli:{_user()}"[:64])
    except AppError as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(code=1) from None
    finally:
        db.dispose()
    data = entry.data
    typer.echo(
        f"checkpoint entry {entry.id} (seq {entry.seq}): {data['events']} events up to id {data['last_event_id']}, "
        f"hash {data['hash']}"
    )
