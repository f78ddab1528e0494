"""POST /v1/rules/reload: atomic in the worker that answers, adopted by every other worker within a second."""

from __future__ import annotations

import time
from pathlib import Path

import httpx2 as httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.config import Settings
from app.db import Database
from app.rules import state
from app.rules.models import RuleGeneration
from tests.conftest import KeyMaker, start_server, stop_server
from tests.factories import bearer
from tests.rules.test_router import MORE_RULES, RULES, app_client, write_rules


def rule_ids(client: TestClient | httpx.Client, key: str) -> list[str]:
    response = client.get("/v1/rules", headers=bearer(key))
    assert response.status_code == 200, response.text
    return [rule["id"] for rule in response.json()["items"]]


def generations(db: Database) -> int:
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(RuleGeneration)) or 0


def test_reload_puts_the_edited_files_in_force(
    settings: Settings, db: Database, tmp_path: Path, admin_key: str
) -> None:
    folder = write_rules(tmp_path / "rules", vr=RULES)
    with app_client(settings, folder) as client:
        assert rule_ids(client, admin_key) == ["t-bulk"]
        write_rules(folder, vh=MORE_RULES)
        assert rule_ids(client, admin_key) == ["t-bulk"]  # edited files wait for a reload
        response = client.post("/v1/rules/reload", headers=bearer(admin_key))
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["rules"] == 2
        assert body["generation"] == 1
        assert len(body["digest"]) == 64
        assert rule_ids(client, admin_key) == ["a-fines", "t-bulk"]
    assert generations(db) == 1


def test_a_bad_file_is_refused_and_the_rules_in_force_stay(
    settings: Settings, db: Database, tmp_path: Path, admin_key: str
) -> None:
    folder = write_rules(tmp_path / "rules", vr=RULES)
    with app_client(settings, folder) as client:
        write_rules(folder, vr=RULES.replace("trip_at: 5", "trip_at: 1"), vh=MORE_RULES)
        response = client.post("/v1/rules/reload", headers=bearer(admin_key))
        assert response.status_code == 422
        assert response.headers["content-type"].startswith("application/problem+json")
        assert [str(folder / "vr.yaml"), "t-bulk", "trip_at"] in [error["loc"] for error in response.json()["errors"]]
        assert rule_ids(client, admin_key) == ["t-bulk"]
        assert client.get("/readyz").status_code == 200
    assert generations(db) == 0


def test_reload_is_for_admins(settings: Settings, db: Database, tmp_path: Path, make_key: KeyMaker) -> None:
    folder = write_rules(tmp_path / "rules", vr=RULES)
    with app_client(settings, folder) as client:
        assert client.post("/v1/rules/reload").status_code == 401
        assert client.post("/v1/rules/reload", headers=bearer(make_key("inspector"))).status_code == 403
        assert client.post("/v1/rules/reload", headers=bearer(make_key("source"))).status_code == 403
    assert generations(db) == 0


def test_another_worker_adopts_a_reload_but_not_later_unreloaded_edits(
    settings: Settings, db: Database, tmp_path: Path, admin_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(state, "CHECK_EVERY_S", 0.0)
    folder = write_rules(tmp_path / "rules", vr=RULES)
    with app_client(settings, folder) as first, app_client(settings, folder) as second:
        write_rules(folder, vh=MORE_RULES)
        assert first.post("/v1/rules/reload", headers=bearer(admin_key)).status_code == 200
        assert rule_ids(second, admin_key) == ["a-fines", "t-bulk"]
        # A reload whose files are edited again before this worker reads them is not taken up.
        write_rules(folder, vr=RULES.replace("warn_at: 3", "warn_at: 4"))
        assert first.post("/v1/rules/reload", headers=bearer(admin_key)).status_code == 200
        (folder / "vh.yaml").unlink()
        assert rule_ids(second, admin_key) == ["a-fines", "t-bulk"]


@pytest.mark.e2e
def test_every_worker_of_a_real_server_serves_the_reloaded_rules(
    migrated: str, db: Database, tmp_path: Path, admin_key: str
) -> None:
    folder = write_rules(tmp_path / "rules", vr=RULES)
    server = start_server(migrated, tmp_path / "server.log", workers=2, env={"SUPERVISION_RULES_DIR": str(folder)})
    try:
        write_rules(folder, vh=MORE_RULES)
        with httpx.Client(base_url=server.base_url, timeout=30) as http:
            assert http.post("/v1/rules/reload", headers=bearer(admin_key)).status_code == 200
        deadline = time.monotonic() + 10
        seen: set[tuple[str, ...]] = set()
        while time.monotonic() < deadline:
            # Fresh connections, so both workers answer over the loop.
            seen = set()
            for _ in range(12):
                with httpx.Client(base_url=server.base_url) as fresh:
                    seen.add(tuple(rule_ids(fresh, admin_key)))
            if seen == {("a-fines", "t-bulk")}:
                break
            time.sleep(0.3)
        assert seen == {("a-fines", "t-bulk")}
    finally:
        stop_server(server)
