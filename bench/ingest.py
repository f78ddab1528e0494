"""Ingest benchmark: how fast a real server stores events, next to a raw-insert baseline.

Run from the project root with the virtualenv active (only 127.0.0.1 is ever contacted):

    python bench/ingest.py --database both
    python bench/ingest.py --database postgresql --events 4000 --concurrency 16 \\
        --batch-size 500 --batch-events 50000 --workers 2 --out bench/results/ingest-{db}.json

For each database it makes a fresh one (a temp SQLite file, or a new PostgreSQL database on
127.0.0.1:5432, dropped at the end), runs `supervision migrate`, starts `supervision serve` on a free
loopback port, creates a source key, and measures:

1. single: distinct events posted one per `POST /v1/events` by C concurrent keep-alive clients, after
   an unmeasured warm-up: events/s and per-request latency (p50/p95/p99/max, ms);
2. batch: `POST /v1/events/batch` of B events each from a few concurrent clients: events/s, p50/p99;
3. raw: the batch phase's rows, built by `app.events.service._row`, inserted straight into the same
   (emptied) table with SQLAlchemy Core executemany, 500 rows per transaction: the floor to compare with.

It prints a table with PASS/MISS per target and writes the figures as JSON (`{db}` in --out is the
database name). Any unexpected answer (a non-2xx, a duplicate, a missing row) exits 1; a missed
target does not. The client shares the machine's CPUs with the server, so every request body is
built as bytes before the clock starts; `client cpu` and `box cpu` in the table show that share.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql
from sqlalchemy import func, insert, select, text

from app.config import Settings
from app.db import Database, utcnow
from app.events import service
from app.events.models import Event
from app.events.schemas import EventIn
from app.units import service as unit_service

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
RAW_SOURCE = "bench-raw"
RAW_CHUNK = 500
START = datetime(2026, 11, 21, 8, 0, tzinfo=timezone(timedelta(hours=8)))
VEHICLE_TYPES = ("car", "new_energy", "motorcycle", "trailer", "truck", "other")
KINDS = ("police", "police", "police", "auxiliary", "staff")
# (database, phase, figure, at least?, bound): the targets on a 2-core machine.
TARGETS = (
    ("postgresql", "batch", "events_per_s", True, 5000.0),
    ("postgresql", "single", "events_per_s", True, 400.0),
    ("postgresql", "single", "p99_ms", False, 100.0),
    ("sqlite", "batch", "events_per_s", True, 3000.0),
)
LOG_PROBLEMS = ("traceback", "database is locked", "deadlock", '"error"', '"critical"', "exception")


class BenchError(RuntimeError):
    """Something the server must never do under load (a non-2xx, a lost event): the run fails."""


@dataclass
class Phase:
    name: str
    events: int
    requests: int
    seconds: float
    events_per_s: float
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    non_2xx: int = 0
    client_cpu_pct: float | None = None
    machine_cpu_pct: float | None = None


def make_event(rng: random.Random, tag: str, index: int) -> dict[str, Any]:
    """A valid vehicle registration: ~200 operators in ~20 units, Hunan plates like 湘J12345."""
    op = rng.randrange(200)
    kind = KINDS[op % len(KINDS)]
    operator: dict[str, Any] = {"id": f"P{1000 + op}", "kind": kind, "unit": f"ZS{op % 20 + 1:02d}-CW"}
    if kind == "auxiliary":
        operator["responsible_officer"] = f"P{1000 + op - 3}"  # a police officer (op % 5 == 0)
    plate = "湘" + rng.choice("ABCDEFGHJKLMNU") + "".join(rng.choices("0123456789", k=5))
    return {
        "source_event_id": f"VR-{tag}-{index:07d}",
        "domain": "vehicle_registration",
        "action": "register",
        "occurred_at": (START + timedelta(seconds=7 * index)).isoformat(),
        "operator": operator,
        "business_unit": {"id": f"IS-{rng.randrange(30) + 1:02d}", "kind": "inspection_station"},
        "agent_id": f"AG-{rng.randrange(100) + 1:03d}",
        "object_ref": plate,
        "attributes": {"vehicle_type": rng.choice(VEHICLE_TYPES)},
    }


def encode(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list, in ms."""
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 1))))
    return ordered[rank - 1] * 1000


def cpu_jiffies() -> tuple[int, int]:
    """(busy, total) CPU time of the whole machine so far, from /proc/stat; (0, 0) elsewhere."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return 0, 0
    return sum(values) - values[3] - values[4], sum(values)


class Meter:
    """Wall time, this process's CPU share and the whole machine's CPU use over a block."""

    def __enter__(self) -> Meter:
        self.jiffies = cpu_jiffies()
        self.cpu = time.process_time()
        self.started = time.perf_counter()
        return self

    def __exit__(self, *_: object) -> None:
        self.seconds = time.perf_counter() - self.started
        self.client_cpu_pct = round(100 * (time.process_time() - self.cpu) / self.seconds, 1)
        busy, total = (now - before for now, before in zip(cpu_jiffies(), self.jiffies, strict=True))
        self.machine_cpu_pct = round(100 * busy / total, 1) if total else None


async def drive(
    base: str,
    key: str,
    path: str,
    bodies: list[bytes],
    *,
    concurrency: int,
    expect: int,
    check: Callable[[int, httpx.Response], str | None] | None = None,
    timeout_s: float = 900.0,
) -> tuple[list[float], Counter[int], list[str], Meter]:
    """POST every body once from `concurrency` keep-alive clients; per-request wall times in seconds."""
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    problems: list[str] = []
    pending = iter(range(len(bodies)))  # shared by the clients: each body is sent exactly once

    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=60, trust_env=False) as client:

        async def one_client() -> None:
            for index in pending:
                started = time.perf_counter()
                response = await client.post(path, content=bodies[index])
                latencies.append(time.perf_counter() - started)
                statuses[response.status_code] += 1
                problem = None if response.status_code == expect else f"{response.status_code}: {response.text[:300]}"
                if problem is None and check is not None:
                    problem = check(index, response)
                if problem is not None and len(problems) < 5:
                    problems.append(problem)

        with Meter() as meter:
            await asyncio.wait_for(asyncio.gather(*(one_client() for _ in range(concurrency))), timeout_s)
    return latencies, statuses, problems, meter


def phase_of(
    name: str, events: int, run: tuple[list[float], Counter[int], list[str], Meter], expect: int
) -> Phase:
    latencies, statuses, problems, meter = run
    ordered = sorted(latencies)
    unexpected = sum(n for status, n in statuses.items() if status != expect)
    if unexpected or problems:
        raise BenchError(f"{name}: answers by status {dict(statuses)}; first problems: {problems}")
    return Phase(
        name=name,
        events=events,
        requests=len(ordered),
        seconds=round(meter.seconds, 3),
        events_per_s=round(events / meter.seconds, 1),
        p50_ms=round(percentile(ordered, 0.50), 2),
        p95_ms=round(percentile(ordered, 0.95), 2),
        p99_ms=round(percentile(ordered, 0.99), 2),
        max_ms=round(ordered[-1] * 1000, 2),
        non_2xx=sum(n for status, n in statuses.items() if not 200 <= status < 300),
        client_cpu_pct=meter.client_cpu_pct,
        machine_cpu_pct=meter.machine_cpu_pct,
    )


def batch_check(sizes: list[int]) -> Callable[[int, httpx.Response], str | None]:
    def check(index: int, response: httpx.Response) -> str | None:
        items = response.json()["items"]
        if len(items) != sizes[index] or any(item["duplicate"] for item in items):
            return f"batch {index}: {len(items)} items for {sizes[index]} events, or some answered as duplicates"
        return None

    return check


@contextlib.contextmanager
def fresh_database(kind: str, workdir: Path) -> Iterator[tuple[str, str]]:
    """(URL, display name) of a new empty database, removed afterwards."""
    if kind == "sqlite":
        path = workdir / "bench.db"
        yield f"sqlite:///{path}", str(path)
        return
    name = f"bench_{secrets.token_hex(6)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}", name
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def supervision(env: dict[str, str], *args: str) -> str:
    """Run the `supervision` CLI with `env`; its stdout (it fails loudly on a non-zero exit)."""
    exe = Path(sys.executable).with_name("supervision")
    command = [str(exe) if exe.exists() else shutil.which("supervision") or "supervision", *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise BenchError(f"`supervision {' '.join(args)}` failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def running_server(env: dict[str, str], workers: int, log_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A `supervision serve` process answering /readyz; stopped with SIGTERM (SIGKILL after 30 s)."""
    port = free_port()
    exe = Path(sys.executable).with_name("supervision")
    command = [str(exe) if exe.exists() else "supervision", "serve", "--host", "127.0.0.1", "--port", str(port)]
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [*command, "--workers", str(workers), "--no-access-log"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if server.poll() is not None:
                raise BenchError(f"the server exited with {server.returncode}: {log_path.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/readyz", timeout=2, trust_env=False).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise BenchError(f"the server was not ready within 60 s: {log_path.read_text()[-2000:]}")
            time.sleep(0.2)
        yield base, server
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)  # the session this script started for the server
            server.wait(timeout=10)


def raw_phase(url: str, events: list[dict[str, Any]]) -> tuple[Phase, dict[str, Any]]:
    """Empty the events table, then insert the rows the server would build, 500 per transaction."""
    db = Database(Settings(database_url=url))
    try:
        with db.engine.connect() as conn:
            stored = conn.scalar(select(func.count()).select_from(Event)) or 0
            if db.dialect == "postgresql":
                version = str(conn.scalar(text("SHOW server_version")))
            else:
                version = sqlite3.sqlite_version
        with db.session(write=True) as session:
            session.execute(text("TRUNCATE events" if db.dialect == "postgresql" else "DELETE FROM events"))
            unit_service.register_units(session, sorted({e["operator"]["unit"] for e in events}))
        started = time.perf_counter()
        received_at = utcnow()
        parsed = [EventIn.model_validate(event) for event in events]
        service.validate(parsed, batch=True)
        rows = [service._row(RAW_SOURCE, event, received_at) for event in parsed]
        prepare_s = time.perf_counter() - started
        writer = db.engine.execution_options(supervision_write=True)  # BEGIN IMMEDIATE on SQLite
        with Meter() as meter:
            for start in range(0, len(rows), RAW_CHUNK):
                with writer.begin() as conn:
                    conn.execute(insert(Event), rows[start : start + RAW_CHUNK])
        with db.engine.connect() as conn:
            inserted = conn.scalar(select(func.count()).where(Event.source == RAW_SOURCE))
        if inserted != len(rows):
            raise BenchError(f"raw: {inserted} rows stored for {len(rows)} inserted")
    finally:
        db.dispose()
    phase = Phase(
        name="raw",
        events=len(rows),
        requests=-(-len(rows) // RAW_CHUNK),
        seconds=round(meter.seconds, 3),
        events_per_s=round(len(rows) / meter.seconds, 1),
        client_cpu_pct=meter.client_cpu_pct,
        machine_cpu_pct=meter.machine_cpu_pct,
    )
    extra = {"rows_before_raw": stored, "database_version": version, "prepare_us_per_event": 1e6 * prepare_s / len(rows)}
    return phase, extra


def log_problems(log_path: Path) -> list[str]:
    lines = log_path.read_text(errors="replace").splitlines()
    return [line[:500] for line in lines if any(word in line.lower() for word in LOG_PROBLEMS)]


def bench_database(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    warmup = [encode(make_event(rng, "W", i)) for i in range(args.warmup)]
    singles = [encode(make_event(rng, "S", i)) for i in range(args.events)]
    batch_events = [make_event(rng, "B", i) for i in range(args.batch_events)]
    chunks = [batch_events[i : i + args.batch_size] for i in range(0, len(batch_events), args.batch_size)]
    batches = [encode({"events": chunk}) for chunk in chunks]

    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp, fresh_database(kind, Path(tmp)) as (url, name):
        env = {
            **os.environ,
            "SUPERVISION_DATABASE_URL": url,
            "SUPERVISION_BOOTSTRAP_ADMIN_KEY": secrets.token_urlsafe(24),
        }
        if args.workers > 1:  # as `supervision serve` does, but inside our temp dir so it is removed
            env["PROMETHEUS_MULTIPROC_DIR"] = str(Path(tmp, "metrics"))
            Path(tmp, "metrics").mkdir()
        print(f"[{kind}] database {name}: migrating, creating a source key, starting {args.workers} worker(s)")
        supervision(env, "migrate")
        key = supervision(env, "keys", "create", "--name", "bench-source", "--role", "source").splitlines()[-1].strip()
        log_path = Path(tmp, "server.log")
        with running_server(env, args.workers, log_path) as (base, server):
            print(f"[{kind}] server pid {server.pid} at {base}; warm-up {len(warmup)}, then {len(singles)} single POSTs")
            run = asyncio.run(drive(base, key, "/v1/events", warmup, concurrency=args.concurrency, expect=201))
            phase_of("warm-up", len(warmup), run, 201)
            run = asyncio.run(drive(base, key, "/v1/events", singles, concurrency=args.concurrency, expect=201))
            single = phase_of("single", len(singles), run, 201)
            print(f"[{kind}] {len(batches)} batches of {args.batch_size} from {args.batch_concurrency} clients")
            check = batch_check([len(chunk) for chunk in chunks])
            run = asyncio.run(
                drive(base, key, "/v1/events/batch", batches, concurrency=args.batch_concurrency, expect=200, check=check)
            )
            batch = phase_of("batch", len(batch_events), run, 200)
        problems = log_problems(log_path)
        print(f"[{kind}] server stopped (exit {server.returncode}); raw executemany baseline of {len(batch_events)}")
        raw, extra = raw_phase(url, batch_events)
        expected = len(warmup) + len(singles) + len(batch_events)
        if extra["rows_before_raw"] != expected:
            raise BenchError(f"the server stored {extra['rows_before_raw']} events for {expected} accepted")

    phases = {"single": single, "batch": batch, "raw": raw}
    targets = []
    for db, phase, figure, at_least, bound in TARGETS:
        if db == kind:
            value = getattr(phases[phase], figure)
            ok = value >= bound if at_least else value <= bound
            targets.append({"phase": phase, "figure": figure, "bound": ("≥ " if at_least else "≤ ") + f"{bound:g}"})
            targets[-1] |= {"value": value, "pass": ok}
    return {
        "benchmark": "ingest",
        "database": kind,
        "database_version": extra["database_version"],
        "server_workers": args.workers,
        "concurrency": args.concurrency,
        "batch_size": args.batch_size,
        "batch_concurrency": args.batch_concurrency,
        "warmup_events": len(warmup),
        "machine": {"nproc": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "phases": {name: asdict(phase) for name, phase in phases.items()},
        "ratios": {
            "batch_vs_raw": round(batch.events_per_s / raw.events_per_s, 3),
            "single_vs_raw": round(single.events_per_s / raw.events_per_s, 3),
        },
        "prepare_us_per_event": round(extra["prepare_us_per_event"], 1),
        "stored_events_checked": expected,
        "server_exit_code": server.returncode,
        "server_log_problems": problems[:20],
        "targets": targets,
    }


def fmt(value: float | None, width: int) -> str:
    return f"{'-' if value is None else f'{value:,.1f}':>{width}}"


def print_report(result: dict[str, Any]) -> None:
    m = result["machine"]
    print(
        f"\ningest — {result['database']} {result['database_version']}, server workers {result['server_workers']}, "
        f"single concurrency {result['concurrency']}, batch {result['batch_size']} × {result['batch_concurrency']} "
        f"clients, nproc {m['nproc']}, Python {m['python']}"
    )
    print(f"{'phase':<7}{'events':>8}{'reqs':>7}{'sec':>8}{'events/s':>10}", end="")
    print("".join(f"{h:>9}" for h in ("p50 ms", "p95 ms", "p99 ms", "max ms", "non-2xx", "cli cpu%", "box cpu%")))
    for p in result["phases"].values():
        print(f"{p['name']:<7}{p['events']:>8}{p['requests']:>7}{p['seconds']:>8.2f}{fmt(p['events_per_s'], 10)}", end="")
        figures = (p["p50_ms"], p["p95_ms"], p["p99_ms"], p["max_ms"], p["non_2xx"])
        print("".join(fmt(v, 9) for v in figures) + fmt(p["client_cpu_pct"], 9) + fmt(p["machine_cpu_pct"], 9))
    r = result["ratios"]
    print(f"batch_vs_raw {r['batch_vs_raw']:.3f}   single_vs_raw {r['single_vs_raw']:.3f}   ", end="")
    print(f"validate+_row {result['prepare_us_per_event']} µs/event (in-process)")
    for t in result["targets"]:
        print(f"  {'PASS' if t['pass'] else 'MISS'}  {t['phase']} {t['figure']} {t['bound']}: {t['value']:,}")
    for line in result["server_log_problems"][:5]:
        print(f"  server log: {line}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--events", type=int, default=4000, help="single POSTs measured")
    parser.add_argument("--warmup", type=int, default=200, help="single POSTs before measuring")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent clients for single POSTs")
    parser.add_argument("--batch-size", type=int, default=500, help="events per batch (at most 1000)")
    parser.add_argument("--batch-events", type=int, default=50_000, help="events posted in batches")
    parser.add_argument("--batch-concurrency", type=int, default=3, help="concurrent clients for batches")
    parser.add_argument("--workers", type=int, default=2, help="server worker processes")
    parser.add_argument("--seed", type=int, default=20261121)
    parser.add_argument("--out", default="bench/results/ingest-{db}.json", help="JSON output; {db} is replaced")
    args = parser.parse_args()
    if not (0 < args.batch_size <= 1000 and args.events > 0 and args.batch_events > 0 and args.concurrency > 0):
        parser.error("--batch-size must be 1..1000; --events, --batch-events and --concurrency positive")
    status = 0
    for kind in ("sqlite", "postgresql") if args.database == "both" else (args.database,):
        try:
            result = bench_database(kind, args)
        except (BenchError, httpx.HTTPError, TimeoutError) as exc:
            print(f"\n[{kind}] ERROR: {exc}", file=sys.stderr)
            status = 1
            continue
        print_report(result)
        out = Path(args.out.replace("{db}", kind))
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n")
        print(f"  written to {out}")
    return status


if __name__ == "__main__":
    sys.exit(main())
