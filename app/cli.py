"""The `supervision` command."""

from __future__ import annotations

import getpass
import os
import shutil
import sys
import tempfile
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
import uvicorn
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from app.audit.cli import audit_cli
from app.auth import service as auth_service
from app.auth.service import Role
from app.config import get_settings
from app.db import Database
from app.errors import AppError
from app.logging import configure_logging
from app.migrate import upgrade_head
from app.rules.spec import RuleSet

# No locals in tracebacks: they would print database URLs and key secrets.
cli = typer.Typer(
    help="交管业务综合监管平台 — traffic-police business supervision.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
keys_cli = typer.Typer(help="API keys: create (shown once), list, revoke.", no_args_is_help=True)
cli.add_typer(keys_cli, name="keys")
rules_cli = typer.Typer(help="Rule files (预警规则).", no_args_is_help=True)
cli.add_typer(rules_cli, name="rules")
cli.add_typer(audit_cli, name="audit")
aggregates_cli = typer.Typer(
    help="Rule aggregates: the running figures of every (rule, subject, window), derived from the events.",
    no_args_is_help=True,
)
cli.add_typer(aggregates_cli, name="aggregates")
console = Console(stderr=True)


class RoleChoice(StrEnum):
    source = "source"
    inspector = "inspector"
    admin = "admin"


def _fail(message: str) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}")
    return typer.Exit(code=1)


@cli.command()
def serve(
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    workers: Annotated[int, typer.Option(min=1, max=64, help="worker processes")] = 1,
    access_log: Annotated[bool, typer.Option(help="log every request")] = True,
) -> None:
    """Run the HTTP API with uvicorn."""
    if not access_log:
        # Workers build their app from the environment: tell them too.
        os.environ["SUPERVISION_ACCESS_LOG"] = "false"
        get_settings.cache_clear()
    settings = get_settings()
    configure_logging(settings.log_level, access_log=settings.access_log)
    own_metrics_dir = None
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Each worker writes its metrics here and /metrics adds them up, whichever worker answers.
        own_metrics_dir = tempfile.mkdtemp(prefix="supervision-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = own_metrics_dir
    own_limits_dir = None
    if workers > 1 and settings.rate_limit_enabled and settings.redis_url is None and settings.rate_limit_file is None:
        # The workers count rate limits together in a file here (app/ratelimit.py), not each its own.
        own_limits_dir = tempfile.mkdtemp(prefix="supervision-ratelimit-")
        os.environ["SUPERVISION_RATE_LIMIT_FILE"] = str(Path(own_limits_dir) / "counters.db")
    try:
        uvicorn.run(
            "app.main:app_factory",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_config=None,
            access_log=settings.access_log,
            timeout_graceful_shutdown=10,
        )
    finally:
        if own_metrics_dir is not None:
            shutil.rmtree(own_metrics_dir, ignore_errors=True)
        if own_limits_dir is not None:
            shutil.rmtree(own_limits_dir, ignore_errors=True)


@cli.command()
def migrate() -> None:
    """Upgrade the database schema to the latest migration (alembic upgrade head)."""
    settings = get_settings()
    upgrade_head(settings.database_url)
    typer.echo("database is at the latest migration")


@keys_cli.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="the key's name; for a source key, the events' source")],
    role: Annotated[RoleChoice, typer.Option(help="source, inspector or admin")],
    unit: Annotated[str | None, typer.Option(help="limit an inspector key to this unit and those below")] = None,
) -> None:
    """Create a key and print it (alone, on the last line). Only its hash is stored."""
    db = Database(get_settings())
    try:
        with db.session(write=True) as session:
            created = auth_service.create_key(
                session, name=name, role=Role(role.value), unit_id=unit, actor=f"cli:{_user()}"
            )
            key_id = created.key.id
    except AppError as exc:
        raise _fail(exc.detail) from None
    finally:
        db.dispose()
    typer.echo(f"created key {key_id} named {name!r} with role {role.value}; it is shown only this once:")
    typer.echo(created.secret)


@keys_cli.command("list")
def keys_list(all_: Annotated[bool, typer.Option("--all", help="include revoked keys")] = False) -> None:
    """List keys (never their secrets)."""
    db = Database(get_settings())
    try:
        with db.session() as session:
            keys = auth_service.list_keys(session, include_revoked=all_)
    finally:
        db.dispose()
    header = ("id", "name", "role", "unit", "prefix", "created", "revoked")
    rows = [
        (
            str(key.id),
            key.name,
            key.role,
            key.unit_id or "",
            key.prefix + "…",
            key.created_at.isoformat(timespec="seconds"),
            key.revoked_at.isoformat(timespec="seconds") if key.revoked_at else "",
        )
        for key in keys
    ]
    if not sys.stdout.isatty():
        # Piped into a script: whole values, one key a line, tab-separated.
        for row in (header, *rows):
            typer.echo("\t".join(row))
        return
    table = Table(*header)
    for row in rows:
        table.add_row(*row)
    Console().print(table)


@keys_cli.command("revoke")
def keys_revoke(key_id: Annotated[int, typer.Argument(help="the key's id, from `keys list`")]) -> None:
    """Revoke a key: requests with it are refused (401) from now on."""
    db = Database(get_settings())
    try:
        with db.session(write=True) as session:
            key = auth_service.revoke_key(session, key_id=key_id, actor=f"cli:{_user()}")
            name = key.name
    except AppError as exc:
        raise _fail(exc.detail) from None
    finally:
        db.dispose()
    typer.echo(f"revoked key {key_id} ({name})")


@rules_cli.command("check")
def rules_check(
    directory: Annotated[
        Path | None, typer.Argument(help="folder of rule files (default: SUPERVISION_RULES_DIR, else rules/)")
    ] = None,
) -> None:
    """Validate every rule file in a folder; exit 1 naming each problem (file, rule, field)."""
    from app.rules.loader import RuleFileError, load_rules, rule_files

    folder = directory if directory is not None else get_settings().rules_dir
    try:
        rules = load_rules(folder)
    except RuleFileError as exc:
        for problem in exc.problems:
            console.print(f"[red]error:[/red] {problem}", highlight=False, markup=True)
        raise typer.Exit(code=1) from None
    typer.echo(f"{len(rules)} rules in {len(rule_files(folder))} files under {folder}: all valid")


@cli.command()
def demo(
    seed: Annotated[int, typer.Option(help="the same seed gives the same city and month")] = 7,
    days: Annotated[int, typer.Option(min=1, max=366, help="days of business from 2026-10-01")] = 30,
    scale: Annotated[float, typer.Option(min=0.0, max=10.0, help="normal volume (1.0 ≈ 100k events)")] = 1.0,
    force: Annotated[bool, typer.Option(help="post again even if the month is already stored")] = False,
) -> None:
    """Build the demo detachment, post a month of its business with planted stories; its inspectors act on it."""
    from app.alerts.evaluate import Evaluator
    from app.demo.load import load_demo

    settings = get_settings()
    rules = _rules_or_fail(settings.rules_dir)
    db = Database(settings)
    try:
        with Progress(
            TextColumn("[bold]posting demo events"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
        ) as progress:
            task = progress.add_task("events", total=None)

            def advance(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            summary = load_demo(
                db,
                seed=seed,
                days=days,
                scale=scale,
                on_progress=advance,
                force=force,
                evaluator=Evaluator(rules, settings.zone),
                inspectors=True,
            )
    except AppError as exc:
        # Demo ids do not carry the seed: another seed's month in the same database conflicts.
        raise _fail(f"{exc.detail} (does this database hold a demo month of another seed? use a fresh one)") from None
    finally:
        db.dispose()
    out = Console()
    if summary.already_loaded:
        out.print(f"the demo month (seed {seed}) is already stored: {summary.events} events; nothing posted")
    else:
        rate = summary.events / summary.seconds if summary.seconds else 0.0
        out.print(
            f"posted {summary.events} events ({summary.new} new, {summary.duplicates} duplicates) "
            f"and {summary.units} org units in {summary.seconds:.1f} s ({rate:,.0f} events/s)"
        )
    domains = Table("domain 业务类别", "events", title="events by domain")
    for domain, count in sorted(summary.by_domain.items()):
        domains.add_row(domain, f"{count:,}")
    out.print(domains)
    stories = Table("story", "预警故事", "subject", "day", title="planted risk stories")
    for story in summary.stories:
        stories.add_row(story.label_en, story.label_zh, f"{story.subject_type} {story.subject_id}", str(story.day))
    out.print(stories)
    if summary.inspected.acts:
        acts = Table("when (local)", "what the demo's inspectors did", title="inspectors' moves")
        for at, what in summary.inspected.acts:
            acts.add_row(f"{at:%Y-%m-%d %H:%M}", what)
        out.print(acts)


def _rules_or_fail(folder: Path) -> RuleSet:
    from app.rules.loader import RuleFileError, load_rules

    try:
        return load_rules(folder)
    except RuleFileError as exc:
        for problem in exc.problems:
            console.print(f"[red]error:[/red] {problem}", highlight=False, markup=True)
        raise typer.Exit(code=1) from None


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container's arbitrary uid)
        return str(os.getuid())


def _parse_time(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise _fail(f"--{name}: {value!r} is not an RFC 3339 time") from None
    if parsed.tzinfo is None:
        raise _fail(f"--{name}: {value!r} has no UTC offset (e.g. 2026-10-01T00:00:00+08:00)")
    return parsed


@cli.command()
def scan(
    time_from: Annotated[str | None, typer.Option("--from", help="first instant, RFC 3339 with an offset")] = None,
    time_to: Annotated[str | None, typer.Option("--to", help="end (exclusive), RFC 3339 with an offset")] = None,
) -> None:
    """Evaluate every rule over every window holding stored events in the range (default: all)."""
    from app.scans.service import run_scan

    start, end = _parse_time(time_from, "from"), _parse_time(time_to, "to")
    if start is not None and end is not None and end <= start:
        raise _fail("--to must be after --from")
    settings = get_settings()
    rules = _rules_or_fail(settings.rules_dir)
    db = Database(settings)
    try:
        result = run_scan(
            db,
            rules,
            settings.zone,
            trigger="cli",
            actor=f"cli:{_user()}",
            time_from=start,
            time_to=end,
            progress=lambda line: console.print(line, highlight=False, markup=False),
        )
    finally:
        db.dispose()
    typer.echo(
        f"scan {result.id} done in {result.duration_ms} ms: {result.rules} rules, {result.events} events, "
        f"{result.windows} windows; alerts raised {result.alerts_raised}, updated {result.alerts_updated}, "
        f"cleared {result.alerts_cleared}; breakers tripped {result.breakers_tripped}; "
        f"aggregate windows repaired {result.windows_repaired}"
    )


@aggregates_cli.command("rebuild")
def aggregates_rebuild(
    rule: Annotated[list[str] | None, typer.Option("--rule", help="only this rule (repeatable); default: all")] = None,
) -> None:
    """Rebuild rules' aggregates (the running figures of every window) from the stored events.

    Ingest of events the rebuilt rule watches waits while its rule is rebuilt (on PostgreSQL, for that rule
    only; on SQLite every write waits), then adds to the rebuilt figures. A scan reports drift without this.
    """
    from app.rules.aggregates import build

    settings = get_settings()
    rules = _rules_or_fail(settings.rules_dir)
    chosen = list(rules) if not rule else []
    for rule_id in rule or []:
        found = rules.get(rule_id)
        if found is None:
            raise _fail(f"--rule {rule_id}: no such rule in {settings.rules_dir}")
        chosen.append(found)
    db = Database(settings)
    try:
        for each in chosen:
            made = build(db, each, settings.zone, force=True)
            assert made is not None
            typer.echo(f"{each.id}: {made.windows} windows in {made.duration_ms} ms")
    finally:
        db.dispose()


def main() -> None:
    cli()
