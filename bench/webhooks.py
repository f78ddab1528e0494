"""Webhooks benchmark: what subscriptions cost ingestion, and how fast deliveries go out.

Run from the project root (only 127.0.0.1 is ever contacted):

    .venv/bin/python bench/webhooks.py --database postgresql --out bench/results/webhooks-{db}.json
    .venv/bin/python bench/webhooks.py --database sqlite --batch-events 10000 --spacing 7

On a fresh database (dropped afterwards), `supervision serve --workers N` with the shipped rules and a
loopback receiver (a separate process answering 204 at once):

1. ingest: batches of registrations (bench/ingest.py's events and bare keep-alive client), alternately with
   no webhook and with 3 webhooks subscribed to every event type, twice each (none, 3, none, 3), each phase
   on fresh days so that every phase meets the same windows. The server delivers meanwhile, as it would.
   `--spacing` is the seconds between events: 7 (default) is an ordinary day of ~200 operators, where alerts
   change now and then; 0.5 packs 36 registrations per operator per hour, so nearly every event updates an
   alert (the worst case: a delivery row per event per webhook). Figure: events/s with 3 ÷ with none
   (target ≥ 0.9), the better of the two rounds of each.
2. delivery: with the server's delivery switched off (SUPERVISION_WEBHOOK_DELIVERY=false), events pile up
   pending deliveries for 3 webhooks (`--delivery-events`, 0.1 s apart: alerts change on most of them); the
   server is restarted with delivery on and the time until none is
   pending gives deliveries/s (three webhooks in parallel, each in sequence order).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2 as httpx
from ingest import (  # bench/ingest.py (this folder is not a package: run this file as a script)
    START,
    BenchError,
    Endpoint,
    drive,
    encode,
    fresh_database,
    make_event,
    running_server,
    supervision,
)
from sqlalchemy import func, select
from workload import MONTH_START, City, EventStream, stop_on_sigterm

from app.config import Settings
from app.db import Database
from app.webhooks.models import Webhook, WebhookDelivery
from app.webhooks.schemas import EventType

ALL_EVENTS = [event.value for event in EventType]  # subscribed to everything
RECEIVER = """
import asyncio, sys
async def handle(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\\r\\n\\r\\n")
            length = 0
            for line in head.split(b"\\r\\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            writer.write(b"HTTP/1.1 204 No Content\\r\\ncontent-length: 0\\r\\n\\r\\n")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]))
    async with server:
        await server.serve_forever()
asyncio.run(main())
"""


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def receiver() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", RECEIVER, str(port)])
    try:
        for _ in range(100):
            try:
                httpx.post(f"http://127.0.0.1:{port}/", content=b"{}", timeout=1, trust_env=False)
                break
            except httpx.HTTPError:
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/hook"
    finally:
        process.terminate()
        process.wait(timeout=10)


def batches(
    tag: str, day: int, count: int, size: int, spacing: float, seed: int, workload: str = "registrations"
) -> tuple[list[bytes], list[int]]:
    if workload == "city":  # an ordinary month of a detachment's business in five domains (bench/workload.py)
        events = EventStream(City(), seed=seed, tag=tag, per_day=1, start=MONTH_START + timedelta(days=day)).month(
            count
        )
    else:
        rng = random.Random(seed + day)
        events = []
        for i in range(count):
            event = make_event(rng, tag, i)
            event["occurred_at"] = (START + timedelta(days=day, seconds=spacing * i)).isoformat()
            events.append(event)
    chunks = [events[i : i + size] for i in range(0, len(events), size)]
    return [encode({"events": chunk}) for chunk in chunks], [len(chunk) for chunk in chunks]


def subscribe(port: int, admin: str, url: str, n: int) -> list[int]:
    ids = []
    for i in range(n):
        response = httpx.post(
            f"http://127.0.0.1:{port}/v1/webhooks",
            json={"url": f"{url}?n={i}", "events": ALL_EVENTS},
            headers={"Authorization": f"Bearer {admin}"},
            trust_env=False,
        )
        if response.status_code != 201:
            raise BenchError(f"subscribe: {response.status_code} {response.text[:300]}")
        ids.append(response.json()["id"])
    return ids


def unsubscribe(port: int, admin: str, ids: list[int]) -> None:
    for webhook_id in ids:
        response = httpx.delete(
            f"http://127.0.0.1:{port}/v1/webhooks/{webhook_id}",
            headers={"Authorization": f"Bearer {admin}"},
            trust_env=False,
        )
        if response.status_code != 204:
            raise BenchError(f"unsubscribe: {response.status_code}")


def count(db: Database, status: str | None = None) -> int:
    """Deliveries written (with `status`: of live webhooks only)."""
    with db.session() as session:
        query = select(func.count()).select_from(WebhookDelivery)
        if status is not None:
            live = select(Webhook.id).where(Webhook.deleted_at.is_(None))
            query = query.where(WebhookDelivery.status == status, WebhookDelivery.webhook_id.in_(live))
        return session.scalar(query) or 0


def bench_database(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-webhooks-") as tmp, fresh_database(kind, Path(tmp)) as (url, _):
        admin = secrets.token_hex(16)
        env = {
            **os.environ,
            "SUPERVISION_DATABASE_URL": url,
            "SUPERVISION_BOOTSTRAP_ADMIN_KEY": admin,
            "SUPERVISION_WEBHOOK_CACHE_TTL": "2",
        }
        if args.workers > 1:
            env["PROMETHEUS_MULTIPROC_DIR"] = str(Path(tmp, "metrics"))
            Path(tmp, "metrics").mkdir()
        supervision(env, "migrate")
        key = supervision(env, "keys", "create", "--name", "bench-source", "--role", "source").splitlines()[-1].strip()
        db = Database(Settings(database_url=url))
        phases: list[dict[str, Any]] = []
        with receiver() as hook_url:
            ingest_env = env if args.sender == "on" else {**env, "SUPERVISION_WEBHOOK_DELIVERY": "false"}
            with running_server(ingest_env, args.workers, Path(tmp, "server.log")) as (port, server):
                to = Endpoint(port, key, server.pid)
                day = 0
                for round_ in (1, 2):
                    for subscribed in (0, 3):
                        ids = subscribe(port, admin, hook_url, subscribed) if subscribed else []
                        time.sleep(2.5)  # every worker's cached list of webhooks is read again (TTL 2 s)
                        day += 35 if args.workload == "city" else 2
                        bodies, sizes = batches(
                            f"R{day}", day, args.batch_events, args.batch_size, args.spacing, args.seed, args.workload
                        )
                        before = count(db)
                        phase = asyncio.run(drive(to, "batch", bodies, 1, args.batch_concurrency, sizes))
                        written = count(db) - before
                        print(
                            f"[{kind}] round {round_}, {subscribed} webhooks: {phase.events_per_s:.0f} events/s, "
                            f"{written} deliveries written"
                        )
                        phases.append(
                            {"round": round_, "webhooks": subscribed, "events_per_s": phase.events_per_s,
                             "events": phase.events, "deliveries_written": written,
                             "server_cpu_ms_per_event": phase.server_cpu_ms_per_event}
                        )  # fmt: skip
                        if ids:
                            unsubscribe(port, admin, ids)
            none = max(p["events_per_s"] for p in phases if p["webhooks"] == 0)
            three = max(p["events_per_s"] for p in phases if p["webhooks"] == 3)

            # Delivery: pile up deliveries with delivery off, then measure the drain with it on.
            off = {**env, "SUPERVISION_WEBHOOK_DELIVERY": "false"}
            with running_server(off, args.workers, Path(tmp, "server-off.log")) as (port, server):
                subscribe(port, admin, hook_url, 3)
                time.sleep(2.5)
                bodies, sizes = batches("D", 40, args.delivery_events, args.batch_size, 0.1, args.seed)
                asyncio.run(drive(Endpoint(port, key, server.pid), "batch", bodies, 1, args.batch_concurrency, sizes))
            pending = count(db, "pending")
            started = time.perf_counter()
            with running_server(env, args.workers, Path(tmp, "server-on.log")):
                while count(db, "pending") > 0:
                    if time.perf_counter() - started > 600:
                        raise BenchError("deliveries not drained within 600 s")
                    time.sleep(0.2)
                drained_s = time.perf_counter() - started
        db.dispose()
    return {
        "benchmark": "webhooks",
        "database": kind,
        "server_workers": args.workers,
        "workload": args.workload,
        "sender_during_ingest": args.sender,
        "spacing_s": args.spacing if args.workload == "registrations" else None,
        "batch_size": args.batch_size,
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "ingest_phases": phases,
        "ingest_events_per_s_none": none,
        "ingest_events_per_s_3_webhooks": three,
        "ingest_ratio": round(three / none, 3),
        "ingest_target": "ratio ≥ 0.9",
        "delivery": {
            "deliveries": pending,
            "seconds_incl_server_start": round(drained_s, 2),
            "deliveries_per_s": round(pending / drained_s, 1),
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="postgresql")
    parser.add_argument("--batch-events", type=int, default=20_000, help="events per ingest phase")
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--batch-concurrency", type=int, default=4)
    parser.add_argument("--workload", choices=("registrations", "city"), default="registrations")
    parser.add_argument("--sender", choices=("on", "off"), default="on", help="off: measure the outbox alone")
    parser.add_argument("--spacing", type=float, default=7.0, help="seconds between events (0.5: the worst case)")
    parser.add_argument(
        "--delivery-events", type=int, default=6_000, help="events (0.1 s apart) that pile up deliveries"
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=20261129)
    parser.add_argument("--out", default=None, help="JSON output; {db} is replaced")
    args = parser.parse_args()
    stop_on_sigterm()
    result = bench_database(args.database, args)
    print(json.dumps(result, ensure_ascii=False, indent=2))
    if args.out:
        out = Path(args.out.replace("{db}", args.database))
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
