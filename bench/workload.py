"""Shared pieces of bench/compare.py, bench/hot_window.py and bench/soak.py (not a benchmark itself).

- `City` and `EventStream`: an ordinary detachment's business, generated here rather than taken from
  app.demo (which others edit) so that the figures depend only on the contract: 800 operators in the
  five domains (police, auxiliaries with their responsible officer, staff), business units and agents,
  events spread over office, station, exam and road hours, day after day (+08:00). With `risky=True`
  a few small planted stories a day (night deletions, fast passes, bulk new-energy registrations) make
  the shipped rules raise alerts and trip some breakers, for runs that need alerts to act on.
- `Client`: bench/ingest.py's bare HTTP/1.1 keep-alive connection, with any method and extra headers.
- `running_command`: any server command on a free loopback port, until its /readyz answers 200;
  stopped by SIGTERM (SIGKILL after 30 s) whatever happens.
- `rss_kib`: resident memory of a server and its workers, from /proc.
- `Report`: lines printed and kept for a markdown copy of the output.

Run nothing here; see the scripts' docstrings for the commands.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from ingest import BenchError, KeepAlive, Meter, family, git_state  # bench/ingest.py (this folder is not a package)

import app

# Where the service's code is imported from: the working tree, or a snapshot made by `at_ref`.
SOURCE_ROOT = Path(app.__file__).resolve().parent.parent
SNAPSHOT_ENV = "BENCH_SNAPSHOT"

TZ = timezone(timedelta(hours=8))
MONTH_START = datetime(2026, 10, 1, tzinfo=TZ)
VEHICLE_TYPES = ("car", "new_energy", "motorcycle", "trailer", "truck", "other")
REGISTERED_MIX = (0.50, 0.25, 0.12, 0.02, 0.06, 0.05)
INSPECTED_MIX = (0.70, 0.12, 0.04, 0.015, 0.08, 0.045)
CLOSURES = ("mediated", "penalized", "no_liability", "transferred")
CLOSURE_MIX = (0.45, 0.35, 0.10, 0.10)
# domain -> (share of the events, share of the 800 operators, source_event_id prefix)
DOMAINS: dict[str, tuple[float, float, str]] = {
    "vehicle_registration": (0.15, 0.15, "VR"),
    "driver_testing": (0.10, 0.10, "DT"),
    "vehicle_inspection": (0.13, 0.13, "VI"),
    "accident_handling": (0.04, 0.17, "AH"),
    "violation_handling": (0.58, 0.45, "VH"),
}
# (start hour, end hour) of each domain's ordinary business, local time.
HOURS = {
    "vehicle_registration": (8.5, 17.5),
    "driver_testing": (8.5, 17.5),
    "vehicle_inspection": (8.0, 17.5),
    "accident_handling": (6.0, 22.0),
    "violation_handling": (7.0, 21.0),
}
PLATE_LETTERS = "ABCDEFGHJKLMNU"


@dataclass(frozen=True)
class Operator:
    id: str
    kind: str
    unit: str
    responsible_officer: str | None

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "kind": self.kind, "unit": self.unit}
        if self.responsible_officer:
            out["responsible_officer"] = self.responsible_officer
        return out


@dataclass
class City:
    """800 operators (half police, a third auxiliaries answering to a police officer of their unit, the
    rest staff) in 6 brigades of 4 squads, 8 registration windows, an inspection section and an exam
    centre; 20 inspection stations, 10 service stations, 30 companies, 12 driving schools, 6 exam sites,
    200 agents."""

    seed: int = 7
    operators: int = 800
    pools: dict[str, list[Operator]] = field(init=False)

    def __post_init__(self) -> None:
        rng = random.Random(f"city-{self.seed}")
        squads = [f"CD-DD{b}-ZD{s}" for b in range(1, 7) for s in range(1, 5)]
        units = {
            "vehicle_registration": [f"CD-CGS-CK{w}" for w in range(1, 9)],
            "driver_testing": ["CD-KGZX"],
            "vehicle_inspection": ["CD-CGS-CY"],
            "accident_handling": squads,
            "violation_handling": squads,
        }
        self.pools, number = {}, 1000
        for domain, (_, op_share, _) in DOMAINS.items():
            pool: list[Operator] = []
            police: dict[str, list[str]] = {}
            for i in range(round(self.operators * op_share)):
                unit = units[domain][i % len(units[domain])]
                kind = "police" if i % 6 in (0, 2, 4) else "auxiliary" if i % 6 in (1, 3) else "staff"
                prefix = {"police": "P", "auxiliary": "A", "staff": "S"}[kind]
                number += 1
                if kind == "police":
                    police.setdefault(unit, []).append(f"P{number}")
                    pool.append(Operator(f"P{number}", kind, unit, None))
                else:
                    officer = rng.choice(police.get(unit) or [op.id for op in pool if op.kind == "police"])
                    pool.append(Operator(f"{prefix}{number}", kind, unit, officer if kind == "auxiliary" else None))
            self.pools[domain] = pool
        self.stations = [f"IS-{i:02d}" for i in range(1, 21)]
        self.service_stations = [f"SS-{i:02d}" for i in range(1, 11)]
        self.companies = [f"CO-{i:02d}" for i in range(1, 31)]
        self.schools = [f"DS-{i:02d}" for i in range(1, 13)]
        self.exam_sites = [f"ES-{i:02d}" for i in range(1, 7)]
        self.agents = [f"AG-{i:03d}" for i in range(1, 201)]

    @property
    def size(self) -> int:
        return sum(len(pool) for pool in self.pools.values())


def plate(rng: random.Random, vehicle_type: str) -> str:
    digits = "".join(rng.choices("0123456789", k=5))
    if vehicle_type == "new_energy":
        return f"湘J{rng.choice('DF')}{digits}"
    if vehicle_type == "trailer":
        return f"湘J{rng.choice(PLATE_LETTERS)}{digits[:3]}挂"
    return f"湘J{rng.choice(PLATE_LETTERS)}{digits}"


class EventStream:
    """Business day after day from `start`: `per_day` events a weekday (weekends a third of it), each
    domain's events by its own operators in its own hours, in time order within a day. `take(n)` hands
    out the next n events; source_event_ids are `<domain prefix>-<tag>-<serial>`, unique per stream tag."""

    def __init__(
        self, city: City, *, seed: int, tag: str, per_day: int, start: datetime = MONTH_START, risky: bool = False
    ) -> None:
        self.city, self.tag, self.per_day, self.risky = city, tag, per_day, risky
        self.rng = random.Random(f"stream-{seed}-{tag}")
        self.day, self.serial = start, 0
        self.pending: list[dict[str, Any]] = []
        self.domains = list(DOMAINS)
        self.weights = [share for share, _, _ in DOMAINS.values()]

    def take(self, n: int) -> list[dict[str, Any]]:
        while len(self.pending) < n:
            self.pending += self._next_day()
        out, self.pending = self.pending[:n], self.pending[n:]
        return out

    def month(self, total: int, days: int = 30) -> list[dict[str, Any]]:
        """`total` events spread over `days` days (per_day is reset to fit)."""
        weekdays = sum((self.day + timedelta(days=d)).weekday() < 5 for d in range(days))
        self.per_day = max(1, round(total / (weekdays + (days - weekdays) / 3)))
        return self.take(total)

    def _next_day(self) -> list[dict[str, Any]]:
        rng, day = self.rng, self.day
        self.day += timedelta(days=1)
        count = self.per_day if day.weekday() < 5 else self.per_day // 3
        drafts = [self.event(rng.choices(self.domains, self.weights)[0], day) for _ in range(count)]
        if self.risky:
            drafts += self._stories(day)
        drafts.sort(key=lambda d: d["occurred_at"])
        for draft in drafts:
            self.serial += 1
            draft["source_event_id"] = f"{DOMAINS[draft['domain']][2]}-{self.tag}-{self.serial:08d}"
            draft["occurred_at"] = draft["occurred_at"].isoformat()
        return drafts

    def _at(self, day: datetime, domain: str) -> datetime:
        lo, hi = HOURS[domain]
        return day + timedelta(seconds=int(self.rng.uniform(lo * 3600, hi * 3600)))

    def event(self, domain: str, day: datetime, operator: Operator | None = None) -> dict[str, Any]:
        rng, city = self.rng, self.city
        op = operator or rng.choice(city.pools[domain])
        event: dict[str, Any] = {
            "source_event_id": "",
            "domain": domain,
            "occurred_at": self._at(day, domain),
            "operator": op.body(),
        }
        if domain == "vehicle_registration":
            vehicle = rng.choices(VEHICLE_TYPES, REGISTERED_MIX)[0]
            event["action"] = rng.choices(("register", "transfer", "deregister"), (0.7, 0.2, 0.1))[0]
            if rng.random() < 0.3:
                event["business_unit"] = (
                    {"id": rng.choice(city.companies), "kind": "company"}
                    if rng.random() < 0.5
                    else {"id": rng.choice(city.service_stations), "kind": "service_station"}
                )
            if rng.random() < 0.25:
                event["agent_id"] = rng.choice(city.agents)
            event["object_ref"] = plate(rng, vehicle)
            event["attributes"] = {"vehicle_type": vehicle}
        elif domain == "driver_testing":
            subject = rng.randint(1, 4)
            passed = rng.random() < 0.62 + 0.05 * subject
            event["action"] = "exam"
            event["business_unit"] = {"id": rng.choice(city.exam_sites), "kind": "exam_site"}
            event["object_ref"] = f"KS{rng.randrange(10**9):09d}"
            score = rng.randint(90, 100) if passed else rng.randint(40, 89)
            event["attributes"] = {"subject": subject, "result": "pass" if passed else "fail", "score": score}
        elif domain == "vehicle_inspection":
            vehicle = rng.choices(VEHICLE_TYPES, INSPECTED_MIX)[0]
            event["action"] = "inspection"
            event["business_unit"] = {"id": rng.choice(city.stations), "kind": "inspection_station"}
            event["object_ref"] = plate(rng, vehicle)
            event["attributes"] = {
                "result": "pass" if rng.random() < 0.87 else "fail",
                "duration_seconds": rng.randint(360, 1800),
                "vehicle_type": vehicle,
            }
        elif domain == "accident_handling":
            closed = rng.random() < 0.5
            event["action"] = "case_closed" if closed else "case_opened"
            event["object_ref"] = f"SG{rng.randrange(10**8):08d}"
            event["attributes"] = {"closure": rng.choices(CLOSURES, CLOSURE_MIX)[0]} if closed else {}
        else:
            fine, points = rng.choice(((50, 0), (100, 1), (200, 3), (200, 6)))
            action = rng.choices(("penalty_issued", "record_modified", "record_deleted"), (0.985, 0.012, 0.003))[0]
            event["action"] = action
            event["object_ref"] = plate(rng, "car")
            event["attributes"] = {"fine_amount": fine, "points": points}
            if action == "record_modified":
                event["attributes"] = {"fine_amount": fine // 2, "points": 0, "original_fine_amount": fine}
        return event

    def _stories(self, day: datetime) -> list[dict[str, Any]]:
        """A few irregular stories a day: night deletions (every 4th day enough to trip a breaker),
        a station passing cars in under two minutes, an operator's hour of new-energy registrations."""
        rng, city, out = self.rng, self.city, []
        deleter = rng.choice(city.pools["violation_handling"])
        for i in range(12 if day.toordinal() % 4 == 0 else 4):
            event = self.event("violation_handling", day, deleter)
            event["action"] = "record_deleted"
            event["occurred_at"] = day + timedelta(hours=23, minutes=2 * i)
            out.append(event)
        station = rng.choice(city.stations)
        for _ in range(6):
            event = self.event("vehicle_inspection", day)
            event["business_unit"] = {"id": station, "kind": "inspection_station"}
            event["attributes"].update(result="pass", duration_seconds=rng.randint(60, 110))
            out.append(event)
        registrar, hour = rng.choice(city.pools["vehicle_registration"]), day + timedelta(hours=10)
        for i in range(16):
            event = self.event("vehicle_registration", day, registrar)
            event["action"], event["attributes"] = "register", {"vehicle_type": "new_energy"}
            event["object_ref"], event["occurred_at"] = plate(rng, "new_energy"), hour + timedelta(minutes=3 * i)
            out.append(event)
        return out


class Client(KeepAlive):
    """bench/ingest.py's KeepAlive (prebuilt bytes, Content-Length framing), for any method."""

    @classmethod
    async def connect(cls, port: int, key: str) -> Client:
        base = await KeepAlive.open(port, key)
        return cls(base.reader, base.writer, base.head)

    async def request(self, method: str, path: str, body: bytes = b"", headers: bytes = b"") -> tuple[int, bytes]:
        length = b"Content-Length: %d\r\n" % len(body) if body or method in ("POST", "PUT") else b""
        line = b"%s %s HTTP/1.1\r\n" % (method.encode(), path.encode())
        self.writer.write(line + self.head + headers + length + b"\r\n" + body)
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 120)
        status, length_in = int(head.split(b" ", 2)[1]), 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length_in = int(value)
        return status, await self.reader.readexactly(length_in)


def at_ref(ref: str | None) -> int | None:
    """Measure a commit instead of the working tree (others edit app/ while we measure): when `ref` is given
    and this process is not already running from a snapshot, extract `git archive <ref>` of app/,
    migrations/, alembic.ini and rules/ into a temporary folder, run this same command again with
    PYTHONPATH pointing there (the servers it starts inherit it), remove the folder, and return the
    command's exit code. Otherwise return None: the caller goes on measuring."""
    if not ref or os.environ.get(SNAPSHOT_ENV):
        return None
    root = Path(__file__).resolve().parent.parent
    sha = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "--verify", f"{ref}^{{commit}}"],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout.strip()  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-code-") as snap:
        archive = subprocess.run(
            ["git", "-C", str(root), "archive", sha, "app", "migrations", "alembic.ini", "rules"],
            capture_output=True, check=True, timeout=60,
        )  # fmt: skip
        subprocess.run(["tar", "-x", "-C", snap], input=archive.stdout, check=True, timeout=60)
        env = {**os.environ, "PYTHONPATH": snap, SNAPSHOT_ENV: f"{ref} = {sha[:10]}"}
        print(f"measuring {ref} ({sha[:10]}) from a snapshot in {snap}", flush=True)
        child = subprocess.Popen([sys.executable, *sys.argv], env=env)
        try:
            return child.wait()
        finally:
            if child.poll() is None:  # we were interrupted: let the child stop its servers and drop its databases
                child.send_signal(signal.SIGINT)
                child.wait(timeout=120)


def stop_on_sigterm() -> None:
    """Make SIGTERM unwind like Ctrl-C, so that servers are stopped and databases dropped on the way out."""

    def handler(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


def code_state() -> str:
    """What code the servers run: a snapshot's commit, or HEAD of the working tree (and whether app/ had
    uncommitted changes)."""
    snapshot = os.environ.get(SNAPSHOT_ENV)
    return f"commit {snapshot} (snapshot)" if snapshot else f"working tree at {git_state()}"


async def post_all(port: int, key: str, path: str, bodies: list[bytes], concurrency: int, expect: int) -> list[float]:
    """POST every body once over `concurrency` keep-alive connections; seconds per request. Anything but
    `expect` fails the run (a batch answer must also hold no duplicate)."""
    connections = [await Client.connect(port, key) for _ in range(max(1, min(concurrency, len(bodies))))]
    pending, latencies, problems = iter(range(len(bodies))), [], []

    async def send(connection: Client) -> None:
        for index in pending:
            started = time.perf_counter()
            status, answer = await connection.post(path, bodies[index])
            latencies.append(time.perf_counter() - started)
            if status != expect or b'"duplicate":true' in answer:
                problems.append(f"{status}: {answer[:300]!r}")

    try:
        await asyncio.wait_for(asyncio.gather(*(send(c) for c in connections)), 900)
    finally:
        for connection in connections:
            connection.close()
    if problems:
        raise BenchError(f"{path}: {len(problems)} unexpected answers; first: {problems[:3]}")
    return latencies


def wait_quiet(limit_s: float, busy_pct: float = 40.0) -> float:
    """Wait (at most `limit_s`) until the box's CPUs are busy less than `busy_pct` (% of one core) over a
    second: other people's jobs share these two cores. Returns the last busy figure seen."""
    deadline, busy = time.monotonic() + limit_s, 0.0
    while True:
        with Meter() as meter:
            time.sleep(1)
        busy = meter.machine_cpu_pct or 0.0
        if busy < busy_pct or time.monotonic() > deadline:
            return busy


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _ready(port: int) -> bool:
    """One GET /readyz on 127.0.0.1:`port`: 200 or not (a bare socket: no HTTP library needed)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            return sock.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


@contextlib.contextmanager
def running_command(command: Sequence[str], env: dict[str, str], log_path: Path, port: int) -> Iterator[int]:
    """Start `command` (it listens on 127.0.0.1:`port`) in its own session; yield its pid once /readyz
    answers 200; SIGTERM it afterwards (SIGKILL to its session after 30 s), even when the body fails."""
    with log_path.open("wb") as log:
        server = subprocess.Popen(list(command), env=env, stdout=log, stderr=log, start_new_session=True)
    try:
        for _ in range(300):  # 60 s
            if server.poll() is not None:
                raise BenchError(f"{command[0]} exited with {server.returncode}: {log_path.read_text()[-2000:]}")
            if _ready(port):
                break
            time.sleep(0.2)
        else:
            raise BenchError(f"{command[0]} was not ready within 60 s: {log_path.read_text()[-2000:]}")
        yield server.pid
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)  # the session started above for this server alone
            server.wait(timeout=10)


def rss_kib(pid: int) -> dict[str, int]:
    """VmRSS (KiB) of `pid` and each of its descendants, by pid, from /proc."""
    out = {}
    for member in family(pid):
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    out[str(member)] = int(line.split()[1])
    return out


def cpu_note(client_pct: float | None, server_pct: float | None) -> str:
    """Whether this client could have held the server back: it is one asyncio thread, so it saturates
    at 100% of one core; under half of that while the server works, it was waiting on the server."""
    if client_pct is None:
        return ""
    verdict = "not the bottleneck" if client_pct < 50 else "POSSIBLY THE BOTTLENECK"
    return f"client {client_pct:.0f}% of a core vs server {server_pct or 0:.0f}%: client {verdict}"


class Report:
    """Lines printed as they come and kept, to be written as a markdown copy of the output."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: str = "") -> None:
        print(line)
        self.lines.append(line)

    def write(self, path: Path, title: str, command: str, result: dict[str, Any]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        body = "\n".join(self.lines)
        text = f"# {title}\n\n`{command}`\n\n```text\n{body}\n```\n"
        path.with_suffix(".md").write_text(text)
        path.with_suffix(".json").write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n")
