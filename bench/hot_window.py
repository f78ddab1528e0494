"""Hot window: does ingest slow down as the one window every event touches fills up?

Run from the project root (only 127.0.0.1 is ever contacted):

    .venv/bin/python bench/hot_window.py --database postgresql --ref HEAD   # HEAD from a snapshot
    .venv/bin/python bench/hot_window.py --database both --steps 1000,5000,10000,25000,50000

One busy subject: every event is an inspection at one station (IS-HOT) inside one 4-week window (28d
windows start at multiples of 28 days after 1970-01-05 local; the events' times rise through that window).
The server (`supervision serve --workers 1`, a fresh database) runs with a temporary rules folder holding
two rules over that station, checked with `supervision rules check`:

- hw-station-pass-share: ratio, pass share of the station's inspections over 4 weeks (warn 0.8, min 100);
- hw-station-volume: count of the station's inspections over 4 weeks (warn 500).

Both are above warn_at from early on (the pass share is about 0.87), so from the first steps every event
also updates their two alerts: the hot path of a busy subject. At each step the window is first filled
with batches of 500 (unmeasured) to the step's size (1k, 5k, 10k, 25k, 50k events), then measured, into
the same window: single POSTs (16 keep-alive connections, 16 warm-up + --singles measured: requests/s,
p50/p99) and batches (1 connection, 1 warm-up + --batches measured batches of 500: events/s). The window
grows by those measured events too; the table shows its size when each step's measurement began. Figures:
the curve, and each rate at the last step ÷ at the first (target ≥ 0.8). Client and server CPU are shown
as in bench/ingest.py (the client is one asyncio thread: far under 100% of a core, it was not the limit).
An unexpected answer ends the curve at that step (the steps before it are kept, with the failure and the
server log's problems) and exits 1; a missed target does not. Results: JSON and a markdown copy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from ingest import (  # bench/ingest.py (this folder is not a package: run this file as a script)
    LOG_PROBLEMS,
    BenchError,
    Endpoint,
    Meter,
    drive,
    encode,
    fresh_database,
    running_server,
    supervision,
)
from workload import (
    MONTH_START,
    TZ,
    City,
    Client,
    EventStream,
    Report,
    at_ref,
    code_state,
    post_all,
    stop_on_sigterm,
    wait_quiet,
)

STATION = "IS-HOT"
WINDOW = timedelta(days=28)
EPOCH = datetime(1970, 1, 5, tzinfo=TZ)  # the contract's window origin (Asia/Shanghai has no DST since 1991)
RULES = """\
- id: hw-station-pass-share
  type: ratio
  label_zh: 检测站四周检测通过率
  label_en: A station's pass share over four weeks
  domains: [vehicle_inspection]
  numerator: {attributes.result: pass}
  min_events: 100
  group_by: business_unit
  window: 4w
  warn_at: 0.8
  severity: medium

- id: hw-station-volume
  type: count
  label_zh: 检测站四周检测量
  label_en: A station's inspections over four weeks
  domains: [vehicle_inspection]
  group_by: business_unit
  window: 4w
  warn_at: 500
  severity: low
"""


class HotEvents:
    """Inspections at STATION with rising times inside one 28-day window, about `planned` of them."""

    def __init__(self, seed: int, planned: int) -> None:
        self.stream = EventStream(City(seed=seed), seed=seed, tag="HOT", per_day=1)
        self.start = EPOCH + WINDOW * ((MONTH_START - EPOCH) // WINDOW)
        self.step = (WINDOW - timedelta(hours=2)) / planned
        self.made = 0

    def take(self, n: int) -> list[dict[str, Any]]:
        out = []
        for _ in range(n):
            event = self.stream.event("vehicle_inspection", self.start)
            event["business_unit"] = {"id": STATION, "kind": "inspection_station"}
            event["occurred_at"] = (self.start + timedelta(hours=1) + self.step * self.made).isoformat()
            self.made += 1
            event["source_event_id"] = f"VI-HOT-{self.made:08d}"
            out.append(event)
        return out

    def bodies(self, n: int, size: int) -> tuple[list[bytes], list[int]]:
        events = self.take(n)
        chunks = [events[i : i + size] for i in range(0, len(events), size)]
        return [encode({"events": chunk}) for chunk in chunks], [len(chunk) for chunk in chunks]


async def station_alerts(port: int, admin_key: str) -> list[dict[str, Any]]:
    client = await Client.connect(port, admin_key)
    try:
        status, body = await client.request("GET", f"/v1/alerts?subject={STATION}&limit=50")
    finally:
        client.close()
    if status != 200:
        raise BenchError(f"GET /v1/alerts answered {status}: {body[:300]!r}")
    items: list[dict[str, Any]] = json.loads(body)["items"]
    return items


def run(kind: str, args: argparse.Namespace, say: Report) -> dict[str, Any]:
    steps = [int(s) for s in args.steps.split(",")]
    per_step = 16 + args.singles + (1 + args.batches) * 500
    events = HotEvents(args.seed, steps[-1] + per_step * len(steps) + 1000)
    results: list[dict[str, Any]] = []
    in_window, failure = 0, None
    with tempfile.TemporaryDirectory(prefix="bench-hot-") as tmp, fresh_database(kind, Path(tmp)) as (url, name):
        rules_dir = Path(tmp, "rules")
        rules_dir.mkdir()
        (rules_dir / "hot.yaml").write_text(RULES)
        admin = secrets.token_hex(16)
        env = {**os.environ, "SUPERVISION_DATABASE_URL": url, "SUPERVISION_BOOTSTRAP_ADMIN_KEY": admin}
        env["SUPERVISION_RULES_DIR"] = str(rules_dir)
        env.pop("SUPERVISION_SCAN_INTERVAL", None)
        checked = supervision(env, "rules", "check", str(rules_dir)).strip().splitlines()
        say(f"[{kind}] rules check: {checked[-1] if checked else 'ok'}")
        supervision(env, "migrate")
        key = supervision(env, "keys", "create", "--name", "bench-source", "--role", "source").splitlines()[-1].strip()
        log_path = Path(tmp, "server.log")
        started = time.monotonic()
        with running_server(env, 1, log_path) as (port, server):
            to = Endpoint(port, key, server.pid)
            say(f"[{kind}] database {name}, 1 worker on port {port}, window from {events.start.isoformat()}")
            for target in steps:
                if time.monotonic() - started > args.time_limit:
                    say(f"[{kind}] time limit of {args.time_limit:g} s reached: steps from {target:,} skipped")
                    break
                fill = max(0, target - in_window)
                with Meter(server.pid) as filled:
                    if fill:
                        bodies, _ = events.bodies(fill, 500)
                        asyncio.run(post_all(port, key, "/v1/events/batch", bodies, 2, 200))
                in_window += fill
                wait_quiet(args.quiet_wait)
                at_start = in_window
                singles = [encode(e) for e in events.take(16 + args.singles)]
                bodies, sizes = events.bodies((1 + args.batches) * 500, 500)
                try:
                    single = asyncio.run(drive(to, "single", singles, 16, 16, [1] * len(singles)))
                    in_window += len(singles)
                    batch = asyncio.run(drive(to, "batch", bodies, 1, 1, sizes))
                    in_window += sum(sizes)
                except (BenchError, asyncio.IncompleteReadError, ConnectionError) as exc:  # keep the curve so far
                    # A connection closed under us: uvicorn drops a keep-alive connection idle for 5 s, which
                    # happens to warm-up clients when the others wait seconds for each answer.
                    failure = f"step {target:,} ({at_start:,} in window): {type(exc).__name__}: {str(exc)[:1500]}"
                    say(f"[{kind}] FAILED at {failure}")
                    break
                row = {
                    "target": target,
                    "window_events_at_start": at_start,
                    "fill_events": fill,
                    "fill_events_per_s": round(fill / filled.seconds, 1) if fill else None,
                    "single": asdict(single),
                    "batch": asdict(batch),
                }
                results.append(row)
                say(
                    f"[{kind}] {at_start:>7,} in window: single {single.events_per_s:,.1f} req/s p99 "
                    f"{single.p99_ms} ms; batch {batch.events_per_s:,.1f} ev/s (fill {row['fill_events_per_s']} ev/s)"
                )
            alerts = asyncio.run(station_alerts(port, admin))
        problems = [
            line[:500] for line in log_path.read_text(errors="replace").splitlines() if LOG_PROBLEMS.search(line)
        ]
    if not results:
        raise BenchError(f"no step completed: {failure}; server log: {problems[:5]}")
    first, last = results[0], results[-1]
    single_ratio = round(last["single"]["events_per_s"] / first["single"]["events_per_s"], 3)
    batch_ratio = round(last["batch"]["events_per_s"] / first["batch"]["events_per_s"], 3)
    targets = [
        {"target": f"single req/s at {last['target']:,} ÷ at {first['target']:,} ≥ 0.8", "value": single_ratio},
        {"target": f"batch ev/s at {last['target']:,} ÷ at {first['target']:,} ≥ 0.8", "value": batch_ratio},
    ]
    for t in targets:
        t["pass"] = failure is None and t["value"] >= 0.8
    return {
        "benchmark": "hot_window",
        "database": kind,
        "server_workers": 1,
        "station": STATION,
        "window_start": events.start.isoformat(),
        "rules": RULES,
        "machine": {"nproc": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "code": code_state(),
        "steps": results,
        "events_in_window_at_end": in_window,
        "station_alerts": [
            {k: a.get(k) for k in ("id", "rule_id", "value", "hits", "stage", "tripped", "cleared")} for a in alerts
        ],
        "ratios": {"single": single_ratio, "batch": batch_ratio},
        "targets": targets,
        "failure": failure,
        "server_log_problems": problems[:20],
    }


def report(r: dict[str, Any], say: Report) -> None:
    say(
        f"\nhot window — {r['database']}, 1 worker, station {r['station']}, 28-day window from "
        f"{r['window_start'][:10]}; code {r['code']}"
    )
    cols = ("req/s", "p50 ms", "p99 ms", "client%", "server%", "box%", "batch/s", "p99 ms", "client%", "server%")
    say(f"{'in window':>10}" + "".join(f"{c:>10}" for c in cols) + f"{'fill ev/s':>11}")
    for row in r["steps"]:
        s, b = row["single"], row["batch"]
        values = [s["events_per_s"], s["p50_ms"], s["p99_ms"], s["client_cpu_pct"], s["server_cpu_pct"]]
        values += [s["machine_cpu_pct"], b["events_per_s"], b["p99_ms"], b["client_cpu_pct"], b["server_cpu_pct"]]
        cells = "".join(f"{'-' if v is None else f'{v:,.1f}':>10}" for v in values)
        fill = row["fill_events_per_s"]
        say(f"{row['window_events_at_start']:>10,}{cells}{'-' if fill is None else f'{fill:,.0f}':>11}")
    worst = max(max(row["single"]["client_cpu_pct"], row["batch"]["client_cpu_pct"]) for row in r["steps"])
    verdict = "not the bottleneck" if worst < 50 else "POSSIBLY THE BOTTLENECK"
    say(f"  client CPU at most {worst:.0f}% of one core in any phase (one asyncio thread): client {verdict}")
    for a in r["station_alerts"]:
        say(f"  alert {a['id']} {a['rule_id']}: value {a['value']}, hits {a['hits']}, stage {a['stage']}")
    for t in r["targets"]:
        say(f"  {'PASS' if t['pass'] else 'MISS'}  {t['target']}: {t['value']}")
    if r["failure"]:
        say(f"  FAILED at {r['failure'][:600]}")
    for line in r["server_log_problems"][:5]:
        say(f"  server log: {line}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", choices=("sqlite", "postgresql", "both"), default="postgresql")
    parser.add_argument("--steps", default="1000,5000,10000,25000,50000", help="window sizes, ascending")
    parser.add_argument("--singles", type=int, default=200, help="single POSTs measured per step")
    parser.add_argument("--batches", type=int, default=3, help="batches of 500 measured per step")
    parser.add_argument("--time-limit", type=float, default=600, help="seconds per database; later steps skipped")
    parser.add_argument("--quiet-wait", type=float, default=20, help="seconds to wait for a quiet box per step")
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--out", default="bench/results/hot-window-{db}.json", help="JSON (and .md beside it)")
    parser.add_argument("--ref", help="measure this commit (e.g. HEAD) from a snapshot, not the working tree")
    args = parser.parse_args()
    stop_on_sigterm()
    if (code := at_ref(args.ref)) is not None:
        return code
    steps = args.steps.split(",")
    if not all(s.isdigit() and int(s) > 0 for s in steps) or [int(s) for s in steps] != sorted(int(s) for s in steps):
        parser.error("--steps: positive whole numbers, ascending")
    status = 0
    for kind in ("sqlite", "postgresql") if args.database == "both" else (args.database,):
        say = Report()
        try:
            result = run(kind, args, say)
        except (BenchError, TimeoutError, OSError, subprocess.SubprocessError, psycopg.Error) as exc:
            print(f"\n[{kind}] ERROR: {type(exc).__name__}: {exc}", file=sys.stderr)
            status = 1
            continue
        report(result, say)
        out = Path(args.out.replace("{db}", kind))
        say.write(out, f"hot window — {kind}", " ".join(["python", *sys.argv]), result)
        print(f"  written to {out} and {out.with_suffix('.md')}")
        status = 1 if result["failure"] else status
    return status


if __name__ == "__main__":
    sys.exit(main())
