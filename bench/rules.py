"""Rules benchmark: what the shipped rules cost at ingest, with a small and a big store, and a full scan.

Run from the project root with the virtualenv's Python (only 127.0.0.1 is ever contacted):

    .venv/bin/python bench/rules.py --database both                 # 1,000,000-event store
    .venv/bin/python bench/rules.py --database sqlite --quick       # smoke run: a 50,000-event store
    .venv/bin/python bench/rules.py --database postgresql --part scan --events 1000000

The events are the demo city's business (`app.demo.generate`, seed 7, scale 1: about 3,300 events a
weekday from some 660 operators, 5 domains, the planted risk stories included), so subjects and windows
hold what they would in production. T is 2026-10-01 00:00 (Asia/Shanghai): every measured stream is the
demo business from T on; every pre-filled store is the demo business just before T. The parts (--part):

ingest-rules  Two fresh databases, the same events posted to each: one served with the shipped rules
              (rules/, 18 rules), one with an empty rules folder (SUPERVISION_RULES_DIR). For each, a
              real `supervision serve --workers 2`, then as bench/ingest.py: single POSTs from 16
              keep-alive clients after a warm-up, then batches of 500 from 4 clients. Figures: events/s
              and latency per phase, and rules ÷ no-rules for batches and for singles (target ≥ 0.5).
stored        Two databases pre-filled in-process WITHOUT rules (app.events.service.ingest, 5,000 events
              a transaction, in time order; then VACUUM ANALYZE on PostgreSQL, a WAL checkpoint on
              SQLite): --small events (10,000) and --events events (1,000,000) ending at T. Each then
              served with the shipped rules and posted the batches of ingest-rules (the stream from T,
              so the windows each batch touches hold the same events in both runs, apart from the 7-day
              windows and the spike baselines that reach back before T). Figures: events/s of each,
              big ÷ small (target ≥ 0.8).
scan          On the big store (no alerts yet), in-process: the rules' aggregates built first as the service
              does when it starts (timed apart), then `app.scans.service.run_scan` with the shipped rules
              and the Settings zone, its check of every aggregate row against the events included, timed
              (target ≤ 10 s PostgreSQL, ≤ 30 s SQLite; no window may need repair), with the time
              of each rule; then again with its alerts in place (a rescan: measuring only). Beside it, a
              hand-written GROUP BY for vr-bulk-new-energy alone (register events of new-energy vehicles
              per operator per local hour), best of 3 after a warm-up read of the table; its groups at or
              above warn_at must be the rule's alerts. Figures: scan s, scan ÷ (rules × query), scan ÷ query.

With --part all the big store serves the scan first, then (alerts, breakers and scans deleted) the
stored part. Beside each ratio of events/s the table shows the same ratio by the server's CPU per event,
which other jobs on a shared machine sway less (informational, no target). CPU figures are % of one core,
as in bench/ingest.py. Results go to bench/results/rules-{db}.json (-quick and -<part> are added to the
name for --quick and single-part runs) and a table is printed. Any unexpected answer (a non-2xx, a
duplicate, a lost event) exits 1; a missed target does not.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import secrets
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx2 as httpx
import psycopg
from ingest import (  # bench/ingest.py (this folder is not a package: run this file as a script)
    LOG_PROBLEMS,
    PG_ADMIN_URL,
    BenchError,
    Endpoint,
    Meter,
    Phase,
    drive,
    encode,
    fresh_database,
    git_state,
    running_server,
    supervision,
)
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from app.config import Settings
from app.db import Database
from app.demo.city import City, build_city
from app.demo.generate import DEFAULT_SEED, DEMO_START, DemoEvent, generate
from app.demo.load import by_depth
from app.events import service
from app.events.schemas import EventIn
from app.rules.aggregates import ensure_built
from app.rules.loader import load_rules
from app.scans.service import run_scan
from app.units import service as unit_service

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_RULES = ROOT / "rules"
T = DEMO_START  # measured streams start here (local midnight); stores end here
PER_DAY = 3000  # demo events a day at scale 1, a little under the mean (weekends are quieter)
PREFILL_CHUNK = 5000  # events per pre-fill transaction
HISTORY_CHUNK_DAYS = 30  # days generated at once for a store (each holds its own planted stories)
HAND_RULE = "vr-bulk-new-energy"
HAND_RUNS = 3
QUICK = {"events": 50_000, "small": 5_000, "singles": 600, "warmup": 50, "batch_events": 10_000}
FULL = {"events": 1_000_000, "small": 10_000, "singles": 4000, "warmup": 200, "batch_events": 50_000}
# (part, figure, at least?, bound, database or None for both): the targets on a 2-core machine.
TARGETS = (
    ("ingest_rules", "batch_ratio", True, 0.5, None),
    ("ingest_rules", "single_ratio", True, 0.5, None),
    ("stored", "ratio", True, 0.8, None),
    ("scan", "seconds", False, 10.0, "postgresql"),
    ("scan", "seconds", False, 30.0, "sqlite"),
)
PARTS = ("ingest-rules", "stored", "scan", "all")


# --- events ------------------------------------------------------------------------------------------------------


def stream(city: City, seed: int, count: int) -> list[DemoEvent]:
    """The first `count` demo events from T, in time order."""
    days = math.ceil(count / PER_DAY) + 2
    while True:
        events = generate(city, seed=seed, start=T, days=days)
        if len(events) >= count:
            return events[:count]
        days *= 2


def history(city: City, seed: int, count: int) -> Iterator[list[DemoEvent]]:
    """The `count` demo events right before T, oldest first, in slices of whole days (the oldest one cut).

    The slices are generated twice (first only to count them) rather than held: a million events take
    more than a gigabyte as dicts, and generating them costs about 20 µs an event."""
    days = min(HISTORY_CHUNK_DAYS, math.ceil(count / PER_DAY) + 1)
    counts: list[int] = []
    while sum(counts) < count:
        counts.append(len(generate(city, seed=seed, start=T - timedelta(days=days * (len(counts) + 1)), days=days)))
    skip = sum(counts) - count
    for k in reversed(range(len(counts))):
        events = generate(city, seed=seed, start=T - timedelta(days=days * (k + 1)), days=days)
        yield events[skip:] if k == len(counts) - 1 else events


@dataclass(frozen=True)
class Workload:
    """Request bodies, built before any clock starts. Warm-up bodies come first in each list."""

    singles: list[bytes]
    warm_singles: int
    batches: list[bytes]
    warm_batches: int
    batch_sizes: list[int]

    @property
    def events(self) -> int:
        return len(self.singles) + sum(self.batch_sizes)

    @classmethod
    def of(cls, events: list[DemoEvent], args: argparse.Namespace, *, singles: bool) -> Workload:
        n_singles = args.warmup + args.singles if singles else 0
        rest = events[n_singles:]
        chunks = [rest[i : i + args.batch_size] for i in range(0, len(rest), args.batch_size)]
        return cls(
            singles=[encode(event.body) for event in events[:n_singles]],
            warm_singles=args.warmup if singles else 0,
            batches=[encode({"events": [event.body for event in chunk]}) for chunk in chunks],
            warm_batches=args.batch_concurrency,
            batch_sizes=[len(chunk) for chunk in chunks],
        )


# --- databases ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prepared:
    kind: str
    url: str
    name: str
    tmp: Path
    env: dict[str, str]
    key: str


@contextlib.contextmanager
def prepared(kind: str, label: str, city: City) -> Iterator[Prepared]:
    """A fresh migrated database (dropped afterwards) holding the demo city's units and a source key."""
    with (
        tempfile.TemporaryDirectory(prefix=f"bench-rules-{label}-") as tmp,
        fresh_database(kind, Path(tmp)) as (url, name),
    ):
        env = {**os.environ, "SUPERVISION_DATABASE_URL": url, "SUPERVISION_BOOTSTRAP_ADMIN_KEY": secrets.token_hex(16)}
        env.pop("SUPERVISION_SCAN_INTERVAL", None)  # no periodic scan competing with the measured load
        supervision(env, "migrate")
        key = supervision(env, "keys", "create", "--name", "bench-source", "--role", "source").splitlines()[-1].strip()
        db = Database(Settings(database_url=url))
        try:
            with db.session(write=True) as session:
                for unit in by_depth(city.units):
                    unit_service.put_unit(
                        session,
                        unit_id=unit.id,
                        parent=unit.parent,
                        label_zh=unit.label_zh,
                        label_en=unit.label_en,
                        actor="bench",
                    )
        finally:
            db.dispose()
        yield Prepared(kind, url, name, Path(tmp), env, key)


def database_version(kind: str) -> str:
    if kind == "sqlite":
        return f"SQLite {sqlite3.sqlite_version}"
    with psycopg.connect(PG_ADMIN_URL) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return f"PostgreSQL {row[0] if row else '?'}"


def settle(url: str) -> None:
    """After bulk writes: VACUUM ANALYZE on PostgreSQL (as autovacuum would, before the clock rather than
    during it); on SQLite, fold the WAL into the database file."""
    if url.startswith("sqlite"):
        path = make_url(url).database
        assert path is not None
        with contextlib.closing(sqlite3.connect(path)) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def scalar(url: str, query: str) -> int:
    db = Database(Settings(database_url=url))
    try:
        with db.engine.connect() as conn:
            return int(conn.scalar(text(query)) or 0)
    finally:
        db.dispose()


def prefill(to: Prepared, city: City, seed: int, count: int) -> dict[str, Any]:
    """Store the `count` demo events before T through `service.ingest`, without rules, in big transactions."""
    print(f"[{to.kind}] pre-filling {to.name} with {count:,} events (no rules, {PREFILL_CHUNK:,} a transaction)")
    db = Database(Settings(database_url=to.url))
    done, first, last = 0, None, None
    next_report = time.perf_counter() + 30
    try:
        with Meter() as meter:
            for events in history(city, seed, count):
                first = first or events[0].body["occurred_at"]
                last = events[-1].body["occurred_at"]
                for start in range(0, len(events), PREFILL_CHUNK):
                    by_source: defaultdict[str, list[EventIn]] = defaultdict(list)
                    for event in events[start : start + PREFILL_CHUNK]:
                        by_source[event.source].append(EventIn.model_validate(event.body))
                    with db.session(write=True) as session:
                        for source, parsed in sorted(by_source.items()):
                            service.validate(parsed, batch=True)
                            stored = service.ingest(session, source=source, events=parsed, batch=True)
                            if any(item.duplicate for item in stored):
                                raise BenchError(f"pre-fill: {source} events answered as duplicates")
                            done += len(stored)
                    if time.perf_counter() > next_report:
                        next_report += 30
                        print(f"[{to.kind}]   {done:,} of {count:,} stored")
        with Meter() as settling:
            settle(to.url)
    finally:
        db.dispose()
    stored_count = scalar(to.url, "SELECT count(*) FROM events")
    if stored_count != count or done != count:
        raise BenchError(f"pre-fill: {stored_count} events stored ({done} inserted) for {count}")
    print(f"[{to.kind}]   {count:,} events in {meter.seconds:.1f} s ({count / meter.seconds:,.0f}/s)")
    return {
        "events": count,
        "first_occurred_at": first,
        "last_occurred_at": last,
        "seconds": round(meter.seconds, 2),
        "events_per_s": round(count / meter.seconds, 1),
        "client_cpu_pct": meter.client_cpu_pct,
        "vacuum_analyze_or_checkpoint_s": round(settling.seconds, 2),
    }


# --- posting to a real server ------------------------------------------------------------------------------------


def serve_and_post(
    to: Prepared, rules_dir: Path, workload: Workload, args: argparse.Namespace, label: str
) -> dict[str, Any]:
    """Start the server on `to` with the rules of `rules_dir`, post the workload, stop it, check what it stored."""
    before = scalar(to.url, "SELECT count(*) FROM events")
    metrics = to.tmp / f"metrics-{label}"
    metrics.mkdir()
    env = {**to.env, "SUPERVISION_RULES_DIR": str(rules_dir), "PROMETHEUS_MULTIPROC_DIR": str(metrics)}
    log_path = to.tmp / f"server-{label}.log"
    phases: dict[str, Phase] = {}
    with running_server(env, args.workers, log_path) as (port, server):
        endpoint = Endpoint(port, to.key, server.pid)
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10, trust_env=False).json()
        rules_in_force = str(ready.get("rules"))  # "18 loaded": what the server took up, not what we meant
        if rules_in_force != f"{len(load_rules(rules_dir))} loaded":
            raise BenchError(f"{label}: the server has rules {rules_in_force!r}, not those of {rules_dir}")
        print(f"[{to.kind}] {label}: server on port {port}, rules {rules_in_force}")
        if workload.singles:
            measured = len(workload.singles) - workload.warm_singles
            print(f"[{to.kind}] {label}: {workload.warm_singles} warm-up, then {measured} single POSTs")
            phases["single"] = asyncio.run(
                drive(
                    endpoint,
                    "single",
                    workload.singles,
                    workload.warm_singles,
                    args.concurrency,
                    [1] * len(workload.singles),
                )
            )
        measured = len(workload.batches) - workload.warm_batches
        print(f"[{to.kind}] {label}: {workload.warm_batches} warm-up, then {measured} batches of {args.batch_size}")
        phases["batch"] = asyncio.run(
            drive(
                endpoint,
                "batch",
                workload.batches,
                workload.warm_batches,
                args.batch_concurrency,
                workload.batch_sizes,
            )
        )
    problems = [line[:500] for line in log_path.read_text(errors="replace").splitlines() if LOG_PROBLEMS.search(line)]
    stored = scalar(to.url, "SELECT count(*) FROM events") - before
    if stored != workload.events:
        raise BenchError(f"{label}: the server stored {stored} events for {workload.events} it accepted")
    return {
        "rules": rules_in_force,
        "phases": {name: asdict(phase) for name, phase in phases.items()},
        "alerts": scalar(to.url, "SELECT count(*) FROM alerts"),
        "open_breakers": scalar(to.url, "SELECT count(*) FROM breakers WHERE state = 'open'"),
        "server_exit_code": server.returncode,
        "server_log_problems": problems[:20],
    }


def ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


def cpu_ratio(run: dict[str, Any], baseline: dict[str, Any], phase: str) -> float | None:
    """The baseline's server CPU per event over the run's: the throughput ratio the server's own work
    allows, less swayed than events/s by other jobs on a shared machine (informational, no target)."""
    ours, theirs = (r["phases"][phase]["server_cpu_ms_per_event"] for r in (run, baseline))
    return ratio(theirs, ours) if ours and theirs else None


def part_ingest_rules(kind: str, city: City, events: list[DemoEvent], args: argparse.Namespace) -> dict[str, Any]:
    workload = Workload.of(events, args, singles=True)
    runs: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-rules-none-") as empty:
        for label, rules_dir in (("no_rules", Path(empty)), ("rules", SHIPPED_RULES)):
            with prepared(kind, label, city) as to:
                runs[label] = serve_and_post(to, rules_dir, workload, args, label)
    rate = {label: {p: run["phases"][p]["events_per_s"] for p in ("single", "batch")} for label, run in runs.items()}
    return {
        **runs,
        "events_posted": workload.events,
        "first_occurred_at": events[0].body["occurred_at"],
        "last_occurred_at": events[-1].body["occurred_at"],
        "batch_ratio": ratio(rate["rules"]["batch"], rate["no_rules"]["batch"]),
        "single_ratio": ratio(rate["rules"]["single"], rate["no_rules"]["single"]),
        "batch_cpu_ratio": cpu_ratio(runs["rules"], runs["no_rules"], "batch"),
        "single_cpu_ratio": cpu_ratio(runs["rules"], runs["no_rules"], "single"),
    }


# --- the scan ------------------------------------------------------------------------------------------------------


def hand_query(dialect: str, zone: ZoneInfo) -> tuple[str, dict[str, str]]:
    """vr-bulk-new-energy written by hand: register events of new-energy vehicles per operator per local hour."""
    where = "domain = 'vehicle_registration' AND action = 'register'"
    if dialect == "postgresql":
        return (
            "SELECT operator_id, date_trunc('hour', occurred_at AT TIME ZONE :zone) AS local_hour, count(*) AS n "
            f"FROM events WHERE {where} AND attributes ->> 'vehicle_type' = 'new_energy' "
            "GROUP BY operator_id, local_hour",
            {"zone": zone.key},
        )
    # SQLite stores naive UTC text; the zone's offset at T (Asia/Shanghai keeps no daylight saving).
    offset = datetime.combine(T, datetime.min.time(), zone).utcoffset() or timedelta()
    seconds = int(offset.total_seconds())
    shift = f"{seconds // 3600:+d} hours" if seconds % 3600 == 0 else f"{seconds:+d} seconds"
    return (
        "SELECT operator_id, strftime('%Y-%m-%d %H', occurred_at, :shift) AS local_hour, count(*) AS n "
        f"FROM events WHERE {where} AND json_extract(attributes, '$.vehicle_type') = 'new_energy' "
        "GROUP BY operator_id, local_hour",
        {"shift": shift},
    )


def part_scan(to: Prepared) -> dict[str, Any]:
    settings = Settings(database_url=to.url)
    rules = load_rules(SHIPPED_RULES)
    rule = rules.get(HAND_RULE)
    if rule is None:
        raise BenchError(f"the shipped rules have no {HAND_RULE}")
    db = Database(settings)
    try:
        with db.engine.connect() as conn:
            started = time.perf_counter()
            events = int(conn.scalar(text("SELECT count(*) FROM events WHERE attributes IS NOT NULL")) or 0)
            warm_s = time.perf_counter() - started
            if conn.scalar(text("SELECT count(*) FROM alerts")):
                raise BenchError("the scan's database already holds alerts")
        statement, params = hand_query(db.dialect, settings.zone)
        hand_s: list[float] = []
        groups: list[Any] = []
        for _ in range(HAND_RUNS):
            with db.engine.connect() as conn:
                started = time.perf_counter()
                groups = list(conn.execute(text(statement), params).all())
                hand_s.append(time.perf_counter() - started)
        findings = sum(1 for row in groups if row.n >= rule.warn_at)

        # The store was filled without rules: first build the rules' aggregates, as the service does when it
        # starts (a running service keeps them inline); the scan then checks them against the events.
        started = time.perf_counter()
        ensure_built(db, rules, settings.zone)
        build_s = time.perf_counter() - started
        print(f"[{to.kind}] aggregates of {len(rules)} rules built in {build_s:.2f} s")
        print(f"[{to.kind}] scan: {len(rules)} rules over {events:,} events (zone {settings.timezone})")
        marks: list[tuple[float, str]] = []
        with Meter() as meter:
            scan = run_scan(
                db,
                rules,
                settings.zone,
                trigger="bench",
                actor="bench/rules.py",
                progress=lambda line: marks.append((time.perf_counter(), line)),
            )
        per_rule: list[dict[str, Any]] = []
        previous = meter.marks[0]
        for at, line in marks:
            per_rule.append({"rule": line.split(":", 1)[0], "seconds": round(at - previous, 3), "progress": line})
            previous = at
        alerts_of_rule = scalar(to.url, f"SELECT count(*) FROM alerts WHERE rule_id = '{HAND_RULE}' AND NOT cleared")
        print(f"[{to.kind}] scan done in {meter.seconds:.2f} s; rescan with its alerts in place")
        with Meter() as again:
            rescan = run_scan(db, rules, settings.zone, trigger="bench", actor="bench/rules.py (rescan)")
    finally:
        db.dispose()
    best = min(hand_s)
    return {
        "events": events,
        "rules": len(rules),
        "seconds": round(meter.seconds, 3),
        "client_cpu_pct": meter.client_cpu_pct,
        "machine_cpu_pct": meter.machine_cpu_pct,
        "windows": scan.windows,
        "alerts_raised": scan.alerts_raised,
        "breakers_tripped": scan.breakers_tripped,
        "per_rule": sorted(per_rule, key=lambda r: -r["seconds"]),
        "aggregates_build_s": round(build_s, 3),
        "windows_repaired": scan.windows_repaired + rescan.windows_repaired,
        "rescan_seconds": round(again.seconds, 3),
        "rescan_changes": rescan.alerts_raised + rescan.alerts_updated + rescan.alerts_cleared,
        "warm_up_read_s": round(warm_s, 3),
        "hand_written": {
            "rule": HAND_RULE,
            "sql": statement,
            "params": params,
            "runs_s": [round(s, 4) for s in hand_s],
            "best_s": round(best, 4),
            "groups": len(groups),
            "groups_at_warn_at": findings,
            "alerts_of_rule_after_scan": alerts_of_rule,
            "agrees": findings == alerts_of_rule,
        },
        "scan_vs_rules_x_hand": ratio(meter.seconds, len(rules) * best),
        "scan_vs_hand": ratio(meter.seconds, best),
    }


def clear_findings(url: str) -> None:
    """Forget what a scan wrote, so that the store holds events only, as after the pre-fill."""
    db = Database(Settings(database_url=url))
    try:
        with db.session(write=True) as session:
            for table in ("breaker_changes", "breakers", "alerts", "scans"):
                session.execute(text(f"DELETE FROM {table}"))
    finally:
        db.dispose()
    settle(url)


def part_stored_and_scan(
    kind: str, city: City, events: list[DemoEvent], args: argparse.Namespace
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    workload = Workload.of(events, args, singles=False)
    stored: dict[str, Any] | None = None
    scan: dict[str, Any] | None = None
    runs: dict[str, Any] = {}
    if args.part in ("stored", "all"):
        with prepared(kind, "small", city) as to:
            runs["small"] = {"store": prefill(to, city, args.seed, args.small)}
            runs["small"].update(serve_and_post(to, SHIPPED_RULES, workload, args, "small"))
    with prepared(kind, "big", city) as to:
        store = prefill(to, city, args.seed, args.events)
        if args.part in ("scan", "all"):
            scan = {"store": store, **part_scan(to)}
            if args.part == "all":
                clear_findings(to.url)
        if args.part in ("stored", "all"):
            runs["big"] = {"store": store, **serve_and_post(to, SHIPPED_RULES, workload, args, "big")}
    if runs:
        rates = [runs[size]["phases"]["batch"]["events_per_s"] for size in ("big", "small")]
        stored = {
            **runs,
            "events_posted": workload.events,
            "ratio": ratio(*rates),
            "cpu_ratio": cpu_ratio(runs["big"], runs["small"], "batch"),
        }
    return stored, scan


# --- the run -------------------------------------------------------------------------------------------------------


def bench_database(kind: str, city: City, events: list[DemoEvent], args: argparse.Namespace) -> dict[str, Any]:
    with Meter() as idle:  # how busy the box is before we start: other people's jobs skew every figure
        time.sleep(2)
    started = time.perf_counter()
    result: dict[str, Any] = {
        "benchmark": "rules",
        "database": kind,
        "part": args.part,
        "quick": args.quick,
        "sizes": {name: getattr(args, name) for name in ("events", "small", "singles", "warmup", "batch_events")},
        "server_workers": args.workers,
        **{name: getattr(args, name) for name in ("concurrency", "batch_size", "batch_concurrency", "seed")},
        "stream_start": T.isoformat(),
        "machine": {
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "box_busy_before_start_pct": idle.machine_cpu_pct,
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "code": git_state(),
    }
    result["database_version"] = database_version(kind)
    if args.part in ("ingest-rules", "all"):
        result["ingest_rules"] = part_ingest_rules(kind, city, events, args)
    if args.part in ("stored", "scan", "all"):
        n_batched = args.batch_concurrency * args.batch_size + args.batch_events
        stored, scan = part_stored_and_scan(kind, city, events[:n_batched], args)
        if stored is not None:
            result["stored"] = stored
        if scan is not None:
            result["scan"] = scan
    result["total_seconds"] = round(time.perf_counter() - started, 1)
    targets = []
    for part, figure, at_least, bound, db in TARGETS:
        if part not in result or db not in (None, kind):
            continue
        value = result[part][figure]
        ok = value is not None and (value >= bound if at_least else value <= bound)
        name = f"{part} {figure} {'≥' if at_least else '≤'} {bound:g}"
        targets.append({"target": name, "value": value, "pass": ok})
    result["targets"] = targets
    return result


def _cell(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def print_phases(rows: list[tuple[str, dict[str, Any]]]) -> None:
    columns = ("events/s", "p50 ms", "p99 ms", "max ms", "server%", "box%", "srv ms/ev")
    keys = ("events_per_s", "p50_ms", "p99_ms", "max_ms", "server_cpu_pct", "machine_cpu_pct")
    print(f"  {'run':<18}{'events':>8}{'sec':>7}" + "".join(f"{c:>10}" for c in columns) + "  conns/worker")
    for label, p in rows:
        cells = "".join(f"{_cell(p[k]):>10}" for k in keys) + f"{_cell(p['server_cpu_ms_per_event'], 3):>10}"
        spread = "+".join(map(str, p["connections_per_worker"])) or "-"
        print(f"  {label:<18}{p['events']:>8,}{p['seconds']:>7.1f}{cells}  {spread:>12}")


def unbalanced(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(part, run, phase) whose keep-alive connections all landed on one of several server workers."""
    found = []
    for part in ("ingest_rules", "stored"):
        for run_name, run in r.get(part, {}).items():
            if isinstance(run, dict) and "phases" in run:
                for phase, p in run["phases"].items():
                    if r["server_workers"] > 1 and len(p["connections_per_worker"]) == 1:
                        found.append((part, run_name, phase))
    return found


def print_report(r: dict[str, Any]) -> None:
    print(
        f"\nrules — {r['database_version']}, {r['server_workers']} server workers, code {r['code']}, "
        f"cpu_count {r['machine']['cpu_count']}, Python {r['machine']['python']}, "
        f"box busy before start {r['box_busy_before_start_pct']}%, {r['total_seconds']} s in all"
        + (" [quick]" if r["quick"] else "")
    )
    if "ingest_rules" in r:
        ir = r["ingest_rules"]
        print(f"1. ingest, shipped rules vs none ({ir['events_posted']:,} demo events into a fresh database each)")
        runs = [(run, phase) for run in ("no_rules", "rules") for phase in ("single", "batch")]
        print_phases([(f"{run} {phase}", ir[run]["phases"][phase]) for run, phase in runs])
        print(
            f"  rules ÷ no rules: batches {_cell(ir['batch_ratio'], 3)}, singles {_cell(ir['single_ratio'], 3)} "
            f"(by server CPU per event: {_cell(ir['batch_cpu_ratio'], 3)}, {_cell(ir['single_cpu_ratio'], 3)}); "
            f"with rules {ir['rules']['alerts']} alerts, {ir['rules']['open_breakers']} open breakers"
        )
    if "stored" in r:
        st = r["stored"]
        print(f"2. ingest (batches, shipped rules) with a small vs a big store ({st['events_posted']:,} events posted)")
        print_phases([(f"{st[s]['store']['events']:,} stored", st[s]["phases"]["batch"]) for s in ("small", "big")])
        big = st["big"]["store"]
        print(
            f"  big ÷ small {_cell(st['ratio'], 3)} (by server CPU per event {_cell(st['cpu_ratio'], 3)}); "
            f"pre-fill of the big store {big['seconds']} s "
            f"({_cell(big['events_per_s'], 0)} events/s, {big['first_occurred_at']} .. {big['last_occurred_at']})"
        )
    if "scan" in r:
        sc, hw = r["scan"], r["scan"]["hand_written"]
        print(
            f"3. full scan of {sc['events']:,} events, {sc['rules']} rules: {sc['seconds']:.2f} s "
            f"({sc['windows']:,} windows, {sc['alerts_raised']} alerts raised); rescan {sc['rescan_seconds']:.2f} s "
            f"({sc['rescan_changes']} alerts changed: must be 0); aggregates built first in "
            f"{sc.get('aggregates_build_s', 0):.2f} s, windows repaired {sc.get('windows_repaired', 0)} (must be 0)"
        )
        print("  slowest rules: " + ", ".join(f"{p['rule']} {p['seconds']:.2f} s" for p in sc["per_rule"][:5]))
        print(
            f"  hand-written {hw['rule']} GROUP BY: best {hw['best_s']:.3f} s of {hw['runs_s']}, {hw['groups']:,} "
            f"groups, {hw['groups_at_warn_at']} at warn_at vs {hw['alerts_of_rule_after_scan']} alerts "
            f"({'agree' if hw['agrees'] else 'DISAGREE'})"
        )
        print(
            f"  scan ÷ ({sc['rules']} × hand-written) {_cell(sc['scan_vs_rules_x_hand'], 2)}, "
            f"scan ÷ hand-written {_cell(sc['scan_vs_hand'], 1)}"
        )
    for t in r["targets"]:
        print(f"  {'PASS' if t['pass'] else 'MISS'}  {t['target']}: {_cell(t['value'], 3)}")
    for part, run_name, phase in unbalanced(r):
        print(
            f"  note: {part} {run_name} {phase}: every connection went to one server worker, so that run had one"
            " core; its events/s (and the ratios using it) understate the server: compare by CPU per event, or rerun"
        )
    for part in ("ingest_rules", "stored"):
        for run in r.get(part, {}).values():
            if isinstance(run, dict):
                for line in run.get("server_log_problems", [])[:3]:
                    print(f"  server log: {line}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--part", choices=PARTS, default="all")
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run (50k-event big store)")
    parser.add_argument("--events", type=int, help="events in the big store (default 1,000,000; quick 50,000)")
    parser.add_argument("--small", type=int, help="events in the small store (default 10,000; quick 5,000)")
    parser.add_argument("--singles", type=int, help="single POSTs measured (default 4000; quick 600)")
    parser.add_argument("--warmup", type=int, help="single POSTs before measuring (default 200; quick 50)")
    parser.add_argument("--batch-events", type=int, help="events posted in batches (default 50,000; quick 10,000)")
    parser.add_argument("--batch-size", type=int, default=500, help="events per batch (at most 1000)")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent clients for single POSTs")
    parser.add_argument("--batch-concurrency", type=int, default=4, help="concurrent clients for batches")
    parser.add_argument("--workers", type=int, default=2, help="server worker processes")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="the demo city's seed")
    parser.add_argument("--out", default="bench/results/rules-{db}.json", help="JSON output; {db} is replaced")
    args = parser.parse_args()
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if not 0 < args.batch_size <= 1000:
        parser.error("--batch-size must be 1..1000")
    if min(args.events, args.small, args.singles, args.batch_events, args.concurrency, args.workers) <= 0:
        parser.error("sizes, --concurrency and --workers must be positive")

    city = build_city(args.seed)
    count = args.warmup + args.singles + args.batch_concurrency * args.batch_size + args.batch_events
    started = time.perf_counter()
    events = stream(city, args.seed, count)
    print(f"{len(events):,} demo events from {T} built in {time.perf_counter() - started:.1f} s")
    status = 0
    for kind in ("sqlite", "postgresql") if args.database == "both" else (args.database,):
        try:
            result = bench_database(kind, city, events, args)
        except (
            BenchError,
            httpx.HTTPError,
            TimeoutError,
            subprocess.SubprocessError,
            psycopg.Error,
            SQLAlchemyError,
        ) as exc:
            print(f"\n[{kind}] ERROR: {type(exc).__name__}: {exc}", file=sys.stderr)
            status = 1
            continue
        print_report(result)
        suffix = ("-quick" if args.quick else "") + ("" if args.part == "all" else f"-{args.part}")
        out = Path(args.out.replace("{db}", kind + suffix))
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, ensure_ascii=False, indent=2, default=str) + "\n")
        print(f"  written to {out}")
    return status


if __name__ == "__main__":
    sys.exit(main())
