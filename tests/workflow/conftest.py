"""Fixtures of the workflow tests: an app with a rule per subject kind, and an alert of each in warning."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.db import Database
from tests.workflow.support import (
    ASSIGNEE,
    OPERATOR_RULE,
    STATION_RULE,
    app_client,
    police,
    put_unit,
    raise_operator_alert,
    raise_station_alert,
    write_rules,
)


@pytest.fixture
def wclient(settings: Settings, db: Database, tmp_path: Path, admin_key: str) -> Iterator[TestClient]:
    """An app whose rules are t-count (per operator) and t-station (per business unit), with the unit DD1."""
    with app_client(settings, write_rules(tmp_path / "rules", OPERATOR_RULE + STATION_RULE)) as test_client:
        put_unit(test_client, admin_key, ASSIGNEE)
        yield test_client


@pytest.fixture
def alert_id(wclient: TestClient, source_key: str) -> int:
    """A t-count alert in warning whose subject is the police officer OP1."""
    return raise_operator_alert(wclient, source_key, police("OP1", "U1"))


@pytest.fixture
def station_alert_id(wclient: TestClient, source_key: str) -> int:
    """A t-station alert in warning whose subject is the inspection station IS-07."""
    return raise_station_alert(wclient, source_key, "IS-07")
