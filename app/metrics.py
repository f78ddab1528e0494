"""Prometheus metrics; in multiprocess mode when several workers share PROMETHEUS_MULTIPROC_DIR."""

from __future__ import annotations

import os
from collections import Counter as Tally
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from starlette.types import Scope

from app.db import Database, after_commit, utcnow

REQUESTS = Counter(
    "supervision_http_requests_total",
    "HTTP requests answered, by route and status",
    ["method", "route", "status"],
)
LATENCY = Histogram(
    "supervision_http_request_duration_seconds",
    "Time to answer an HTTP request, by route",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
EVENTS_INGESTED = Counter(
    "supervision_events_ingested_total", "Events newly stored, by domain and source", ["domain", "source"]
)
EVENTS_DUPLICATE = Counter(
    "supervision_events_duplicate_total",
    "Events answered as duplicates of stored ones, by source",
    ["source"],
)


# The labelled children, looked up once per label set (labels() validates and locks on every call). The label
# sets are bounded: route templates, methods, statuses, domains and source key names.
@lru_cache(maxsize=4096)
def _requests(method: str, route: str, status: int) -> Any:
    return REQUESTS.labels(method=method, route=route, status=str(status))


@lru_cache(maxsize=1024)
def _latency(method: str, route: str) -> Any:
    return LATENCY.labels(method=method, route=route)


@lru_cache(maxsize=4096)
def _ingested(domain: str, source: str) -> Any:
    return EVENTS_INGESTED.labels(domain=domain, source=source)


def render(db: Database | None = None) -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        body = generate_latest(registry)
    else:
        body = generate_latest()
    if db is not None:
        body += _state(db)
    return body, CONTENT_TYPE_LATEST


class _AlertState:
    """Gauges read from the database when scraped, so every worker reports the same truth."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def collect(self) -> Iterable[GaugeMetricFamily]:
        from app.alerts.models import Alert
        from app.alerts.service import overdue_sql

        stages = GaugeMetricFamily("supervision_alerts", "Alerts by stage (cleared ones excluded)", labels=["stage"])
        overdue = GaugeMetricFamily("supervision_alerts_overdue", "Alerts in supervision past their due time")
        try:
            with self.db.session() as session:
                for stage, count in session.execute(
                    select(Alert.stage, func.count()).where(Alert.cleared.is_(False)).group_by(Alert.stage)
                ):
                    stages.add_metric([stage], count)
                overdue.add_metric([], session.scalar(select(func.count()).where(overdue_sql(utcnow()))) or 0)
        except SQLAlchemyError:
            return []  # the database is down: /readyz says so; the process metrics still answer
        return [stages, overdue]


def _state(db: Database) -> bytes:
    registry = CollectorRegistry()
    registry.register(_AlertState(db))
    return generate_latest(registry)


def count_after_commit(session: Session, *, source: str, new_domains: Iterable[str], duplicates: int) -> None:
    """Count ingested events once their transaction has committed, never for a rolled-back one."""
    tally = Tally(new_domains)

    def record() -> None:
        for domain, n in tally.items():
            _ingested(domain, source).inc(n)
        if duplicates:
            EVENTS_DUPLICATE.labels(source=source).inc(duplicates)

    after_commit(session, record)


def observe_request(scope: Scope, status: int, seconds: float) -> None:
    # The router records the matched route in the scope; requests refused before routing (413 on
    # Content-Length) or matching nothing (404) share one label, which keeps the label set bounded.
    path = getattr(scope.get("route"), "path", None)
    route = path if isinstance(path, str) else "unmatched"
    method = scope.get("method", "")
    _requests(method, route, status).inc()
    _latency(method, route).observe(seconds)
