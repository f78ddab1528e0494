"""How many concurrent writers SQLite serves well: N clients posting single events for a few seconds.

Run from the project root with the virtualenv's Python (only 127.0.0.1 is ever contacted):

    .venv/bin/python bench/sqlite_writers.py                                # 1, 4, 16, 64 writers, 1 worker
    .venv/bin/python bench/sqlite_writers.py --workers 2 --writers 1,8,32 --seconds 10

For each writer count it starts `supervision serve` (rate limits off) on a fresh SQLite file with the
shipped rules, lets N threads post distinct events one per request on keep-alive connections for the
given seconds, and prints the answers by status (201 stored, 503 the write lock not had within the busy
timeout), events/s and the p50/p99/max request time. Exits 1 if any answer is neither 201 nor 503.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx2 as httpx
from ingest import running_server, supervision  # bench/ingest.py (this folder is not a package: run as a script)

ROOT = Path(__file__).resolve().parent.parent


def measure(writers: int, workers: int, seconds: float, busy_timeout_ms: int | None) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="sqlite-writers-") as tmp:
        env = {**os.environ, "SUPERVISION_DATABASE_URL": f"sqlite:///{tmp}/bench.db"}
        env["SUPERVISION_RULES_DIR"] = str(ROOT / "rules")
        env["SUPERVISION_RATE_LIMIT_ENABLED"] = "false"
        env.pop("SUPERVISION_SCAN_INTERVAL", None)
        if busy_timeout_ms is not None:
            env["SUPERVISION_SQLITE_BUSY_TIMEOUT_MS"] = str(busy_timeout_ms)
        supervision(env, "migrate")
        key = supervision(env, "keys", "create", "--name", "bench-writers", "--role", "source").splitlines()[-1]
        with running_server(env, workers, Path(tmp, "server.log")) as (port, _server):
            codes: Counter[int] = Counter()
            times: list[float] = []
            lock = threading.Lock()
            start = threading.Barrier(writers + 1)
            stop = [0.0]

            def writer(n: int) -> None:
                headers = {"Authorization": f"Bearer {key.strip()}"}
                mine: list[tuple[int, float]] = []
                with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=120) as http:
                    start.wait()
                    i = 0
                    while time.monotonic() < stop[0]:
                        i += 1
                        event = {
                            "source_event_id": f"W{n}-{i}-{secrets.token_hex(4)}",
                            "domain": "vehicle_registration",
                            "action": "register",
                            "occurred_at": "2026-11-21T09:30:00+08:00",
                            "operator": {"id": f"P{n % 50:04d}", "kind": "police", "unit": "BENCH"},
                            "attributes": {"vehicle_type": "car"},
                        }
                        began = time.perf_counter()
                        status = http.post("/v1/events", json=event).status_code
                        mine.append((status, time.perf_counter() - began))
                with lock:
                    codes.update(status for status, _ in mine)
                    times.extend(took for _, took in mine)

            threads = [threading.Thread(target=writer, args=(n,)) for n in range(writers)]
            for thread in threads:
                thread.start()
            stop[0] = time.monotonic() + seconds
            start.wait()
            for thread in threads:
                thread.join()
    ordered = sorted(times)
    return {
        "writers": writers,
        "workers": workers,
        "seconds": seconds,
        "answers": dict(sorted(codes.items())),
        "events_per_s": round(codes[201] / seconds, 1),
        "p50_ms": round(statistics.median(ordered) * 1000, 1) if ordered else None,
        "p99_ms": round(ordered[int(len(ordered) * 0.99) - 1] * 1000, 1) if ordered else None,
        "max_ms": round(ordered[-1] * 1000, 1) if ordered else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writers", default="1,4,16,64", help="comma-separated writer counts")
    parser.add_argument("--workers", type=int, default=1, help="server worker processes")
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--busy-timeout-ms", type=int, default=None, help="SUPERVISION_SQLITE_BUSY_TIMEOUT_MS")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON lines as well")
    args = parser.parse_args()
    columns = ("201", "503", "other", "ev/s", "p50 ms", "p99 ms", "max ms")
    print(f"{'writers':>8}{'workers':>8}" + "".join(f"{c:>9}" for c in columns))
    bad = False
    for writers in (int(n) for n in args.writers.split(",")):
        row = measure(writers, args.workers, args.seconds, args.busy_timeout_ms)
        answers: dict[int, int] = row["answers"]  # type: ignore[assignment]
        other = sum(count for status, count in answers.items() if status not in (201, 503))
        bad = bad or other > 0
        print(
            f"{writers:>8}{args.workers:>8}{answers.get(201, 0):>9}{answers.get(503, 0):>9}{other:>9}"
            f"{row['events_per_s']:>9}{row['p50_ms']:>9}{row['p99_ms']:>9}{row['max_ms']:>9}",
            flush=True,
        )
        if args.json:
            print(json.dumps(row))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
