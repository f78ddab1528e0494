"""API keys: stored only as a hash, checked on every request, revoked at once; the bootstrap admin key."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select, text

from app.auth.models import ApiKey
from app.auth.service import Role, authenticate, create_key, list_keys, revoke_key
from app.config import Settings
from app.db import Database
from app.errors import InvalidInput, NotFound
from app.main import create_app
from app.units.models import Unit
from tests.conftest import KeyMaker
from tests.factories import bearer, make_event

BOOTSTRAP_SECRET = "a" * 20 + "bootstrap"
UNIT_BODY = {"label_zh": "支队", "label_en": "Detachment"}


def key_id_of(db: Database, secret: str) -> int:
    digest = hashlib.sha256(secret.encode()).hexdigest()
    with db.session() as session:
        key_id = session.scalar(select(ApiKey.id).where(ApiKey.key_hash == digest))
    assert key_id is not None
    return key_id


def revoke(db: Database, secret: str) -> None:
    with db.session(write=True) as session:
        revoke_key(session, key_id=key_id_of(db, secret))


def stored_rows(db: Database) -> list[dict[str, Any]]:
    with db.session() as session:
        return [dict(row) for row in session.execute(text("SELECT * FROM api_keys")).mappings()]


def is_401(response: Any) -> bool:
    return bool(
        response.status_code == 401
        and response.headers["content-type"].startswith("application/problem+json")
        and response.headers["www-authenticate"].startswith("Bearer")
    )


def add_unit(db: Database, unit_id: str) -> None:
    with db.session(write=True) as session:
        session.add(Unit(id=unit_id, parent_id=None, label_zh=unit_id, label_en=unit_id, registered_by="admin"))


# --- the service -------------------------------------------------------------------------------


def test_a_created_key_stores_only_the_sha256_of_its_secret(db: Database) -> None:
    with db.session(write=True) as session:
        created = create_key(session, name="vr-system", role=Role.SOURCE)
    (row,) = stored_rows(db)
    assert row["key_hash"] == hashlib.sha256(created.secret.encode()).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", row["key_hash"])
    assert all(created.secret not in str(value) for value in row.values())
    assert created.secret.startswith(row["prefix"])
    assert len(row["prefix"]) < len(created.secret) // 2


def test_every_key_has_its_own_secret(db: Database) -> None:
    with db.session(write=True) as session:
        secrets = {create_key(session, name="vr-system", role=Role.SOURCE).secret for _ in range(20)}
    assert len(secrets) == 20
    assert all(len(secret) >= 32 for secret in secrets)


def test_authenticate_answers_the_keys_name_role_and_unit(db: Database) -> None:
    add_unit(db, "DD1")
    with db.session(write=True) as session:
        created = create_key(session, name="dd1-inspector", role=Role.INSPECTOR, unit_id="DD1")
    with db.engine.connect() as conn:
        principal = authenticate(conn, created.secret)
        assert authenticate(conn, created.secret + "x") is None
        assert authenticate(conn, "") is None
    assert principal is not None
    assert (principal.name, principal.role, principal.unit_id) == ("dd1-inspector", Role.INSPECTOR, "DD1")
    assert principal.key_id == created.key.id


def test_a_revoked_key_no_longer_authenticates_and_is_listed_only_with_revoked_ones(db: Database) -> None:
    with db.session(write=True) as session:
        kept = create_key(session, name="kept", role=Role.SOURCE)
        gone = create_key(session, name="gone", role=Role.SOURCE)
    with db.session(write=True) as session:
        revoked = revoke_key(session, key_id=gone.key.id)
        assert revoked.revoked_at is not None
    with db.engine.connect() as conn:
        assert authenticate(conn, gone.secret) is None
        assert authenticate(conn, kept.secret) is not None
    with db.session() as session:
        assert [key.name for key in list_keys(session)] == ["kept"]
        assert [key.name for key in list_keys(session, include_revoked=True)] == ["kept", "gone"]


def test_revoking_twice_keeps_the_first_revocation_time(db: Database) -> None:
    with db.session(write=True) as session:
        created = create_key(session, name="vr-system", role=Role.SOURCE)
    with db.session(write=True) as session:
        first = revoke_key(session, key_id=created.key.id).revoked_at
    with db.session(write=True) as session:
        again = revoke_key(session, key_id=created.key.id).revoked_at
    assert first is not None
    assert again == first


def test_revoking_an_unknown_key_is_not_found(db: Database) -> None:
    with pytest.raises(NotFound), db.session(write=True) as session:
        revoke_key(session, key_id=999_999)


def test_an_inspector_key_scoped_to_an_unknown_unit_is_refused(db: Database) -> None:
    with pytest.raises(InvalidInput) as refused, db.session(write=True) as session:
        create_key(session, name="nope-inspector", role=Role.INSPECTOR, unit_id="NOPE")
    assert [error["loc"] for error in refused.value.errors or []] == [["unit"]]
    assert "NOPE" in refused.value.detail
    assert stored_rows(db) == []


@pytest.mark.parametrize("role", [Role.SOURCE, Role.ADMIN])
def test_only_inspector_keys_may_be_scoped_to_a_unit(db: Database, role: Role) -> None:
    add_unit(db, "DD1")
    with pytest.raises(InvalidInput) as refused, db.session(write=True) as session:
        create_key(session, name="scoped", role=role, unit_id="DD1")
    assert [error["loc"] for error in refused.value.errors or []] == [["unit"]]
    assert stored_rows(db) == []


@pytest.mark.parametrize("name", ["", "   ", "x" * 65])
def test_a_key_needs_a_name_of_1_to_64_characters(db: Database, name: str) -> None:
    with pytest.raises(InvalidInput), db.session(write=True) as session:
        create_key(session, name=name, role=Role.SOURCE)
    assert stored_rows(db) == []


# --- over HTTP ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "method", "path", "body", "status"),
    [
        ("source", "POST", "/v1/events", make_event(), 201),
        ("inspector", "GET", "/v1/units", None, 200),
        ("admin", "PUT", "/v1/units/ZD", UNIT_BODY, 201),
        ("admin", "GET", "/v1/units", None, 200),
    ],
)
def test_keys_of_every_role_authenticate(
    client: TestClient,
    make_key: KeyMaker,
    role: str,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    status: int,
) -> None:
    response = client.request(method, path, json=body, headers=bearer(make_key(role)))
    assert response.status_code == status, response.text


def test_the_bearer_scheme_is_case_insensitive(client: TestClient, inspector_key: str) -> None:
    response = client.get("/v1/units", headers={"Authorization": f"bearer {inspector_key}"})
    assert response.status_code == 200


@pytest.mark.parametrize(
    "authorization",
    [
        "Basic dnItc3lzdGVtOnNlY3JldA==",
        "Bearer",
        "Bearer ",
        "Token sv_abc",
        "sv_abc",
        "Bearer sv_not-a-real-key",
    ],
)
def test_anything_but_a_known_bearer_key_is_401(client: TestClient, inspector_key: str, authorization: str) -> None:
    assert is_401(client.get("/v1/units", headers={"Authorization": authorization}))


def test_the_secret_under_another_scheme_is_401(client: TestClient, inspector_key: str) -> None:
    assert is_401(client.get("/v1/units", headers={"Authorization": f"Basic {inspector_key}"}))


def test_a_revoked_key_is_refused_on_the_very_next_request(client: TestClient, admin_key: str, db: Database) -> None:
    assert client.put("/v1/units/ZD", json=UNIT_BODY, headers=bearer(admin_key)).status_code == 201
    revoke(db, admin_key)
    assert is_401(client.put("/v1/units/ZD", json=UNIT_BODY, headers=bearer(admin_key)))
    assert is_401(client.get("/v1/units", headers=bearer(admin_key)))


def test_revoking_one_key_leaves_another_of_the_same_name_working(
    client: TestClient, make_key: KeyMaker, db: Database
) -> None:
    old = make_key("source", "vr-system")
    new = make_key("source", "vr-system")
    revoke(db, old)
    assert is_401(client.post("/v1/events", json=make_event(), headers=bearer(old)))
    assert client.post("/v1/events", json=make_event(), headers=bearer(new)).status_code == 201


def test_a_source_key_that_posted_before_is_refused_at_once_once_revoked(
    client: TestClient, make_key: KeyMaker, db: Database
) -> None:
    # The ingest routes remember keys they met; the statement storing the events checks them again.
    source = make_key("source", "vr-system")
    first = make_event(source_event_id="REVOKE-1")
    assert client.post("/v1/events", json=first, headers=bearer(source)).status_code == 201
    revoke(db, source)
    fresh = make_event(source_event_id="REVOKE-2")
    assert is_401(client.post("/v1/events", json=fresh, headers=bearer(source)))
    assert is_401(client.post("/v1/events", json=first, headers=bearer(source)))  # a duplicate too
    batch = {"events": [first, fresh, make_event(source_event_id="REVOKE-3")]}
    assert is_401(client.post("/v1/events/batch", json=batch, headers=bearer(source)))
    with db.session() as session:
        stored = session.scalars(text("SELECT source_event_id FROM events ORDER BY 1")).all()
    assert stored == ["REVOKE-1"]


def test_an_inspector_key_is_forbidden_to_post_events_and_revoked_it_is_unauthorized(
    client: TestClient, make_key: KeyMaker, db: Database
) -> None:
    inspector = make_key("inspector", "desk")
    assert client.post("/v1/events", json=make_event(), headers=bearer(inspector)).status_code == 403
    revoke(db, inspector)
    assert is_401(client.post("/v1/events", json=make_event(), headers=bearer(inspector)))


# --- the bootstrap admin key -------------------------------------------------------------------


@pytest.fixture
def bootstrap_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"bootstrap_admin_key": SecretStr(BOOTSTRAP_SECRET)})


def bootstrap_rows(db: Database) -> list[dict[str, Any]]:
    digest = hashlib.sha256(BOOTSTRAP_SECRET.encode()).hexdigest()
    return [row for row in stored_rows(db) if row["key_hash"] == digest]


def test_the_bootstrap_admin_key_works_after_start(bootstrap_settings: Settings, db: Database) -> None:
    with TestClient(create_app(bootstrap_settings)) as test_client:
        response = test_client.put("/v1/units/X", json=UNIT_BODY, headers=bearer(BOOTSTRAP_SECRET))
    assert response.status_code == 201
    (row,) = bootstrap_rows(db)
    assert row["role"] == "admin"
    assert all(BOOTSTRAP_SECRET not in str(value) for value in row.values())


def test_the_bootstrap_admin_key_is_made_once_across_starts(bootstrap_settings: Settings, db: Database) -> None:
    for _ in range(2):
        with TestClient(create_app(bootstrap_settings)) as test_client:
            assert test_client.get("/v1/units", headers=bearer(BOOTSTRAP_SECRET)).status_code == 200
    assert len(bootstrap_rows(db)) == 1


def test_a_revoked_bootstrap_admin_key_is_reactivated_by_the_next_start(
    bootstrap_settings: Settings, client: TestClient, db: Database
) -> None:
    with TestClient(create_app(bootstrap_settings)):
        pass
    revoke(db, BOOTSTRAP_SECRET)
    assert is_401(client.get("/v1/units", headers=bearer(BOOTSTRAP_SECRET)))
    with TestClient(create_app(bootstrap_settings)) as test_client:
        response = test_client.put("/v1/units/X", json=UNIT_BODY, headers=bearer(BOOTSTRAP_SECRET))
    assert response.status_code == 201
    assert len(bootstrap_rows(db)) == 1


def test_without_a_bootstrap_key_no_key_is_made(client: TestClient, db: Database) -> None:
    assert client.get("/healthz").status_code == 200
    assert stored_rows(db) == []
