"""Loading the demo month through the ingest code, into the test database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import func, select

from app.db import Database
from app.demo.city import build_city
from app.demo.generate import generate
from app.demo.load import load_demo
from app.events.models import Event
from app.units.models import Unit

ROOT = Path(__file__).resolve().parents[2]


def count(db: Database, model: type[Event] | type[Unit]) -> int:
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def test_the_demo_posts_every_event_once_and_registers_the_unit_tree(db: Database) -> None:
    progress: list[tuple[int, int]] = []
    summary = load_demo(db, seed=7, days=1, scale=0.05, on_progress=lambda done, total: progress.append((done, total)))
    expected = generate(build_city(7), seed=7, days=1, scale=0.05)
    assert summary.events == len(expected) == summary.new
    assert summary.duplicates == 0
    assert count(db, Event) == len(expected)
    assert progress[-1] == (len(expected), len(expected))
    city = build_city(7)
    assert count(db, Unit) == len(city.units)
    with db.session() as session:
        window = session.get(Unit, "CD-DD1-CK1")
        assert window is not None
        assert window.parent_id == "CD-DD1"
        assert window.registered_by == "admin"
        sources = set(session.scalars(select(Event.source).distinct()))
    assert sources <= {"vr-system", "dt-system", "vi-system", "ah-system", "vh-system"}


def test_loading_the_same_month_again_posts_nothing(db: Database) -> None:
    load_demo(db, seed=7, days=1, scale=0.05)
    again = load_demo(db, seed=7, days=1, scale=0.05)
    assert again.already_loaded
    assert again.new == 0
    forced = load_demo(db, seed=7, days=1, scale=0.05, force=True)
    assert forced.new == 0
    assert forced.duplicates == forced.events


def test_the_demo_command_prints_a_summary_with_the_planted_stories(migrated: str, db: Database) -> None:
    env = {**os.environ, "SUPERVISION_DATABASE_URL": migrated, "COLUMNS": "200"}
    done = subprocess.run(
        [sys.executable, "-m", "app", "demo", "--days", "1", "--scale", "0.02"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "posted" in done.stdout
    assert "planted risk stories" in done.stdout
    assert "AG-047" in done.stdout  # the intermediary story's subject for seed 7
    assert count(db, Event) > 0
