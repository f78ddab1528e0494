"""Fixtures of the audit tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.db import Database
from tests.alerts.test_router import app_client


@pytest.fixture
def bare(settings: Settings, db: Database, tmp_path: Path) -> Iterator[TestClient]:
    """An app on the test database whose rules folder is empty: events are stored, no rule runs."""
    folder = tmp_path / "no-rules"
    folder.mkdir()
    with app_client(settings, folder) as test_client:
        yield test_client
