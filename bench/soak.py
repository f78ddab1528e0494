"""Soak: a bounded mixed run against `supervision serve --workers 2` on PostgreSQL, minute by minute.

Run from the project root (only 127.0.0.1 is ever contacted):

    .venv/bin/python bench/soak.py --ref HEAD                 # 10 minutes, HEAD from a snapshot
    .venv/bin/python bench/soak.py --minutes 3 --out bench/results/soak-postgresql.json

A fresh PostgreSQL database (dropped afterwards), `supervision migrate`, a source and an inspector key
from the CLI, the bootstrap admin key, the shipped rules (rules/), no periodic scan, and then, paced
(each client keeps its own schedule and never bursts to catch up), until --minutes have passed or its
request budget (1.2 × rate × duration) is spent:

- single ingest: --single-rate POST /v1/events a second from 8 keep-alive connections;
- batch ingest: --batch-rate POST /v1/events/batch (500 events) a second from 1 connection;
- reads (inspector): --read-rate a second from 2 connections, alternately GET /v1/alerts (a page of 50,
  filters varying) and GET /v1/alerts/{id} of an alert from the last page;
- breaker checks (source): --check-rate GET /v1/breakers/check a second for operators of the violation
  domain, some of whom have open breakers;
- transitions (inspector): every --transition-every seconds, an alert in `warning` is moved to
  `supervision` (assignee unit, due in 7 days), or one in `supervision` closed; a 409 (someone moved it
  first) is an expected race, counted apart;
- scans (admin): POST /v1/scans at 0:45 and then every --scan-every seconds.

The events are bench/workload.py's detachment day after day (800 operators, five domains) with a few
planted stories a day, so that the shipped rules raise alerts and trip breakers as the run goes on.
Printed per minute: requests/s and p99 per kind, ingested events/s, errors by status, resident memory
(VmRSS summed over the server's processes, /proc), and CPU of this client, the server and the box. At
the end: memory cold (before any load), after the first minute (warmed up: the baseline) and at the end,
and whether the end stayed within 10% of the baseline; the events stored must equal those accepted.
Errors must be 0: every non-2xx counts, except a 409 from a transition race. Exits 1 on any error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import random
import secrets
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from ingest import (  # bench/ingest.py (this folder is not a package: run this file as a script)
    LOG_PROBLEMS,
    BenchError,
    encode,
    fresh_database,
    machine_cpu,
    percentile,
    running_server,
    supervision,
    tree_cpu,
)
from workload import SOURCE_ROOT, City, Client, EventStream, Report, at_ref, code_state, rss_kib, stop_on_sigterm

SHIPPED_RULES = SOURCE_ROOT / "rules"
KINDS = ("single", "batch", "read", "check", "transition", "scan")
EXPECTED = {"single": {201}, "batch": {200}, "read": {200}, "check": {200}, "transition": {200}, "scan": {201}}
FILTERS = ("", "&stage=warning", "&cleared=false", "&domain=violation_handling", "&severity=high")
RACE = 409  # a transition that lost to another move of the same alert


@dataclass
class Minute:
    requests: Counter[str] = field(default_factory=Counter)
    latencies: defaultdict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    events: int = 0
    errors: Counter[str] = field(default_factory=Counter)  # "kind status"
    races: int = 0
    rss_kib: int = 0
    client_cpu_pct: float = 0.0
    server_cpu_pct: float = 0.0
    box_cpu_pct: float = 0.0


class Soak:
    def __init__(self, args: argparse.Namespace, port: int, keys: dict[str, str], server_pid: int) -> None:
        self.args, self.port, self.keys, self.server_pid = args, port, keys, server_pid
        self.duration = args.minutes * 60
        self.city = City(seed=args.seed)
        self.stream = EventStream(self.city, seed=args.seed, tag="SOAK", per_day=args.per_day, risky=True)
        self.rng = random.Random(args.seed)
        self.minutes: defaultdict[int, Minute] = defaultdict(Minute)
        self.problems: list[str] = []
        self.accepted_events = 0
        self.alert_ids: list[int] = []
        self.scans: list[dict[str, Any]] = []
        self.t0 = 0.0

    def record(self, kind: str, status: int, seconds: float, answer: bytes, events: int = 0) -> None:
        minute = self.minutes[int((time.monotonic() - self.t0) // 60)]
        minute.requests[kind] += 1
        minute.latencies[kind].append(seconds)
        if status in EXPECTED[kind]:
            minute.events += events
            self.accepted_events += events
        elif kind == "transition" and status == RACE:
            minute.races += 1
        else:
            minute.errors[f"{kind} {status}"] += 1
            if len(self.problems) < 20:
                self.problems.append(f"{kind} {status}: {answer[:300]!r}")

    async def call(self, client: Client, kind: str, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        started = time.monotonic()
        status, answer = await client.request(method, path, body)
        events = 0
        if kind == "single":
            events = 1
        elif kind == "batch" and status == 200:
            events = len(json.loads(answer)["items"])
        self.record(kind, status, time.monotonic() - started, answer, events)
        return status, answer

    async def paced(self, role: str, rate: float, action: Callable[[Client], Awaitable[None]]) -> None:
        """Call `action` `rate` times a second on one connection until the deadline or the budget is spent."""
        if rate <= 0:
            return
        client = await Client.connect(self.port, self.keys[role])
        budget, interval = math.ceil(1.2 * rate * self.duration) + 1, 1 / rate
        deadline, next_at = self.t0 + self.duration, time.monotonic() + self.rng.random() * interval
        try:
            for _ in range(budget):
                if (delay := next_at - time.monotonic()) > 0:
                    await asyncio.sleep(delay)
                if time.monotonic() >= deadline:
                    break
                await action(client)
                next_at = max(next_at + interval, time.monotonic() - interval)  # never burst to catch up
        finally:
            client.close()

    async def single(self, client: Client) -> None:
        await self.call(client, "single", "POST", "/v1/events", encode(self.stream.take(1)[0]))

    async def batch(self, client: Client) -> None:
        await self.call(client, "batch", "POST", "/v1/events/batch", encode({"events": self.stream.take(500)}))

    async def read(self, client: Client) -> None:
        if self.alert_ids and self.rng.random() < 0.5:
            await self.call(client, "read", "GET", f"/v1/alerts/{self.rng.choice(self.alert_ids)}")
            return
        query = self.rng.choice(
            ("", "&stage=warning", "&cleared=false", "&domain=violation_handling", "&severity=high")
        )
        status, answer = await self.call(client, "read", "GET", f"/v1/alerts?limit=50{query}")
        if status == 200:
            self.alert_ids = [item["id"] for item in json.loads(answer)["items"]] or self.alert_ids

    async def check(self, client: Client) -> None:
        operator = self.rng.choice(self.city.pools["violation_handling"]).id
        path = f"/v1/breakers/check?subject_type=operator&subject_id={operator}&domain=violation_handling"
        await self.call(client, "check", "GET", path)

    async def transition(self, client: Client) -> None:
        stage = self.rng.choice(("warning", "warning", "supervision"))
        status, answer = await self.call(client, "read", "GET", f"/v1/alerts?stage={stage}&limit=20")
        items = json.loads(answer)["items"] if status == 200 else []
        if not items:
            return
        alert = self.rng.choice(items)
        due = (datetime.now(UTC) + timedelta(days=7)).isoformat()
        move: dict[str, Any] = (
            {"to": "supervision", "reason": "提级督办 (soak)", "assignee_unit": alert["unit"] or "CD-ZD", "due_at": due}
            if stage == "warning"
            else {"to": "closed", "reason": "办结 (soak)"}
        )
        await self.call(client, "transition", "POST", f"/v1/alerts/{alert['id']}/transitions", encode(move))

    async def scan(self, client: Client) -> None:
        started = time.monotonic()
        status, answer = await self.call(client, "scan", "POST", "/v1/scans", b"{}")
        found = json.loads(answer) if status == 201 else {}
        self.scans.append(
            {
                "at_s": round(started - self.t0, 1),
                "seconds": round(time.monotonic() - started, 2),
                "status": status,
                **{k: found.get(k) for k in ("id", "status", "windows", "events", "alerts_raised", "alerts_updated")},
            }
        )

    async def scans_loop(self) -> None:
        """A new connection per scan: uvicorn closes a keep-alive connection idle for 5 s."""
        at = self.args.first_scan
        for _ in range(math.ceil(self.duration / self.args.scan_every) + 1):
            if at >= self.duration:
                break
            await asyncio.sleep(max(0.0, self.t0 + at - time.monotonic()))
            client = await Client.connect(self.port, self.keys["admin"])
            try:
                await self.scan(client)
            finally:
                client.close()
            at += self.args.scan_every

    async def monitor(self, say: Report) -> None:
        """At each minute's end: its server memory and CPU, and its line of the table."""
        marks = (time.process_time(), tree_cpu(self.server_pid), *machine_cpu(), time.monotonic())
        for index in range(math.ceil(self.duration / 60)):
            await asyncio.sleep(max(0.0, self.t0 + 60 * (index + 1) - time.monotonic()))
            now = (time.process_time(), tree_cpu(self.server_pid), *machine_cpu(), time.monotonic())
            client, server, busy, wall, seconds = (a - b for a, b in zip(now, marks, strict=True))
            marks = now
            minute = self.minutes[index]
            minute.rss_kib = sum(rss_kib(self.server_pid).values())
            minute.client_cpu_pct = round(100 * client / seconds, 1)
            minute.server_cpu_pct = round(100 * server / seconds, 1)
            minute.box_cpu_pct = round(100 * busy / wall, 1) if wall else 0.0
            say(minute_line(index, minute, seconds))

    async def run(self, say: Report) -> None:
        self.t0 = time.monotonic()
        a = self.args
        tasks = [self.paced("source", a.single_rate / 8, self.single) for _ in range(8)]
        tasks += [self.paced("source", a.batch_rate, self.batch)]
        tasks += [self.paced("inspector", a.read_rate / 2, self.read) for _ in range(2)]
        tasks += [self.paced("source", a.check_rate, self.check)]
        tasks += [self.paced("inspector", 1 / a.transition_every, self.transition), self.scans_loop()]
        await asyncio.wait_for(asyncio.gather(*tasks, self.monitor(say)), self.duration + 600)


def p99(values: list[float]) -> float | None:
    return round(percentile(sorted(values), 0.99), 1) if values else None


def minute_line(index: int, m: Minute, seconds: float) -> str:
    cells = []
    for kind in ("single", "batch", "read", "check"):
        rate = m.requests[kind] / seconds
        cells.append(f"{rate:>7.1f}{'-' if (q := p99(m.latencies[kind])) is None else f'{q:,.0f}':>7}")
    errors = sum(m.errors.values())
    return (
        f"{index + 1:>4} {''.join(cells)}{m.events / seconds:>9,.0f}{m.requests['transition']:>5}/{m.races:<3}"
        f"{m.requests['scan']:>6}{errors:>7}{m.rss_kib / 1024:>9,.1f}{m.client_cpu_pct:>8.1f}"
        f"{m.server_cpu_pct:>8.1f}{m.box_cpu_pct:>6.0f}"
    )


HEADER = (
    f"{'min':>4} {'single/s':>8}{'p99':>6}{'batch/s':>8}{'p99':>6}{'reads/s':>8}{'p99':>6}{'check/s':>8}{'p99':>6}"
    f"{'ev/s':>9}{'trans/409':>10}{'scans':>6}{'errors':>7}{'RSS MiB':>9}{'client%':>8}{'server%':>8}{'box%':>6}"
)


def run(args: argparse.Namespace, say: Report) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp, fresh_database("postgresql", Path(tmp)) as db:
        url, name = db
        admin = secrets.token_hex(16)
        env = {**os.environ, "SUPERVISION_DATABASE_URL": url, "SUPERVISION_BOOTSTRAP_ADMIN_KEY": admin}
        env["SUPERVISION_RULES_DIR"] = str(SHIPPED_RULES)
        env["PROMETHEUS_MULTIPROC_DIR"] = str(Path(tmp, "metrics"))
        Path(tmp, "metrics").mkdir()
        env.pop("SUPERVISION_SCAN_INTERVAL", None)
        supervision(env, "migrate")
        keys = {"admin": admin}
        for role in ("source", "inspector"):
            made = supervision(env, "keys", "create", "--name", f"bench-{role}", "--role", role)
            keys[role] = made.splitlines()[-1].strip()
        log_path = Path(tmp, "server.log")
        with running_server(env, 2, log_path) as (port, server):
            cold = rss_kib(server.pid)
            say(f"database {name}, 2 workers on port {port}; {args.minutes:g} minutes; code {code_state()}")
            say(f"server processes {len(cold)}, resident {sum(cold.values()) / 1024:,.1f} MiB before any load")
            say(
                f"paced: {args.single_rate:g} single/s, {args.batch_rate:g} batches of 500/s, {args.read_rate:g} "
                f"reads/s, {args.check_rate:g} checks/s, a transition every {args.transition_every:g} s, a scan at "
                f"{args.first_scan:g} s and every {args.scan_every:g} s"
            )
            say(HEADER)
            soak = Soak(args, port, keys, server.pid)
            asyncio.run(soak.run(say))
            end = rss_kib(server.pid)
        lines = log_path.read_text(errors="replace").splitlines()
        log_problems = [line[:500] for line in lines if LOG_PROBLEMS.search(line)]
        with psycopg.connect(url) as conn:
            counts = {
                table: int((conn.execute(f"SELECT count(*) FROM {table}").fetchone() or (0,))[0])
                for table in ("events", "alerts", "breakers")
            }
            stages: dict[str, int] = dict(conn.execute("SELECT stage, count(*) FROM alerts GROUP BY stage").fetchall())
    minutes = [soak.minutes[i] for i in sorted(soak.minutes) if i < math.ceil(soak.duration / 60)]
    baseline = minutes[0].rss_kib if len(minutes) > 1 else sum(cold.values())
    growth = round(100 * (sum(end.values()) - baseline) / baseline, 1) if baseline else None
    errors: Counter[str] = Counter()
    for m in soak.minutes.values():
        errors.update(m.errors)
    return {
        "benchmark": "soak",
        "database": "postgresql",
        "server_workers": 2,
        "minutes": args.minutes,
        "rates": {k: getattr(args, k) for k in ("single_rate", "batch_rate", "read_rate", "check_rate")},
        "transition_every_s": args.transition_every,
        "scan_every_s": args.scan_every,
        "machine": {"nproc": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "code": code_state(),
        "per_minute": [
            {
                "minute": i + 1,
                "requests": dict(m.requests),
                "p99_ms": {k: p99(v) for k, v in m.latencies.items()},
                "events": m.events,
                "errors": dict(m.errors),
                "transition_races": m.races,
                "rss_kib": m.rss_kib,
                "client_cpu_pct": m.client_cpu_pct,
                "server_cpu_pct": m.server_cpu_pct,
                "box_cpu_pct": m.box_cpu_pct,
            }
            for i, m in enumerate(minutes)
        ],
        "rss_kib": {
            "cold": sum(cold.values()),
            "after_first_minute": baseline,
            "end": sum(end.values()),
            "end_by_process": end,
        },
        "rss_growth_pct": growth,
        "rss_flat_within_10pct": growth is not None and abs(growth) <= 10,
        "scans": soak.scans,
        "errors_by_status": dict(errors),
        "error_samples": soak.problems,
        "events_accepted": soak.accepted_events,
        "stored": counts,
        "alerts_by_stage": stages,
        "server_log_problems": log_problems[:20],
    }


def report(r: dict[str, Any], say: Report) -> None:
    rss = r["rss_kib"]
    say(
        f"\nsoak — postgresql, 2 workers, {r['minutes']:g} min: resident memory cold {rss['cold'] / 1024:,.1f} MiB, "
        f"after minute 1 {rss['after_first_minute'] / 1024:,.1f} MiB, end {rss['end'] / 1024:,.1f} MiB: "
        f"{r['rss_growth_pct']:+}% since minute 1 -> {'FLAT' if r['rss_flat_within_10pct'] else 'NOT FLAT'} (±10%)"
    )
    for s in r["scans"]:
        say(
            f"  scan at {s['at_s']:g} s: {s['status']} in {s['seconds']:g} s, {s['events']} events, {s['windows']} "
            f"windows, {s['alerts_raised']} alerts raised"
        )
    say(
        f"  events accepted {r['events_accepted']:,}, stored {r['stored']['events']:,}; alerts {r['stored']['alerts']} "
        f"by stage {r['alerts_by_stage']}; breakers {r['stored']['breakers']}"
    )
    worst = max((m["client_cpu_pct"] for m in r["per_minute"]), default=0.0)
    verdict = "not the bottleneck" if worst < 50 else "POSSIBLY THE BOTTLENECK"
    say(f"  client CPU at most {worst:.0f}% of one core in any minute (one asyncio thread): client {verdict}")
    say(f"  errors: {sum(r['errors_by_status'].values())} {r['errors_by_status'] or ''}")
    for line in r["error_samples"][:5]:
        say(f"    {line}")
    for line in r["server_log_problems"][:5]:
        say(f"  server log: {line}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--single-rate", type=float, default=80, help="single POSTs a second (8 connections)")
    parser.add_argument("--batch-rate", type=float, default=1, help="batches of 500 a second")
    parser.add_argument("--read-rate", type=float, default=10, help="alert list/detail reads a second")
    parser.add_argument("--check-rate", type=float, default=10, help="breaker checks a second")
    parser.add_argument("--transition-every", type=float, default=2, help="seconds between transitions")
    parser.add_argument("--first-scan", type=float, default=45, help="seconds before the first scan")
    parser.add_argument("--scan-every", type=float, default=120, help="seconds between scans")
    parser.add_argument("--per-day", type=int, default=3000, help="events a weekday in the generated business")
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--out", default="bench/results/soak-postgresql.json", help="JSON (and .md beside it)")
    parser.add_argument("--ref", help="measure this commit (e.g. HEAD) from a snapshot, not the working tree")
    args = parser.parse_args()
    stop_on_sigterm()
    if (code := at_ref(args.ref)) is not None:
        return code
    if not 0 < args.minutes <= 120 or args.transition_every <= 0 or args.scan_every <= 0:
        parser.error("--minutes must be in (0, 120]; --transition-every and --scan-every positive")
    say = Report()
    try:
        result = run(args, say)
    except (BenchError, TimeoutError, OSError, subprocess.SubprocessError, psycopg.Error) as exc:
        print(f"\nERROR: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    report(result, say)
    out = Path(args.out)
    say.write(out, "soak — postgresql", " ".join(["python", *sys.argv]), result)
    print(f"  written to {out} and {out.with_suffix('.md')}")
    lost = result["events_accepted"] != result["stored"]["events"]
    if lost:
        print(
            f"ERROR: {result['events_accepted']} events accepted, {result['stored']['events']} stored", file=sys.stderr
        )
    return 1 if lost or result["errors_by_status"] else 0


if __name__ == "__main__":
    sys.exit(main())
