"""Our service beside a bare peer (bench/peer.py): the same events, the same client, the same machine.

Run from the project root (only 127.0.0.1 is ever contacted):

    .venv/bin/python bench/compare.py --database both --ref HEAD   # HEAD from a snapshot (default: working tree)
    .venv/bin/python bench/compare.py --database postgresql --workers 2 --events 4000 --batch-events 50000 \\
        --out bench/results/compare-{db}.json

The workload is an ordinary month of a detachment's business (bench/workload.py: 800 operators in the
five domains, events in each domain's hours, no planted stories), built as request bodies before any
clock starts: the single POSTs are every k-th event of the month, the batches (500 events) the rest, both
in time order. For each database (a fresh one each time, dropped afterwards):

1. ours: `supervision migrate`, a source key from the CLI (and the bootstrap admin key set), `supervision
   serve --workers N` with the shipped rules (rules/), no periodic scan, rate limiting switched off if
   the service has a SUPERVISION_RATE_LIMIT* setting, and no access log, as the peer (`--access-log`
   keeps it, to measure what it costs);
2. the peer: bench/peer.py under uvicorn with the same number of workers, its own table in its own
   database.

Both are up at once (an idle server costs nothing) and the phases alternate, ours then the peer's, each
after waiting (at most --quiet-wait s) for the box to be quiet: other people's jobs share these 2 cores.

Against each, bench/ingest.py's `drive` (its bare HTTP/1.1 keep-alive client): a warm-up, then the
single POSTs from 16 keep-alive connections (requests/s, p50/p99 ms), then the batches from 4 connections
(events/s). Figures: ours ÷ peer for batch events/s (target ≥ 0.5) and single requests/s (≥ 0.5), and
our single p99 ÷ the peer's (≤ 2). The client's CPU (this process, /proc via time.process_time) is shown
beside the server's (its process tree, /proc/<pid>/stat) for every phase: the client is one asyncio
thread, so if it stays well under 100% of a core it was waiting for the server, not the other way round.
Any unexpected answer (a non-2xx, a duplicate, a lost event) exits 1; a missed target does not.
Results: JSON and a markdown copy of the printed table (`{db}` in --out is the database).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import secrets
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from ingest import (  # bench/ingest.py (this folder is not a package: run this file as a script)
    LOG_PROBLEMS,
    BenchError,
    Endpoint,
    Meter,
    Phase,
    drive,
    encode,
    fresh_database,
    running_server,
    supervision,
)
from workload import (
    SOURCE_ROOT,
    City,
    EventStream,
    Report,
    at_ref,
    code_state,
    cpu_note,
    free_port,
    running_command,
    stop_on_sigterm,
    wait_quiet,
)

from app.config import Settings

ROOT = Path(__file__).resolve().parent.parent
PEER = ROOT / "bench" / "peer.py"
SHIPPED_RULES = SOURCE_ROOT / "rules"  # those of the code measured (see --ref)
TARGETS = (("batch_ratio", True, 0.5), ("single_ratio", True, 0.5), ("p99_ratio", False, 2.0))


def rate_limit_switches() -> dict[str, str]:
    """Environment that turns the service's rate limits off, if it has any (SUPERVISION_RATE_LIMIT*)."""
    env = {}
    for name, info in Settings.model_fields.items():
        if name.startswith("rate_limit"):
            if info.annotation in (bool, "bool"):
                env[f"SUPERVISION_{name.upper()}"] = "false"
            elif "enabled" in name or name == "rate_limits":
                env[f"SUPERVISION_{name.upper()}"] = "false"
    return env


def count_rows(url: str, table: str) -> int:
    if url.startswith("sqlite"):
        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as conn:
            return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    with psycopg.connect(url) as pg:
        found = pg.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(found[0]) if found else 0


class Workload:
    """Request bodies built before any clock starts; warm-up bodies first in each list."""

    def __init__(self, args: argparse.Namespace) -> None:
        warm_batches = args.batch_concurrency
        n_single = args.warmup + args.events
        total = n_single + warm_batches * args.batch_size + args.batch_events
        city = City(seed=args.seed, operators=args.operators)
        month = EventStream(city, seed=args.seed, tag="CMP", per_day=1).month(total, days=30)
        stride = total // n_single
        chosen = set(range(0, stride * n_single, stride))
        singles = [event for i, event in enumerate(month) if i in chosen]
        rest = [event for i, event in enumerate(month) if i not in chosen]
        chunks = [rest[i : i + args.batch_size] for i in range(0, len(rest), args.batch_size)]
        self.operators = city.size
        self.first, self.last = month[0]["occurred_at"], month[-1]["occurred_at"]
        self.domains = {d: sum(e["domain"] == d for e in month) for d in sorted({e["domain"] for e in month})}
        self.singles = [encode(event) for event in singles]
        self.warm_singles = args.warmup
        self.batches = [encode({"events": chunk}) for chunk in chunks]
        self.batch_sizes = [len(chunk) for chunk in chunks]
        self.warm_batches = warm_batches
        self.total = total


def log_problems(path: Path) -> list[str]:
    return [line[:500] for line in path.read_text(errors="replace").splitlines() if LOG_PROBLEMS.search(line)][:20]


@dataclass
class Target:
    who: str
    endpoint: Endpoint
    url: str
    table: str
    log_path: Path
    extra: dict[str, Any]


@contextlib.contextmanager
def ours(kind: str, args: argparse.Namespace, tmp: Path, say: Report) -> Iterator[Target]:
    work = tmp / "ours"
    work.mkdir()
    with fresh_database(kind, work) as (url, name):
        env = {**os.environ, "SUPERVISION_DATABASE_URL": url, "SUPERVISION_BOOTSTRAP_ADMIN_KEY": secrets.token_hex(16)}
        env["SUPERVISION_RULES_DIR"] = str(SHIPPED_RULES)
        env.pop("SUPERVISION_SCAN_INTERVAL", None)  # no periodic scan competing with the measured load
        switches = rate_limit_switches()
        env.update(switches)
        # The peer writes no line per request; ours neither, unless --access-log measures what its access log costs.
        env["SUPERVISION_ACCESS_LOG"] = "true" if args.access_log else "false"
        if args.workers > 1:
            env["PROMETHEUS_MULTIPROC_DIR"] = str(work / "metrics")
            (work / "metrics").mkdir()
        supervision(env, "migrate")
        key = supervision(env, "keys", "create", "--name", "bench-source", "--role", "source").splitlines()[-1].strip()
        log_path = work / "server.log"
        with running_server(env, args.workers, log_path) as (port, server):
            limits = f"rate limits off by {switches}" if switches else "no SUPERVISION_RATE_LIMIT* setting to turn off"
            log = "access log on" if args.access_log else "access log off (as the peer)"
            say(f"[{kind}] ours: database {name}, port {port}, {args.workers} worker(s), {limits}, {log}")
            yield Target("ours", Endpoint(port, key, server.pid), url, "events", log_path, {"rate_limit_env": switches})


@contextlib.contextmanager
def peer(kind: str, args: argparse.Namespace, tmp: Path, say: Report) -> Iterator[Target]:
    work = tmp / "peer"
    work.mkdir()
    with fresh_database(kind, work) as (url, name):
        port = free_port()
        command = [sys.executable, str(PEER), "--port", str(port), "--workers", str(args.workers)]
        log_path = work / "peer.log"
        with running_command([*command, "--database-url", url], dict(os.environ), log_path, port) as pid:
            say(f"[{kind}] peer: database {name}, port {port}, {args.workers} worker(s)")
            yield Target("peer", Endpoint(port, "unused", pid), url, "peer_events", log_path, {})


def phase(to: Target, name: str, wl: Workload, args: argparse.Namespace) -> Phase:
    busy = wait_quiet(args.quiet_wait)
    print(f"  {to.who} {name}: box busy {busy:.0f}% of a core before it (waited up to {args.quiet_wait:g} s)")
    try:
        if name == "single":
            return asyncio.run(
                drive(to.endpoint, "single", wl.singles, wl.warm_singles, args.concurrency, [1] * len(wl.singles))
            )
        return asyncio.run(
            drive(to.endpoint, "batch", wl.batches, wl.warm_batches, args.batch_concurrency, wl.batch_sizes)
        )
    except BenchError as exc:
        raise BenchError(f"{to.who}: {exc}\n{to.who} log: {log_problems(to.log_path)[:5]}") from None


def run_both(kind: str, wl: Workload, args: argparse.Namespace, tmp: Path, say: Report) -> dict[str, Any]:
    """Both servers up at once (an idle one costs nothing), phases interleaved: ours single, peer single,
    ours batch, peer batch, so that other jobs on the box sway both sides alike."""
    out: dict[str, Any] = {}
    with ours(kind, args, tmp, say) as mine, peer(kind, args, tmp, say) as theirs:
        phases: dict[str, dict[str, Phase]] = {"ours": {}, "peer": {}}
        for name in ("single", "batch"):
            for to in (mine, theirs):
                phases[to.who][name] = phase(to, name, wl, args)
        for to in (mine, theirs):
            stored = count_rows(to.url, to.table)
            if stored != wl.total:
                raise BenchError(f"{to.who} stored {stored} events for {wl.total} accepted")
            out[to.who] = {"phases": phases[to.who], **to.extra}
        out["ours"]["alerts"] = count_rows(mine.url, "alerts")
    for to in (mine, theirs):
        out[to.who]["log_problems"] = log_problems(to.log_path)
    return out


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def bench_database(kind: str, wl: Workload, args: argparse.Namespace, say: Report) -> dict[str, Any]:
    with Meter() as idle:
        time.sleep(2)
    with tempfile.TemporaryDirectory(prefix="bench-compare-") as tmp:
        both = run_both(kind, wl, args, Path(tmp), say)
    o, p = both["ours"]["phases"], both["peer"]["phases"]
    ratios = {
        "batch_ratio": ratio(o["batch"].events_per_s, p["batch"].events_per_s),
        "single_ratio": ratio(o["single"].events_per_s, p["single"].events_per_s),
        "p99_ratio": ratio(o["single"].p99_ms, p["single"].p99_ms),
        "batch_cpu_per_event_ratio": ratio(o["batch"].server_cpu_ms_per_event, p["batch"].server_cpu_ms_per_event),
        "single_cpu_per_event_ratio": ratio(o["single"].server_cpu_ms_per_event, p["single"].server_cpu_ms_per_event),
    }
    targets = []
    for name, at_least, bound in TARGETS:
        value = ratios[name]
        ok = value is not None and (value >= bound if at_least else value <= bound)
        targets.append({"target": f"{name} {'≥' if at_least else '≤'} {bound:g}", "value": value, "pass": ok})
    return {
        "benchmark": "compare",
        "database": kind,
        "server_workers": args.workers,
        "concurrency": args.concurrency,
        "batch_size": args.batch_size,
        "batch_concurrency": args.batch_concurrency,
        "workload": {
            "operators": wl.operators,
            "events": wl.total,
            "single_posts": len(wl.singles),
            "batches": len(wl.batches),
            "first_occurred_at": wl.first,
            "last_occurred_at": wl.last,
            "by_domain": wl.domains,
        },
        "machine": {"nproc": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "box_busy_before_start_pct": idle.machine_cpu_pct,
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "code": code_state(),
        "ours": {**both["ours"], "phases": {k: asdict(v) for k, v in o.items()}},
        "peer": {**both["peer"], "phases": {k: asdict(v) for k, v in p.items()}},
        "ratios": ratios,
        "targets": targets,
    }


def report(r: dict[str, Any], say: Report) -> None:
    say(
        f"\ncompare — {r['database']}, {r['server_workers']} worker(s) each, singles from {r['concurrency']} "
        f"clients, batches of {r['batch_size']} from {r['batch_concurrency']}; {r['workload']['events']:,} events "
        f"of {r['workload']['operators']} operators, {r['workload']['first_occurred_at'][:10]} .. "
        f"{r['workload']['last_occurred_at'][:10]}; code {r['code']}; box busy before start "
        f"{r['box_busy_before_start_pct']}%"
    )
    cols = ("ev/s", "req/s", "p50 ms", "p99 ms", "max ms", "client%", "server%", "box%", "srv ms/ev")
    say(f"{'server':<6}{'phase':<7}{'reqs':>6}" + "".join(f"{c:>10}" for c in cols) + "  conns/worker")
    for who in ("ours", "peer"):
        for name, ph in r[who]["phases"].items():
            values = [
                ph["events_per_s"],
                ph["requests"] / ph["seconds"],
                ph["p50_ms"],
                ph["p99_ms"],
                ph["max_ms"],
                ph["client_cpu_pct"],
                ph["server_cpu_pct"],
                ph["machine_cpu_pct"],
            ]
            cells = "".join(f"{'-' if v is None else f'{v:,.1f}':>10}" for v in values)
            cells += f"{ph['server_cpu_ms_per_event']:>10.3f}"
            spread = "+".join(map(str, ph["connections_per_worker"])) or "-"
            say(f"{who:<6}{name:<7}{ph['requests']:>6}{cells}  {spread:>12}")
    for who in ("ours", "peer"):
        for name, ph in r[who]["phases"].items():
            say(f"  {who} {name}: {cpu_note(ph['client_cpu_pct'], ph['server_cpu_pct'])}")
    rt = r["ratios"]
    say(
        f"ours ÷ peer: batch ev/s {rt['batch_ratio']}, single req/s {rt['single_ratio']}, single p99 "
        f"{rt['p99_ratio']}; server CPU per event ours ÷ peer: batch {rt['batch_cpu_per_event_ratio']}, "
        f"single {rt['single_cpu_per_event_ratio']}; alerts raised by ours: {r['ours']['alerts']}"
    )
    for t in r["targets"]:
        say(f"  {'PASS' if t['pass'] else 'MISS'}  {t['target']}: {t['value']}")
    for who in ("ours", "peer"):
        for line in r[who]["log_problems"][:5]:
            say(f"  {who} log: {line}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--events", type=int, default=4000, help="single POSTs measured")
    parser.add_argument("--warmup", type=int, default=200, help="single POSTs before measuring")
    parser.add_argument("--concurrency", type=int, default=16, help="keep-alive clients for single POSTs")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--batch-events", type=int, default=50_000, help="events posted in measured batches")
    parser.add_argument("--batch-concurrency", type=int, default=4, help="keep-alive clients for batches")
    parser.add_argument("--workers", type=int, default=2, help="server worker processes (ours and the peer)")
    parser.add_argument("--operators", type=int, default=800)
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--out", default="bench/results/compare-{db}.json", help="JSON (and .md beside it)")
    parser.add_argument("--quiet-wait", type=float, default=60, help="seconds to wait for a quiet box per server")
    parser.add_argument(
        "--access-log", action="store_true", help="ours writes its access log (the peer writes none; default: off)"
    )
    parser.add_argument("--ref", help="measure this commit (e.g. HEAD) from a snapshot, not the working tree")
    args = parser.parse_args()
    if (code := at_ref(args.ref)) is not None:
        return code
    if not (0 < args.batch_size <= 1000 and min(args.events, args.batch_events, args.concurrency, args.workers) > 0):
        parser.error("--batch-size must be 1..1000; --events, --batch-events, --concurrency, --workers positive")
    stop_on_sigterm()
    wl = Workload(args)
    status = 0
    for kind in ("sqlite", "postgresql") if args.database == "both" else (args.database,):
        say = Report()
        try:
            result = bench_database(kind, wl, args, say)
        except (BenchError, TimeoutError, OSError, subprocess.SubprocessError, psycopg.Error) as exc:
            print(f"\n[{kind}] ERROR: {type(exc).__name__}: {exc}", file=sys.stderr)
            status = 1
            continue
        report(result, say)
        out = Path(args.out.replace("{db}", kind))
        say.write(out, f"compare — {kind}", " ".join(["python", *sys.argv]), result)
        print(f"  written to {out} and {out.with_suffix('.md')}")
    return status


if __name__ == "__main__":
    sys.exit(main())
