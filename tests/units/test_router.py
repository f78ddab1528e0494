"""PUT /v1/units/{id}, GET /v1/units and GET /v1/units/{id} (the org-unit tree, 单位) through the ASGI app."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import httpx2 as httpx
import pytest
from fastapi.testclient import TestClient

from app.db import Database
from tests.conftest import KeyMaker, Server
from tests.factories import bearer, make_event


def put(client: TestClient, key: str, unit_id: str, parent: str | None = None, **labels: str) -> Any:
    body: dict[str, Any] = {"label_zh": labels.get("label_zh", unit_id), "label_en": labels.get("label_en", unit_id)}
    if parent is not None:
        body["parent"] = parent
    return client.put(f"/v1/units/{unit_id}", json=body, headers=bearer(key))


def error_locs(response: Any) -> list[list[Any]]:
    return [error["loc"] for error in response.json()["errors"]]


def is_problem(response: Any, status: int) -> bool:
    return bool(
        response.status_code == status
        and response.headers["content-type"].startswith("application/problem+json")
        and response.json()["status"] == status
    )


def aware(text: str) -> datetime:
    parsed = datetime.fromisoformat(text)
    assert parsed.utcoffset() is not None, text
    return parsed


def build_tree(client: TestClient, admin_key: str) -> None:
    """ZD (支队) > DD1 > DD1-ZD1, ZD > DD2, and a separate top unit OTHER."""
    for unit_id, parent in [("ZD", None), ("DD1", "ZD"), ("DD1-ZD1", "DD1"), ("DD2", "ZD"), ("OTHER", None)]:
        assert put(client, admin_key, unit_id, parent).status_code == 201


def list_all(client: TestClient, key: str, **params: Any) -> list[str]:
    response = client.get("/v1/units", params=params, headers=bearer(key))
    assert response.status_code == 200, response.text
    assert response.json()["next_cursor"] is None
    return [item["id"] for item in response.json()["items"]]


# --- PUT /v1/units/{id} ------------------------------------------------------------------------


def test_put_creates_a_unit_and_answers_201_with_it(client: TestClient, admin_key: str) -> None:
    assert put(client, admin_key, "ZD", label_zh="支队", label_en="Detachment").status_code == 201
    response = put(client, admin_key, "DD1", "ZD", label_zh="一大队", label_en="Brigade 1")
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "parent", "label_zh", "label_en", "registered_by", "created_at", "updated_at"}
    assert body["id"] == "DD1"
    assert body["parent"] == "ZD"
    assert (body["label_zh"], body["label_en"]) == ("一大队", "Brigade 1")
    assert body["registered_by"] == "admin"
    assert aware(body["created_at"]) <= aware(body["updated_at"])


def test_put_again_replaces_the_unit_and_answers_200(client: TestClient, admin_key: str, inspector_key: str) -> None:
    put(client, admin_key, "ZD")
    first = put(client, admin_key, "DD1", "ZD", label_zh="一大队", label_en="Brigade 1").json()
    response = client.put(
        "/v1/units/DD1", json={"label_zh": "直属一大队", "label_en": "First Brigade"}, headers=bearer(admin_key)
    )
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == "DD1"
    assert (body["label_zh"], body["label_en"]) == ("直属一大队", "First Brigade")
    assert body["parent"] is None  # PUT replaces the whole unit: no parent sent, none kept
    assert aware(body["created_at"]) == aware(first["created_at"])
    assert aware(body["updated_at"]) >= aware(first["updated_at"])
    stored = client.get("/v1/units/DD1", headers=bearer(inspector_key)).json()
    assert stored == body


def test_put_with_an_explicit_null_parent_makes_a_top_unit(client: TestClient, admin_key: str) -> None:
    body = {"parent": None, "label_zh": "支队", "label_en": "Detachment"}
    response = client.put("/v1/units/ZD", json=body, headers=bearer(admin_key))
    assert response.status_code == 201
    assert response.json()["parent"] is None


def test_put_with_an_unknown_parent_is_422_and_stores_nothing(
    client: TestClient, admin_key: str, inspector_key: str
) -> None:
    response = put(client, admin_key, "DD1", "NO-SUCH-UNIT")
    assert is_problem(response, 422)
    assert error_locs(response) == [["body", "parent"]]
    assert client.get("/v1/units/DD1", headers=bearer(inspector_key)).status_code == 404


def test_moving_a_unit_below_its_own_child_is_422(client: TestClient, admin_key: str, inspector_key: str) -> None:
    put(client, admin_key, "A")
    put(client, admin_key, "B", "A")
    response = put(client, admin_key, "A", "B")
    assert is_problem(response, 422)
    assert error_locs(response) == [["body", "parent"]]
    assert client.get("/v1/units/A", headers=bearer(inspector_key)).json()["parent"] is None


def test_moving_a_unit_below_a_deeper_descendant_is_422(client: TestClient, admin_key: str) -> None:
    put(client, admin_key, "A")
    put(client, admin_key, "B", "A")
    put(client, admin_key, "C", "B")
    response = put(client, admin_key, "A", "C")
    assert is_problem(response, 422)
    assert error_locs(response) == [["body", "parent"]]


def test_a_unit_under_itself_is_422(client: TestClient, admin_key: str, inspector_key: str) -> None:
    put(client, admin_key, "A")
    response = put(client, admin_key, "A", "A")
    assert is_problem(response, 422)
    assert error_locs(response) == [["body", "parent"]]
    assert client.get("/v1/units/A", headers=bearer(inspector_key)).json()["parent"] is None


def test_a_new_unit_naming_itself_as_parent_is_422(client: TestClient, admin_key: str) -> None:
    response = put(client, admin_key, "A", "A")
    assert is_problem(response, 422)
    assert error_locs(response) == [["body", "parent"]]


def test_moving_a_unit_elsewhere_in_the_tree_is_allowed(client: TestClient, admin_key: str) -> None:
    build_tree(client, admin_key)
    response = put(client, admin_key, "DD1-ZD1", "DD2")
    assert response.status_code == 200
    assert response.json()["parent"] == "DD2"


def test_put_with_an_unknown_field_is_422(client: TestClient, admin_key: str) -> None:
    body = {"label_zh": "支队", "label_en": "Detachment", "colour": "blue"}
    response = client.put("/v1/units/ZD", json=body, headers=bearer(admin_key))
    assert is_problem(response, 422)
    assert ["body", "colour"] in error_locs(response)


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"label_en": "Detachment"}, ["body", "label_zh"]),
        ({"label_zh": "支队"}, ["body", "label_en"]),
        ({"label_zh": "", "label_en": "Detachment"}, ["body", "label_zh"]),
        ({"label_zh": "支队", "label_en": "x" * 201}, ["body", "label_en"]),
        ({"label_zh": "支队", "label_en": "Detachment", "parent": ""}, ["body", "parent"]),
    ],
)
def test_put_with_a_missing_or_bad_label_is_422(
    client: TestClient, admin_key: str, inspector_key: str, body: dict[str, Any], loc: list[Any]
) -> None:
    response = client.put("/v1/units/ZD", json=body, headers=bearer(admin_key))
    assert is_problem(response, 422)
    assert loc in error_locs(response)
    assert client.get("/v1/units/ZD", headers=bearer(inspector_key)).status_code == 404


def test_put_with_an_over_long_id_is_422(client: TestClient, admin_key: str) -> None:
    response = put(client, admin_key, "U" * 65)
    assert is_problem(response, 422)


def test_put_with_a_nul_in_the_id_is_422(client: TestClient, admin_key: str) -> None:
    body = {"label_zh": "支队", "label_en": "Detachment"}
    response = client.put("/v1/units/a%00b", json=body, headers=bearer(admin_key))
    assert is_problem(response, 422)
    assert ["path", "unit_id"] in error_locs(response)


def test_put_needs_a_key(client: TestClient, db: Database) -> None:
    response = client.put("/v1/units/ZD", json={"label_zh": "支队", "label_en": "Detachment"})
    assert is_problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("role", ["source", "inspector"])
def test_put_needs_the_admin_role(
    client: TestClient, make_key: KeyMaker, admin_key: str, inspector_key: str, role: str
) -> None:
    response = put(client, make_key(role, f"a-{role}"), "ZD")
    assert is_problem(response, 403)
    assert client.get("/v1/units/ZD", headers=bearer(inspector_key)).status_code == 404


def test_a_unit_first_named_by_an_event_is_taken_over_by_a_put(
    client: TestClient, admin_key: str, source_key: str, inspector_key: str
) -> None:
    event = make_event(operator={"id": "P1", "kind": "police", "unit": "NEW-WINDOW-9"})
    event_id = client.post("/v1/events", json=event, headers=bearer(source_key)).json()["id"]
    before = client.get("/v1/units/NEW-WINDOW-9", headers=bearer(inspector_key))
    assert before.status_code == 200
    assert before.json()["registered_by"] == "event"
    assert before.json()["parent"] is None
    put(client, admin_key, "ZD")

    response = put(client, admin_key, "NEW-WINDOW-9", "ZD", label_zh="九号窗口", label_en="Window 9")

    assert response.status_code == 200
    body = response.json()
    assert body["id"] == "NEW-WINDOW-9"
    assert body["registered_by"] == "admin"
    assert body["parent"] == "ZD"
    assert body["label_zh"] == "九号窗口"
    assert aware(body["created_at"]) == aware(before.json()["created_at"])
    assert client.get("/v1/units/NEW-WINDOW-9", headers=bearer(inspector_key)).json() == body
    stored_event = client.get(f"/v1/events/{event_id}", headers=bearer(inspector_key)).json()
    assert stored_event["operator"]["unit"] == "NEW-WINDOW-9"


def test_an_event_naming_a_registered_unit_leaves_it_as_it_was(
    client: TestClient, admin_key: str, source_key: str, inspector_key: str
) -> None:
    put(client, admin_key, "ZD")
    registered = put(client, admin_key, "DD1", "ZD", label_zh="一大队", label_en="Brigade 1").json()
    event = make_event(operator={"id": "P1", "kind": "police", "unit": "DD1"})
    assert client.post("/v1/events", json=event, headers=bearer(source_key)).status_code == 201
    assert client.get("/v1/units/DD1", headers=bearer(inspector_key)).json() == registered


def test_chinese_ids_and_labels_round_trip_unchanged(client: TestClient, admin_key: str, inspector_key: str) -> None:
    put(client, admin_key, "常德支队", label_zh="常德市公安局交通警察支队", label_en="Changde Traffic Police")
    response = put(
        client, admin_key, "常德-直属一大队", "常德支队", label_zh="直属一大队（车管所）", label_en="Brigade 1"
    )
    assert response.status_code == 201
    assert response.json()["id"] == "常德-直属一大队"
    stored = client.get("/v1/units/常德-直属一大队", headers=bearer(inspector_key)).json()
    assert stored["label_zh"] == "直属一大队（车管所）"
    assert stored["parent"] == "常德支队"
    listed = client.get("/v1/units", params={"parent": "常德支队"}, headers=bearer(inspector_key)).json()
    assert [(item["id"], item["label_zh"]) for item in listed["items"]] == [("常德-直属一大队", "直属一大队（车管所）")]


# --- GET /v1/units -----------------------------------------------------------------------------


def test_list_answers_items_and_next_cursor(client: TestClient, admin_key: str, inspector_key: str) -> None:
    build_tree(client, admin_key)
    response = client.get("/v1/units", headers=bearer(inspector_key))
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"items", "next_cursor"}
    assert body["next_cursor"] is None
    assert [item["id"] for item in body["items"]] == sorted(["ZD", "DD1", "DD1-ZD1", "DD2", "OTHER"])
    dd1 = next(item for item in body["items"] if item["id"] == "DD1")
    assert (dd1["parent"], dd1["registered_by"]) == ("ZD", "admin")


def test_list_of_no_units_is_empty(client: TestClient, inspector_key: str) -> None:
    assert client.get("/v1/units", headers=bearer(inspector_key)).json() == {"items": [], "next_cursor": None}


def test_admin_may_list_units(client: TestClient, admin_key: str) -> None:
    put(client, admin_key, "ZD")
    assert list_all(client, admin_key) == ["ZD"]


@pytest.mark.parametrize("limit", [1, 4, 5, 7])
def test_list_pages_by_id_without_gaps_or_repeats(
    client: TestClient, admin_key: str, inspector_key: str, limit: int
) -> None:
    ids = [f"U{n:02d}" for n in range(20)]
    for unit_id in reversed(ids):
        put(client, admin_key, unit_id)
    pages: list[list[str]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        response = client.get("/v1/units", params=params, headers=bearer(inspector_key))
        assert response.status_code == 200, response.text
        pages.append([item["id"] for item in response.json()["items"]])
        cursor = response.json()["next_cursor"]
        if cursor is None:
            break
        assert len(pages) <= len(ids), "paging does not end"
    seen = [unit_id for page in pages for unit_id in page]
    assert seen == ids
    assert all(len(page) == limit for page in pages[:-1])
    assert len(pages) == -(-len(ids) // limit)  # no empty page at the end


def test_list_defaults_to_fifty_per_page(client: TestClient, admin_key: str, inspector_key: str) -> None:
    for n in range(51):
        put(client, admin_key, f"U{n:02d}")
    page = client.get("/v1/units", headers=bearer(inspector_key)).json()
    assert len(page["items"]) == 50
    assert page["next_cursor"] is not None
    rest = client.get("/v1/units", params={"cursor": page["next_cursor"]}, headers=bearer(inspector_key)).json()
    assert [item["id"] for item in rest["items"]] == ["U50"]
    assert rest["next_cursor"] is None


def test_list_filters_by_parent(client: TestClient, admin_key: str, inspector_key: str) -> None:
    build_tree(client, admin_key)
    assert list_all(client, inspector_key, parent="ZD") == ["DD1", "DD2"]
    assert list_all(client, inspector_key, parent="DD1") == ["DD1-ZD1"]
    assert list_all(client, inspector_key, parent="DD2") == []
    assert list_all(client, inspector_key, parent="NO-SUCH-UNIT") == []


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({"limit": 501}, ["query", "limit"]),
        ({"limit": 0}, ["query", "limit"]),
        ({"limit": "many"}, ["query", "limit"]),
        ({"cursor": "garbage"}, ["query", "cursor"]),
    ],
)
def test_list_with_bad_parameters_is_422(
    client: TestClient, inspector_key: str, params: dict[str, Any], loc: list[Any]
) -> None:
    response = client.get("/v1/units", params=params, headers=bearer(inspector_key))
    assert is_problem(response, 422)
    assert loc in error_locs(response)


def test_list_accepts_the_largest_limit(client: TestClient, admin_key: str, inspector_key: str) -> None:
    put(client, admin_key, "ZD")
    assert list_all(client, inspector_key, limit=500) == ["ZD"]


def test_list_needs_an_inspector_key(client: TestClient, source_key: str) -> None:
    assert is_problem(client.get("/v1/units"), 401)
    assert is_problem(client.get("/v1/units", headers=bearer("sv_not-a-real-key")), 401)
    assert is_problem(client.get("/v1/units", headers=bearer(source_key)), 403)


def test_detail_needs_an_inspector_key(client: TestClient, admin_key: str, source_key: str) -> None:
    put(client, admin_key, "ZD")
    assert is_problem(client.get("/v1/units/ZD"), 401)
    assert is_problem(client.get("/v1/units/ZD", headers=bearer(source_key)), 403)


def test_detail_of_an_unknown_unit_is_404_problem(client: TestClient, inspector_key: str) -> None:
    response = client.get("/v1/units/NO-SUCH-UNIT", headers=bearer(inspector_key))
    assert is_problem(response, 404)
    assert {"type", "title", "status", "detail"} <= set(response.json())


def test_a_scoped_inspector_sees_only_its_unit_and_those_below(
    client: TestClient, admin_key: str, make_key: KeyMaker
) -> None:
    build_tree(client, admin_key)
    put(client, admin_key, "DD1-ZD1-CK", "DD1-ZD1")
    scoped = make_key("inspector", "dd1-inspector", unit="DD1")
    assert list_all(client, scoped) == ["DD1", "DD1-ZD1", "DD1-ZD1-CK"]
    assert list_all(client, scoped, parent="ZD") == ["DD1"]
    assert list_all(client, scoped, parent="DD1-ZD1") == ["DD1-ZD1-CK"]
    for inside in ("DD1", "DD1-ZD1", "DD1-ZD1-CK"):
        assert client.get(f"/v1/units/{inside}", headers=bearer(scoped)).status_code == 200
    for outside in ("ZD", "DD2", "OTHER"):
        assert is_problem(client.get(f"/v1/units/{outside}", headers=bearer(scoped)), 404)


def test_a_scoped_inspector_pages_within_its_units(client: TestClient, admin_key: str, make_key: KeyMaker) -> None:
    put(client, admin_key, "A")
    put(client, admin_key, "Z")
    inside = [f"A-{n}" for n in range(5)]
    for unit_id in inside:
        put(client, admin_key, unit_id, "A")
        put(client, admin_key, f"Z-{unit_id}", "Z")
    scoped = make_key("inspector", "a-inspector", unit="A")
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/units", params=params, headers=bearer(scoped)).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["A", *inside]


def test_a_scoped_inspector_sees_a_unit_moved_into_its_tree(
    client: TestClient, admin_key: str, make_key: KeyMaker
) -> None:
    build_tree(client, admin_key)
    scoped = make_key("inspector", "dd1-inspector", unit="DD1")
    assert client.get("/v1/units/OTHER", headers=bearer(scoped)).status_code == 404
    assert put(client, admin_key, "OTHER", "DD1-ZD1").status_code == 200
    assert client.get("/v1/units/OTHER", headers=bearer(scoped)).status_code == 200


# --- concurrent moves on the real server -------------------------------------------------------


@pytest.mark.e2e
def test_concurrent_opposite_moves_never_make_a_cycle(server: Server, make_key: KeyMaker) -> None:
    headers = bearer(make_key("admin"))
    rounds = 8

    def put_over_http(http: httpx.Client, unit_id: str, parent: str | None) -> int:
        body = {"parent": parent, "label_zh": unit_id, "label_en": unit_id}
        return http.put(f"/v1/units/{unit_id}", json=body).status_code

    with httpx.Client(base_url=server.base_url, headers=headers, timeout=30) as http:
        for n in range(rounds):
            assert put_over_http(http, f"A{n}", None) == 201
            assert put_over_http(http, f"B{n}", None) == 201

    barrier = threading.Barrier(2)

    def move(args: tuple[str, str]) -> int:
        with httpx.Client(base_url=server.base_url, headers=headers, timeout=30) as http:
            barrier.wait()
            return put_over_http(http, *args)

    with ThreadPoolExecutor(2) as pool:
        for n in range(rounds):
            codes = sorted(pool.map(move, [(f"A{n}", f"B{n}"), (f"B{n}", f"A{n}")]))
            assert codes == [200, 422], f"round {n}"

    with httpx.Client(base_url=server.base_url, headers=headers, timeout=30) as http:
        parents = {item["id"]: item["parent"] for item in http.get("/v1/units", params={"limit": 500}).json()["items"]}
    for n in range(rounds):
        assert {parents[f"A{n}"], parents[f"B{n}"]} in ({f"B{n}", None}, {f"A{n}", None})
