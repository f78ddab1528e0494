"""Ingest benchmark: how fast a real server stores events, next to a raw-insert baseline.

Run from the project root with the virtualenv active (only 127.0.0.1 is ever contacted):

    python bench/ingest.py --database both
    python bench/ingest.py --database postgresql --events 4000 --concurrency 16 --batch-size 500 \\
        --batch-events 50000 --batch-concurrency 4 --workers 2 --out bench/results/ingest-{db}.json

For each database it makes a fresh one (a temp SQLite file, or a new PostgreSQL database on
127.0.0.1:5432, dropped at the end), runs `supervision migrate`, starts `supervision serve` on a free
loopback port, creates a source key, and measures:

1. single: distinct events, one per `POST /v1/events`, from C concurrent keep-alive clients after an
   unmeasured warm-up: events/s and per-request wall time (p50/p95/p99/max, ms);
2. batch: `POST /v1/events/batch` with B events each from a few concurrent clients: events/s, p50/p99;
3. raw: the batch phase's rows, built by `app.events.service._row`, inserted straight into the same
   (emptied) table with SQLAlchemy Core executemany, 500 rows per transaction: the floor to compare with.

It prints a table with PASS/MISS per target and writes the figures as JSON (`{db}` in --out becomes
the database). Any unexpected answer (a non-2xx, a duplicate, a lost row) exits 1; a missed target
does not. The client shares the CPUs with the server and the database, so request bodies are built as
bytes before the clock starts, and the table shows CPU use as % of one core (200% = both of 2 cores):
this client, the server's processes, and the whole box (other people's jobs included), plus the server's
CPU milliseconds per event and how the keep-alive connections were spread over the server's workers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import random
import re
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx2 as httpx
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
RAW_SOURCE, RAW_CHUNK = "bench-raw", 500
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
TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
SUPERVISION = str(Path(sys.executable).with_name("supervision"))  # the venv's CLI, beside this interpreter
PHASE_TIMEOUT_S, STAGGER_S = 900.0, 0.05
# Server log lines worth reporting even when every answer was fine.
LOG_PROBLEMS = re.compile(r"traceback|database is locked|deadlock|\"(error|critical)\"|exception", re.IGNORECASE)


class BenchError(RuntimeError):
    """Something the server must never do under load (a non-2xx, a lost event): the run fails."""


@dataclass
class Phase:
    name: str
    events: int
    requests: int
    seconds: float
    events_per_s: float
    client_cpu_pct: float | None
    server_cpu_pct: float | None
    machine_cpu_pct: float | None
    server_cpu_ms_per_event: float | None
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    answers: dict[int, int] = field(default_factory=dict)
    connections_per_worker: list[int] = field(default_factory=list)

    @classmethod
    def of(cls, name: str, events: int, requests: int, meter: Meter, latencies: list[float] | None = None) -> Phase:
        ordered = sorted(latencies or [])
        pcts = [round(percentile(ordered, q), 2) for q in (0.5, 0.95, 0.99, 1.0)] if ordered else [None] * 4
        per_event = (
            None if meter.server_cpu_pct is None else round(meter.server_cpu_pct * 10 * meter.seconds / events, 3)
        )
        return cls(
            name, events, requests, round(meter.seconds, 3), round(events / meter.seconds, 1),
            meter.client_cpu_pct, meter.server_cpu_pct, meter.machine_cpu_pct, per_event, *pcts,
        )  # fmt: skip


def make_event(rng: random.Random, tag: str, index: int) -> dict[str, Any]:
    """A valid vehicle registration: ~200 operators in ~20 units, Hunan plates like 湘J12345."""
    op = rng.randrange(200)
    kind = KINDS[op % len(KINDS)]
    operator: dict[str, Any] = {"id": f"P{1000 + op}", "kind": kind, "unit": f"ZS{op % 20 + 1:02d}-CW"}
    if kind == "auxiliary":
        operator["responsible_officer"] = f"P{1000 + op - 3}"  # a police officer (op % 5 == 0)
    return {
        "source_event_id": f"VR-{tag}-{index:07d}",
        "domain": "vehicle_registration",
        "action": "register",
        "occurred_at": (START + timedelta(seconds=7 * index)).isoformat(),
        "operator": operator,
        "business_unit": {"id": f"IS-{rng.randrange(30) + 1:02d}", "kind": "inspection_station"},
        "agent_id": f"AG-{rng.randrange(100) + 1:03d}",
        "object_ref": "湘" + rng.choice("ABCDEFGHJKLMNU") + "".join(rng.choices("0123456789", k=5)),
        "attributes": {"vehicle_type": rng.choice(VEHICLE_TYPES)},
    }


def encode(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list of seconds, in ms."""
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] * 1000


def machine_cpu() -> tuple[float, float]:
    """(busy CPU seconds of all cores, wall seconds) since boot, from /proc/stat; (0, 0) elsewhere."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return 0.0, 0.0
    return (sum(values) - values[3] - values[4]) / TICKS, sum(values) / TICKS / (os.cpu_count() or 1)


def family(pid: int | None) -> list[int]:
    """`pid` and its descendants: the server and its worker processes."""
    found, pending = [], [pid] if pid else []
    while pending:
        found.append(pending.pop())
        with contextlib.suppress(OSError, ValueError):
            for task in Path(f"/proc/{found[-1]}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
    return found


def tree_cpu(pid: int | None) -> float:
    """CPU seconds used so far by the server process `pid` and its workers."""
    total = 0.0
    for member in family(pid):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / TICKS
    return total


def connections_per_worker(pid: int, port: int) -> list[int]:
    """Client connections each server process holds. Uvicorn's workers accept from one shared socket, and
    a few keep-alive clients often all land on one worker, which then caps throughput at one core."""
    sockets: set[str] = set()
    with contextlib.suppress(OSError):
        table = [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]]
        sockets = {f"socket:[{row[9]}]" for row in table if row[1].endswith(f":{port:04X}") and row[3] == "01"}
    counts = []
    for member in family(pid):
        with contextlib.suppress(OSError):
            counts.append(sum(os.readlink(fd) in sockets for fd in Path(f"/proc/{member}/fd").iterdir()))
    return sorted((n for n in counts if n), reverse=True)


def _sockets(pid: int, port: int) -> tuple[dict[int, list[int]], dict[int, int]]:
    """For the server `pid` on `port`: the client ports each of its processes holds a connection from, by
    process, with every process that listens on the port present (so a worker holding none shows up)."""
    clients: dict[str, int] = {}
    listening: set[str] = set()
    with contextlib.suppress(OSError):
        for row in (line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]):
            if row[1].endswith(f":{port:04X}"):
                if row[3] == "01":
                    clients[f"socket:[{row[9]}]"] = int(row[2].rsplit(":", 1)[1], 16)
                elif row[3] == "0A":
                    listening.add(f"socket:[{row[9]}]")
    held: dict[int, list[int]] = {}
    holder: dict[int, int] = {}
    for member in family(pid):
        links = []
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{member}/fd").iterdir():
                with contextlib.suppress(OSError):
                    links.append(os.readlink(fd))
        ports = [clients[link] for link in links if link in clients]
        if ports or (member != pid and any(link in listening for link in links)):
            held[member] = ports
            holder.update((client, member) for client in ports)
    return held, holder


async def spread_evenly(to: Endpoint, connections: list[KeepAlive], attempts: int = 200) -> None:
    """Reopen connections until each worker holds its share (differing by one at most), while the server is
    idle. Uvicorn's workers accept from one shared socket, and a busy worker wins that race (it is already
    running when a connection arrives): a run would otherwise measure how the clients happened to land,
    one worker holding 15 of 16 and the other idle. Done alike for ours and the peer."""
    for _ in range(attempts):
        held, holder = _sockets(to.server_pid, to.port)
        if len(held) < 2:
            return  # one process serves every connection
        counts = {member: len(ports) for member, ports in held.items()}
        if max(counts.values()) - min(counts.values()) <= 1:
            return
        heaviest = max(counts, key=counts.__getitem__)
        moved = next((c for c in reversed(connections) if holder.get(c.local_port) == heaviest), None)
        if moved is None:
            await asyncio.sleep(0.05)  # the table is a moment behind the sockets: look again
            continue
        moved.close()
        connections[connections.index(moved)] = await KeepAlive.open(to.port, to.key)
        await asyncio.sleep(0.02)


class Meter:
    """Wall time over a block, and CPU use in it as % of one core: this client, the server, the box."""

    def __init__(self, server_pid: int | None = None) -> None:
        self.server_pid = server_pid

    def __enter__(self) -> Meter:
        self.marks = (time.perf_counter(), time.process_time(), tree_cpu(self.server_pid), *machine_cpu())
        return self

    def __exit__(self, *_: object) -> None:
        now = (time.perf_counter(), time.process_time(), tree_cpu(self.server_pid), *machine_cpu())
        self.seconds, client, server, busy, wall = (a - b for a, b in zip(now, self.marks, strict=True))
        self.client_cpu_pct = round(100 * client / self.seconds, 1)
        self.server_cpu_pct = round(100 * server / self.seconds, 1) if self.server_pid else None
        self.machine_cpu_pct = round(100 * busy / wall, 1) if wall else None


@dataclass(frozen=True)
class Endpoint:
    port: int
    key: str
    server_pid: int


class KeepAlive:
    """A bare HTTP/1.1 keep-alive connection. The load generator shares two cores with the server, and
    a general-purpose client spent as much CPU per request as the server did; this one sends prebuilt
    bytes and reads Content-Length-framed answers, which is all uvicorn sends here."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes) -> None:
        self.reader, self.writer, self.head = reader, writer, head
        self.local_port: int = writer.get_extra_info("sockname")[1]

    @classmethod
    async def open(cls, port: int, key: str) -> KeepAlive:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        head = f"Host: 127.0.0.1:{port}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\n"
        return cls(reader, writer, head.encode())

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        request = b"POST %s HTTP/1.1\r\n%sContent-Length: %d\r\n\r\n" % (path.encode(), self.head, len(body))
        self.writer.write(request + body)
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 60)
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


async def drive(to: Endpoint, name: str, bodies: list[bytes], warm: int, concurrency: int, sizes: list[int]) -> Phase:
    """POST the first `warm` bodies (unmeasured), then the others (measured) over `concurrency` keep-alive
    connections. Warm-up clients start STAGGER_S apart, each with its own share, so that connections open
    while the others are busy, as independent clients' would: a burst of simultaneous connects is accepted
    whole by one uvicorn worker. Anything but a 201 (single) or a 200 with one new item per event (batch;
    `sizes` holds the events per body) fails the run."""
    path, expect = ("/v1/events/batch", 200) if name == "batch" else ("/v1/events", 201)
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    problems: list[str] = []

    async def send_all(connection: KeepAlive, indexes: Iterator[int]) -> None:
        for index in indexes:
            started = time.perf_counter()
            status, body = await connection.post(path, bodies[index])
            latencies.append(time.perf_counter() - started)
            statuses[status] += 1
            if status != expect:
                problems.append(f"{status}: {body[:300]!r}")
            elif expect == 200:
                items = json.loads(body)["items"]
                if len(items) != sizes[index] or any(item["duplicate"] for item in items):
                    problems.append(f"batch {index}: {len(items)} items, or some answered as duplicates")

    connections: list[KeepAlive] = []

    async def warm_client(indexes: Iterator[int], delay: float) -> None:
        await asyncio.sleep(delay)
        connection = await KeepAlive.open(to.port, to.key)
        connections.append(connection)
        await send_all(connection, indexes)

    try:
        shares = [iter(range(i, warm, concurrency)) for i in range(concurrency)]
        await asyncio.wait_for(asyncio.gather(*(warm_client(s, i * STAGGER_S) for i, s in enumerate(shares))), 300)
        await spread_evenly(to, connections)
        latencies.clear()
        pending = iter(range(warm, len(bodies)))  # shared by the clients: each body is sent exactly once
        with Meter(to.server_pid) as meter:
            await asyncio.wait_for(asyncio.gather(*(send_all(c, pending) for c in connections)), PHASE_TIMEOUT_S)
        spread = connections_per_worker(to.server_pid, to.port)
    finally:
        for connection in connections:
            connection.close()
    if problems:
        raise BenchError(f"{name}: answers by status {dict(statuses)}; first problems: {problems[:5]}")
    phase = Phase.of(name, sum(sizes[warm:]), len(latencies), meter, latencies)
    phase.answers, phase.connections_per_worker = dict(statuses), spread
    return phase


@contextlib.contextmanager
def fresh_database(kind: str, workdir: Path) -> Iterator[tuple[str, str]]:
    """(URL, name) of a new empty database, removed afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{workdir / 'bench.db'}", str(workdir / "bench.db")
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
    """Run the `supervision` CLI with `env` and return its stdout; a non-zero exit fails the run."""
    done = subprocess.run([SUPERVISION, *args], env=env, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise BenchError(f"`supervision {' '.join(args)}` failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout


@contextlib.contextmanager
def running_server(env: dict[str, str], workers: int, log_path: Path) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """`supervision serve` on a free port, once /readyz answers 200; stopped by SIGTERM (SIGKILL after 30 s).
    Rate limits are off: a benchmark measures the service, not its limits."""
    env = {**env, "SUPERVISION_RATE_LIMIT_ENABLED": "false"}
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    command = [SUPERVISION, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [*command, "--no-access-log"], env=env, stdout=log, stderr=log, start_new_session=True
        )
    try:
        for _ in range(300):  # 60 s
            if server.poll() is not None:
                raise BenchError(f"the server exited with {server.returncode}: {log_path.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2, trust_env=False).status_code == 200:
                    break
            time.sleep(0.2)
        else:
            raise BenchError(f"the server was not ready within 60 s: {log_path.read_text()[-2000:]}")
        yield port, server
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)  # the session this script started for the server
            server.wait(timeout=10)


def raw_phase(url: str, events: list[dict[str, Any]]) -> tuple[Phase, dict[str, Any]]:
    """Count what the server stored, empty the table, then insert the rows the server would build."""
    db = Database(Settings(database_url=url))
    try:
        with db.engine.connect() as conn:
            stored = conn.scalar(select(func.count()).select_from(Event))
            pg = db.dialect == "postgresql"
            version = str(conn.scalar(text("SHOW server_version"))) if pg else sqlite3.sqlite_version
        with db.session(write=True) as session:
            session.execute(text("TRUNCATE events" if pg else "DELETE FROM events"))
            unit_service.register_units(session, sorted({e["operator"]["unit"] for e in events}), actor="bench")
        started, received_at = time.perf_counter(), utcnow()
        parsed = [EventIn.model_validate(event) for event in events]
        service.validate(parsed, batch=True)
        rows = [service._row(RAW_SOURCE, event, received_at) for event in parsed]
        prepare_us = 1e6 * (time.perf_counter() - started) / len(rows)
        writer = db.engine.execution_options(supervision_write=True)  # BEGIN IMMEDIATE on SQLite
        with Meter() as meter:
            for start in range(0, len(rows), RAW_CHUNK):
                with writer.begin() as conn:
                    conn.execute(insert(Event), rows[start : start + RAW_CHUNK])
        with db.engine.connect() as conn:
            inserted = conn.scalar(select(func.count()).where(Event.source == RAW_SOURCE))
    finally:
        db.dispose()
    if inserted != len(rows):
        raise BenchError(f"raw: {inserted} rows stored for {len(rows)} inserted")
    phase = Phase.of("raw", len(rows), math.ceil(len(rows) / RAW_CHUNK), meter)
    return phase, {"stored_by_server": stored, "database_version": version, "prepare_us": round(prepare_us, 1)}


def git_state() -> str:
    """The commit measured, and whether app/ had uncommitted changes (others edit this tree meanwhile)."""
    git = ["git", "-C", str(Path(__file__).resolve().parent.parent)]
    try:
        head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run([*git, "status", "-s", "app"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head.stdout.strip() + (" + uncommitted app/ changes" if dirty.stdout.strip() else "")


def bench_database(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    singles = [encode(make_event(rng, "W" if i < args.warmup else "S", i)) for i in range(args.warmup + args.events)]
    warm_batches = max(args.batch_concurrency, 1)  # one per client, to open its connection before the clock
    batch_events = [make_event(rng, "B", i) for i in range(warm_batches * args.batch_size + args.batch_events)]
    chunks = [batch_events[i : i + args.batch_size] for i in range(0, len(batch_events), args.batch_size)]
    batches, sizes = [encode({"events": chunk}) for chunk in chunks], [len(chunk) for chunk in chunks]
    measured_events = batch_events[warm_batches * args.batch_size :]

    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp, fresh_database(kind, Path(tmp)) as (url, name):
        env = {**os.environ, "SUPERVISION_DATABASE_URL": url, "SUPERVISION_BOOTSTRAP_ADMIN_KEY": secrets.token_hex(16)}
        if args.workers > 1:  # as `supervision serve` does, but inside our temp dir so that it is removed
            env["PROMETHEUS_MULTIPROC_DIR"] = str(Path(tmp, "metrics"))
            Path(tmp, "metrics").mkdir()
        print(f"[{kind}] database {name}: migrating, creating a source key, starting {args.workers} worker(s)")
        supervision(env, "migrate")
        key = supervision(env, "keys", "create", "--name", "bench-source", "--role", "source").splitlines()[-1].strip()
        with Meter() as idle:  # how busy the box is before we start: other people's jobs skew every figure
            time.sleep(2)
        log_path = Path(tmp, "server.log")
        with running_server(env, args.workers, log_path) as (port, server):
            to = Endpoint(port, key, server.pid)
            print(f"[{kind}] server on port {port}: {args.warmup} warm-up, then {args.events} single POSTs")
            single = asyncio.run(drive(to, "single", singles, args.warmup, args.concurrency, [1] * len(singles)))
            print(f"[{kind}] {warm_batches} warm-up, then {len(batches) - warm_batches} batches of {args.batch_size}")
            batch = asyncio.run(drive(to, "batch", batches, warm_batches, args.batch_concurrency, sizes))
        log_lines = log_path.read_text(errors="replace").splitlines()
        problems = [line[:500] for line in log_lines if LOG_PROBLEMS.search(line)]
        print(f"[{kind}] server stopped (exit {server.returncode}); raw baseline of {len(measured_events)} rows")
        raw, extra = raw_phase(url, measured_events)
    expected = len(singles) + len(batch_events)
    if extra["stored_by_server"] != expected:
        raise BenchError(f"the server stored {extra['stored_by_server']} events for {expected} it accepted")

    phases = {"single": single, "batch": batch, "raw": raw}
    targets = []
    for db, phase, figure, at_least, bound in (target for target in TARGETS if target[0] == kind):
        value = getattr(phases[phase], figure)
        ok = value >= bound if at_least else value <= bound
        targets.append(
            {"target": f"{db} {phase} {figure} {'≥' if at_least else '≤'} {bound:g}", "value": value, "pass": ok}
        )
    return {
        "benchmark": "ingest",
        "database": kind,
        "database_version": extra["database_version"],
        "server_workers": args.workers,
        **{name: getattr(args, name) for name in ("concurrency", "batch_size", "batch_concurrency", "warmup")},
        "machine": {"nproc": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "box_busy_before_start_pct": idle.machine_cpu_pct,
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "code": git_state(),
        "phases": {name: asdict(phase) for name, phase in phases.items()},
        "ratios": {f"{p.name}_vs_raw": round(p.events_per_s / raw.events_per_s, 3) for p in (batch, single)},
        "validate_and_row_us_per_event": extra["prepare_us"],
        "events_stored_by_server": expected,
        "server_exit_code": server.returncode,
        "server_log_problems": problems[:20],
        "targets": targets,
    }


def print_report(r: dict[str, Any]) -> None:
    print(
        f"\ningest — {r['database']} {r['database_version']}, {r['server_workers']} server worker(s), "
        f"{r['concurrency']} single clients, batches of {r['batch_size']} from {r['batch_concurrency']} clients, "
        f"nproc {r['machine']['nproc']}, Python {r['machine']['python']}, code {r['code']}; "
        f"box busy before start {r['box_busy_before_start_pct']}%"
    )
    columns = ("events/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "client%", "server%", "box%", "srv ms/ev")
    print(f"{'phase':<7}{'events':>7}{'reqs':>6}{'sec':>7}" + "".join(f"{c:>10}" for c in columns) + "  conns/worker")
    keys = ("events_per_s", "p50_ms", "p95_ms", "p99_ms", "max_ms", "client_cpu_pct", "server_cpu_pct")
    for p in r["phases"].values():
        figures = [(p[k], 1) for k in (*keys, "machine_cpu_pct")] + [(p["server_cpu_ms_per_event"], 3)]
        cells = "".join(f"{'-' if v is None else f'{v:,.{digits}f}':>10}" for v, digits in figures)
        spread = "+".join(map(str, p["connections_per_worker"])) or "-"
        print(f"{p['name']:<7}{p['events']:>7}{p['requests']:>6}{p['seconds']:>7.1f}{cells}  {spread:>12}")
    print(
        f"batch_vs_raw {r['ratios']['batch_vs_raw']:.3f}   single_vs_raw {r['ratios']['single_vs_raw']:.3f}   "
        f"validate + _row alone: {r['validate_and_row_us_per_event']} µs/event in-process; every answer was 2xx"
    )
    for t in r["targets"]:
        print(f"  {'PASS' if t['pass'] else 'MISS'}  {t['target']}: {t['value']:,}")
    for line in r["server_log_problems"][:5]:
        print(f"  server log: {line}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--events", type=int, default=4000, help="single POSTs measured")
    parser.add_argument("--warmup", type=int, default=200, help="single POSTs before measuring")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent clients for single POSTs")
    parser.add_argument("--batch-size", type=int, default=500, help="events per batch (at most 1000)")
    parser.add_argument("--batch-events", type=int, default=50_000, help="events posted in batches")
    parser.add_argument("--batch-concurrency", type=int, default=4, help="concurrent clients for batches")
    parser.add_argument("--workers", type=int, default=2, help="server worker processes")
    parser.add_argument("--seed", type=int, default=20261121)
    parser.add_argument("--out", default="bench/results/ingest-{db}.json", help="JSON output; {db} is replaced")
    args = parser.parse_args()
    if not (0 < args.batch_size <= 1000 and min(args.events, args.batch_events, args.concurrency, args.workers) > 0):
        parser.error("--batch-size must be 1..1000; --events, --batch-events, --concurrency, --workers positive")
    status = 0
    for kind in ("sqlite", "postgresql") if args.database == "both" else (args.database,):
        try:
            result = bench_database(kind, args)
        except (BenchError, httpx.HTTPError, TimeoutError, subprocess.SubprocessError, psycopg.Error) as exc:
            print(f"\n[{kind}] ERROR: {type(exc).__name__}: {exc}", file=sys.stderr)
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
