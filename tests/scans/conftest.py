"""Fixtures of the scan tests: two apps on the test database, one with the test rules and one with none."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.db import Database
from tests.alerts.test_router import COUNT_RULE, MORE_RULES, app_client, write_rules


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    return write_rules(tmp_path / "rules", COUNT_RULE + MORE_RULES)


@pytest.fixture
def rclient(settings: Settings, db: Database, rules_dir: Path) -> Iterator[TestClient]:
    """An app whose rules are the alerts tests' rules (t-count warns at 3 and trips at 4)."""
    with app_client(settings, rules_dir) as test_client:
        yield test_client


@pytest.fixture
def bare(settings: Settings, db: Database, tmp_path: Path) -> Iterator[TestClient]:
    """An app on the same database whose rules folder is empty: events are stored, no rule runs."""
    folder = tmp_path / "no-rules"
    folder.mkdir()
    with app_client(settings, folder) as test_client:
        yield test_client
