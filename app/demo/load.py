"""Loads the demo city into a database through the same ingest code the business systems use."""

from __future__ import annotations

import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select

from app.alerts.evaluate import Evaluator
from app.alerts.inline import evaluate_stored
from app.db import Database
from app.demo.city import City, Unit, build_city
from app.demo.generate import SOURCES, DemoEvent, Story, generate, planted_stories
from app.demo.inspectors import Act, Done, plan
from app.demo.stories import extra_stories
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
    inspected: Done = field(default_factory=Done)  # what the demo's inspectors did (nothing unless asked)


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
    inspectors: bool = False,
) -> DemoSummary:
    """Register the city's units and post its month of events, in time order, at most 1000 per transaction.

    Idempotent: events already stored are answered as duplicates, and a database that already holds
    the whole month is left alone unless `force` is set. With an `evaluator`, the rules run on every
    stored event in its transaction, as they do for events posted to the API, at the time the events
    happened (the month is posted as it was lived). With `inspectors` too, the demo's inspectors
    (`app.demo.inspectors`) act between the events, each at its time; only on a database that held none
    of the month's events, so a second load never repeats their moves.
    """
    started = time.perf_counter()
    city = build_city(seed)
    events = generate(city, seed=seed, days=days, scale=scale)
    stories = planted_stories(city, seed=seed) + extra_stories(city, seed=seed)
    by_domain = Counter(event.body["domain"] for event in events)
    stored_before = _stored_demo_events(db)
    if not force and stored_before >= len(events):
        return DemoSummary(len(events), 0, len(events), dict(by_domain), len(city.units), stories, 0.0, True)
    if inspectors and evaluator is None:
        raise ValueError("the demo's inspectors act on alerts: load with an evaluator")

    _register_city(db, city)
    if evaluator is not None:
        ensure_built(db, evaluator.rules, evaluator.zone)
    acts: deque[Act] = deque()
    if inspectors and evaluator is not None and stored_before == 0:
        acts.extend(plan(city, evaluator.rules, seed=seed, days=days))
    done = Done()
    new = duplicates = posted = 0
    chunk: list[DemoEvent] = []

    def post() -> None:
        nonlocal new, duplicates, posted
        if not chunk:
            return
        per_source: defaultdict[str, list[DemoEvent]] = defaultdict(list)
        for event in chunk:
            per_source[event.source].append(event)
        arrived = max(_when(event) for event in chunk)
        with db.session(write=True) as session:
            for source, items in per_source.items():
                parsed = [EventIn.model_validate(item.body) for item in items]
                event_service.validate(parsed, batch=True)
                stored = event_service.ingest(session, source=source, events=parsed, batch=True)
                if evaluator is not None:
                    evaluate_stored(session, evaluator, source=source, stored=stored, now=arrived)
                new += sum(not item.duplicate for item in stored)
                duplicates += sum(item.duplicate for item in stored)
        posted += len(chunk)
        chunk.clear()
        if on_progress is not None:
            on_progress(posted, len(events))

    def act(step: Act) -> None:
        with db.session(write=True) as session:
            if step.run(session):
                done.acts.append((step.at, step.what))

    for event in events:
        while acts and acts[0].at <= _when(event):
            post()
            act(acts.popleft())
        chunk.append(event)
        if len(chunk) == CHUNK:
            post()
    post()
    while acts:
        act(acts.popleft())
    elapsed = time.perf_counter() - started
    return DemoSummary(
        len(events), new, duplicates, dict(by_domain), len(city.units), stories, elapsed, False, inspected=done
    )


def _when(event: DemoEvent) -> datetime:
    return datetime.fromisoformat(event.body["occurred_at"])
