"""Fixtures of the console tests: the workflow tests' app (t-count and t-station rules) and its world."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.db import Database
from tests.console.support import build_world
from tests.workflow.support import OPERATOR_RULE, STATION_RULE, app_client, write_rules


@pytest.fixture
def cclient(settings: Settings, db: Database, tmp_path: Path) -> Iterator[TestClient]:
    with app_client(settings, write_rules(tmp_path / "rules", OPERATOR_RULE + STATION_RULE)) as test_client:
        yield test_client


@pytest.fixture
def world(cclient: TestClient, source_key: str, admin_key: str) -> dict[str, int]:
    return build_world(cclient, source_key, admin_key)
