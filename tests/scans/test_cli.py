"""`supervision scan [--from T] [--to T]` on the test database, through typer's CliRunner."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner, Result

from app.cli import cli
from app.config import get_settings
from tests.alerts.test_router import list_alerts, police
from tests.factories import bearer
from tests.scans.test_router import store_without_rules

Scan = Callable[..., Result]


@pytest.fixture
def scan(migrated: str, rules_dir: Path) -> Iterator[Scan]:
    """Runs `supervision scan ARGS` with the test database and the test rules in its environment."""

    def run(*args: str, rules: Path = rules_dir) -> Result:
        env = {"SUPERVISION_DATABASE_URL": migrated, "SUPERVISION_RULES_DIR": str(rules)}
        get_settings.cache_clear()  # settings are read once per process: make this run read its own
        return CliRunner().invoke(cli, ["scan", *args], env=env)

    yield run
    get_settings.cache_clear()


def said(text: str) -> str:
    """Output with line wrapping undone (rich wraps long messages to the terminal width)."""
    return " ".join(text.split())


def scans(client: TestClient, key: str) -> list[dict[str, object]]:
    response = client.get("/v1/scans", headers=bearer(key))
    assert response.status_code == 200, response.text
    items: list[dict[str, object]] = response.json()["items"]
    return items


def test_scan_raises_the_alerts_and_prints_a_summary(
    bare: TestClient, rclient: TestClient, scan: Scan, source_key: str, inspector_key: str
) -> None:
    store_without_rules(bare, source_key, police("OP1"))

    result = scan()

    assert result.exit_code == 0, result.output
    summary = said(result.stdout)
    assert "alerts raised 1" in summary
    assert "breakers tripped 1" in summary
    assert "4 events" in summary
    (alert,) = list_alerts(rclient, inspector_key)
    assert (alert["subject_id"], alert["value"], alert["tripped"]) == ("OP1", 4, True)
    (run,) = scans(rclient, inspector_key)
    assert (run["trigger"], run["status"], run["alerts_raised"]) == ("cli", "done", 1)
    assert f"scan {run['id']} done" in summary


def test_a_second_scan_raises_nothing(bare: TestClient, scan: Scan, source_key: str) -> None:
    store_without_rules(bare, source_key, police("OP1"))
    assert scan().exit_code == 0
    again = scan()
    assert again.exit_code == 0, again.output
    assert "alerts raised 0, updated 0, cleared 0; breakers tripped 0" in said(again.stdout)


def test_scan_covers_only_the_range_given(
    bare: TestClient, rclient: TestClient, scan: Scan, source_key: str, inspector_key: str
) -> None:
    store_without_rules(bare, source_key, police("OP1"))  # on 2026-11-21

    result = scan("--from", "2026-11-22T00:00:00+08:00", "--to", "2026-11-23T00:00:00+08:00")

    assert result.exit_code == 0, result.output
    assert "0 events" in said(result.stdout)
    assert "alerts raised 0" in said(result.stdout)
    assert list_alerts(rclient, inspector_key) == []
    (run,) = scans(rclient, inspector_key)
    assert run["from"] == "2026-11-21T16:00:00Z"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "2026-11-21T09:00:00"], "--from: '2026-11-21T09:00:00' has no UTC offset"),
        (["--to", "2026-11-21T09:00:00"], "--to: '2026-11-21T09:00:00' has no UTC offset"),
        (["--from", "soon"], "is not an RFC 3339 time"),
        (["--from", "2026-11-21T10:00:00+08:00", "--to", "2026-11-21T09:00:00+08:00"], "--to must be after --from"),
    ],
)
def test_a_bad_time_exits_1_with_a_message_and_runs_nothing(
    rclient: TestClient, scan: Scan, inspector_key: str, args: list[str], message: str
) -> None:
    result = scan(*args)
    assert result.exit_code == 1
    assert message in said(result.stderr)
    assert scans(rclient, inspector_key) == []


def test_a_bad_rules_folder_exits_1_naming_the_rule(
    rclient: TestClient, scan: Scan, inspector_key: str, tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "bad.yaml").write_text("- id: t-bad\n  type: count\n", encoding="utf-8")
    result = scan(rules=broken)
    assert result.exit_code == 1
    assert "t-bad" in said(result.stderr)
    assert scans(rclient, inspector_key) == []
