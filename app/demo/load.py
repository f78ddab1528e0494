"""Loads the demo city into a database through the same ingest code the business systems use."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import func, select

from app.alerts.evaluate import Evaluator
from app.alerts.inline import evaluate_stored
from app.db import Database, utcnow
from app.demo.city import City, Unit, build_city
from app.demo.generate import SOURCES, DemoEvent, Story, generate, planted_stories
from app.events import service as event_service
from app.events.models import Event
from app.events.schemas import EventIn
from app.rules.aggregates import ensure_built
from app.units import service as unit_service

CHUNK = 1000  # events per transaction, the largest batch a business system may post


@dataclass(frozen=True)
class DemoSummary:
    events: int
    new: int
    duplicates: int
    by_domain: dict[str, int]
    units: int
    stories: tuple[Story, ...]
    seconds: float
    already_loaded: bool


def by_depth(units: tuple[Unit, ...]) -> list[Unit]:
    """Parents before children, so every PUT finds its parent registered."""
    parent = {unit.id: unit.parent for unit in units}

    def depth(unit_id: str) -> int:
        above = parent.get(unit_id)
        return 0 if above is None else 1 + depth(above)

    return sorted(units, key=lambda unit: (depth(unit.id), unit.id))


def _register_city(db: Database, city: City) -> None:
    with db.session(write=True) as session:
        for unit in by_depth(city.units):
            unit_service.put_unit(
                session,
                unit_id=unit.id,
                parent=unit.parent,
                label_zh=unit.label_zh,
                label_en=unit.label_en,
                actor="demo",
            )


def _stored_demo_events(db: Database) -> int:
    sources = sorted({source for source, _ in SOURCES.values()})
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(Event).where(Event.source.in_(sources))) or 0


def load_demo(
    db: Database,
    *,
    seed: int,
    days: int,
    scale: float = 1.0,
    on_progress: Callable[[int, int], None] | None = None,
    force: bool = False,
    evaluator: Evaluator | None = None,
) -> DemoSummary:
    """Register the city's units and post its month of events, in time order, 1000 per transaction.

    Idempotent: events already stored are answered as duplicates, and a database that already holds
    the whole month is left alone unless `force` is set. With an `evaluator`, the rules run on every
    stored event in its transaction, as they do for events posted to the API.
    """
    started = time.perf_counter()
    city = build_city(seed)
    events = generate(city, seed=seed, days=days, scale=scale)
    stories = planted_stories(city, seed=seed)
    by_domain = Counter(event.body["domain"] for event in events)
    if not force and _stored_demo_events(db) >= len(events):
        return DemoSummary(len(events), 0, len(events), dict(by_domain), len(city.units), stories, 0.0, True)

    _register_city(db, city)
    if evaluator is not None:
        ensure_built(db, evaluator.rules, evaluator.zone)
    new = duplicates = done = 0
    for start in range(0, len(events), CHUNK):
        chunk = events[start : start + CHUNK]
        per_source: defaultdict[str, list[DemoEvent]] = defaultdict(list)
        for event in chunk:
            per_source[event.source].append(event)
        with db.session(write=True) as session:
            for source, items in per_source.items():
                parsed = [EventIn.model_validate(item.body) for item in items]
                event_service.validate(parsed, batch=True)
                stored = event_service.ingest(session, source=source, events=parsed, batch=True)
                if evaluator is not None:
                    evaluate_stored(session, evaluator, source=source, stored=stored, now=utcnow())
                new += sum(not item.duplicate for item in stored)
                duplicates += sum(item.duplicate for item in stored)
        done += len(chunk)
        if on_progress is not None:
            on_progress(done, len(events))
    elapsed = time.perf_counter() - started
    return DemoSummary(len(events), new, duplicates, dict(by_domain), len(city.units), stories, elapsed, False)
