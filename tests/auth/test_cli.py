"""The `supervision` command as an operator runs it: a subprocess on the test database."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.auth.models import ApiKey
from app.auth.service import hash_secret, revoke_key
from app.db import Database
from tests.conftest import ROOT, KeyMaker
from tests.factories import bearer, make_event


def supervision(database_url: str, *args: str, columns: int | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SUPERVISION_DATABASE_URL": database_url}
    env.pop("SUPERVISION_BOOTSTRAP_ADMIN_KEY", None)
    if columns is not None:
        env["COLUMNS"] = str(columns)
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def key_id_of(db: Database, secret: str) -> int:
    with db.session() as session:
        key_id = session.scalar(select(ApiKey.id).where(ApiKey.key_hash == hash_secret(secret)))
    assert key_id is not None
    return key_id


def revoke_by_secret(db: Database, secret: str) -> None:
    with db.session(write=True) as session:
        revoke_key(session, key_id=key_id_of(db, secret))


def key_count(db: Database) -> int:
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(ApiKey)) or 0


def test_keys_create_prints_a_working_key_alone_on_the_last_line(
    migrated: str, client: TestClient, make_key: KeyMaker, db: Database
) -> None:
    done = supervision(migrated, "keys", "create", "--name", "vr-system", "--role", "source")
    assert done.returncode == 0, done.stderr
    last_line = done.stdout.rstrip("\n").splitlines()[-1]
    assert last_line == last_line.strip()
    assert " " not in last_line
    assert key_count(db) == 1

    response = client.post("/v1/events", json=make_event(), headers=bearer(last_line))
    assert response.status_code == 201
    assert client.get("/v1/units", headers=bearer(last_line)).status_code == 403  # a source key, as asked
    stored = client.get(f"/v1/events/{response.json()['id']}", headers=bearer(make_key("inspector"))).json()
    assert stored["source"] == "vr-system"


def test_keys_list_shows_names_and_prefixes_but_never_secrets(migrated: str, make_key: KeyMaker, db: Database) -> None:
    current = make_key("source", "vr-system")
    old = make_key("source", "old-system")
    revoke_by_secret(db, old)
    listed = supervision(migrated, "keys", "list", columns=200)
    everything = supervision(migrated, "keys", "list", "--all", columns=200)
    assert (listed.returncode, everything.returncode) == (0, 0), listed.stderr + everything.stderr
    assert "vr-system" in listed.stdout
    assert current[:9] in listed.stdout
    assert "old-system" not in listed.stdout  # revoked keys only with --all
    assert "old-system" in everything.stdout
    assert old[:9] in everything.stdout
    for secret in (current, old):
        assert secret[:16] not in listed.stdout + listed.stderr + everything.stdout + everything.stderr


def test_keys_list_shows_every_name_in_full_when_piped(migrated: str, make_key: KeyMaker) -> None:
    names = ["vr-system", "inspector-wang", "vehicle-registration-changde-production"]  # names may have 64 characters
    for role, name in zip(["source", "inspector", "source"], names, strict=True):
        make_key(role, name)
    done = supervision(migrated, "keys", "list", columns=80)
    assert done.returncode == 0, done.stderr
    for name in names:
        assert name in done.stdout


def test_keys_revoke_makes_the_key_401(migrated: str, client: TestClient, make_key: KeyMaker, db: Database) -> None:
    secret = make_key("source", "vr-system")
    assert client.post("/v1/events", json=make_event(), headers=bearer(secret)).status_code == 201
    done = supervision(migrated, "keys", "revoke", str(key_id_of(db, secret)))
    assert done.returncode == 0, done.stderr
    response = client.post("/v1/events", json=make_event(), headers=bearer(secret))
    assert response.status_code == 401


def test_keys_create_with_an_unknown_role_fails(migrated: str, db: Database) -> None:
    done = supervision(migrated, "keys", "create", "--name", "boss", "--role", "superuser")
    assert done.returncode != 0
    assert "role" in done.stderr
    assert key_count(db) == 0


def test_keys_create_scoped_to_an_unknown_unit_fails_with_a_message(migrated: str, db: Database) -> None:
    done = supervision(migrated, "keys", "create", "--name", "nope-inspector", "--role", "inspector", "--unit", "NOPE")
    assert done.returncode != 0
    assert "NOPE" in done.stderr
    assert "Traceback" not in done.stderr
    assert not re.search(r"\bsv_", done.stdout)
    assert key_count(db) == 0


def test_migrate_is_idempotent_and_keeps_the_data(migrated: str, client: TestClient, make_key: KeyMaker) -> None:
    key = make_key("admin")
    for _ in range(2):
        done = supervision(migrated, "migrate")
        assert done.returncode == 0, done.stderr
    assert client.get("/readyz").status_code == 200
    assert client.get("/v1/units", headers=bearer(key)).status_code == 200
