"""A real server's whole log, at its most talkative (TRACE: uvicorn prints every ASGI message), holds
no API key and no whole object_ref, however the keys and refs were sent and whatever went wrong."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from urllib.parse import quote

import httpx2 as httpx
import pytest
from sqlalchemy import select

from app.auth.models import ApiKey
from app.auth.service import revoke_key
from app.db import Database
from app.logging import mask_object_ref
from tests.conftest import KeyMaker, start_server, stop_server
from tests.factories import bearer, make_event

pytestmark = pytest.mark.e2e


def test_no_key_and_no_whole_object_ref_reaches_the_log(
    migrated: str, make_key: KeyMaker, db: Database, tmp_path: Path
) -> None:
    bootstrap = "boot-" + secrets.token_urlsafe(24)
    source, inspector = make_key("source", "log-source"), make_key("inspector", "log-inspector")
    revoked = make_key("source", "log-revoked")
    with db.session(write=True) as session:
        key_id = session.scalar(select(ApiKey.id).where(ApiKey.name == "log-revoked"))
        assert key_id is not None
        revoke_key(session, key_id=key_id)
    wrong_issued = "sv_" + secrets.token_urlsafe(32)  # shaped like a key, never issued
    wrong_plain = "not-a-key-" + secrets.token_hex(12)  # shaped like nothing
    keys = [bootstrap, source, inspector, revoked, wrong_issued, wrong_plain]
    plate = f"湘J{secrets.randbelow(90000) + 10000}"
    id_number = f"43010219{secrets.randbelow(10**10):010d}"
    case = f"常公交认字〔2026〕第{secrets.randbelow(9000) + 1000}号"
    refs = [plate, id_number, case]

    log = tmp_path / "server.log"
    server = start_server(
        migrated, log, env={"SUPERVISION_BOOTSTRAP_ADMIN_KEY": bootstrap, "SUPERVISION_LOG_LEVEL": "TRACE"}
    )
    try:
        with httpx.Client(base_url=server.base_url, timeout=30) as http:
            for key in keys:
                http.get("/v1/events", headers=bearer(key))
                http.get(
                    "/v1/breakers/check", params={"subject_type": "operator", "subject_id": "P1"}, headers=bearer(key)
                )
                # keys where they do not belong: in the query string, in other headers
                http.get("/v1/events", params={"api_key": key, "token": key, "limit": 1})
                http.get(f"/v1/alerts?key={key}", headers={"X-Api-Key": key, "Cookie": f"session={key}"})
                http.get("/v1/events", headers={"Authorization": key})
                http.get("/v1/events", headers={"Authorization": f"Token {key}"})
            for ref in refs:
                event = make_event(object_ref=ref)
                assert http.post("/v1/events", json=event, headers=bearer(source)).status_code == 201
                assert http.post("/v1/events", json=event, headers=bearer(source)).status_code == 200
                changed = {**event, "agent_id": "AG-OTHER"}
                assert http.post("/v1/events", json=changed, headers=bearer(source)).status_code == 409
                bad = {**make_event(object_ref=ref), "occurred_at": "2026-11-21T09:30:00"}
                assert http.post("/v1/events", json=bad, headers=bearer(source)).status_code == 422
                batch = {"events": [make_event(object_ref=ref), {**make_event(object_ref=ref), "domain": "nope"}]}
                assert http.post("/v1/events/batch", json=batch, headers=bearer(bootstrap)).status_code == 422
                assert (
                    http.post("/v1/events", json=make_event(object_ref=ref), headers=bearer(revoked)).status_code == 401
                )
                assert http.get("/v1/events", params={"object_ref": ref}, headers=bearer(inspector)).status_code == 200
                http.post("/v1/events", content=json.dumps(event)[:-3], headers=bearer(source))
            assert http.get("/v1/events/99999999999999999999999", headers=bearer(inspector)).status_code in (404, 422)
            assert http.delete("/v1/events", headers=bearer(bootstrap)).status_code == 405
    finally:
        stop_server(server)

    text = log.read_text(encoding="utf-8")
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    # The log did see all of it: access lines of every request, the trace of the headers, the masks.
    assert sum(line["logger"] == "uvicorn.access" for line in lines) >= 6 * len(keys) + 8 * len(refs)
    assert "'query_string': b'api_key=[redacted]&token=[redacted]&limit=1'" in text
    assert f"object_ref={quote(mask_object_ref(plate), safe='*')}" in text
    for key in keys:
        assert key not in text, f"a key is in the log: {key[:8]}…"
        assert quote(key, safe="") not in text
    for ref in refs:
        for form in (ref, quote(ref, safe=""), quote(ref), json.dumps(ref)[1:-1]):
            assert form not in text, f"an object_ref is in the log whole: {mask_object_ref(ref)}"
