"""Contention: 64 connections to a real four-worker server hammer a few hot subjects with single
events and small batches (late ones too, and some sent twice) while pairs of scans run at once;
afterwards the stored alerts are exactly what the reference evaluator finds over the stored events.

The workload is deterministic from a seed and posted in three phases separated by a barrier: the
on-time events (in time order), then late events (into spike baseline windows, and passing inspections,
so spike and ratio alerts raised earlier fall back and clear), then more late events (baselines again,
and failing inspections, so some cleared ratio alerts are raised again). Two scans run at the same time
in each of the first two phases, while the posting goes on; the last phase is left to inline evaluation
alone, so that a scan cannot mend what inline evaluation got wrong. At each barrier the stored events
are known, so the alerts that must have been cleared, and un-cleared, are known too.

Checks: every event stored once (exactly one "new" answer per event, whatever the resends and
retries); one alert per (rule, subject, window start); the alerts not cleared are exactly the reference
findings, with equal value, hits, tripped, window and first/last event times and evidence; a cleared
alert's window measures under ``warn_at`` now; a finding at a barrier that is gone at the end is a
cleared alert, and one that came back was cleared and then updated (audit); every tripped finding has
an open breaker, and no (rule, subject) has two breakers; the audit chain verifies; and a last scan has
nothing left to change.

A 503 with Retry-After (SQLite's write lock held past the busy timeout, a checkpoint waiting for
writers) is retried, as a business system would: posting is idempotent per source_event_id.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx2 as httpx
import pytest

from app.rules.engine import Finding, evaluate, values
from app.rules.loader import load_rules
from app.rules.spec import RuleSet
from app.rules.sql import same_value
from tests.conftest import KeyMaker, start_server, stop_server
from tests.factories import bearer

pytestmark = pytest.mark.e2e
log = logging.getLogger("tests.contention")

SEED = 20261121
CLIENTS = 64
PHASES = 3
SCANNED_PHASES = 2  # two scans at once in each of the first two phases; the last is left to inline evaluation
ZONE_NAME = "Asia/Shanghai"
ZONE = ZoneInfo(ZONE_NAME)
START = datetime(2026, 11, 21, 9, 0, tzinfo=ZONE)  # the events span 09:00-12:00 local
QUARTERS = 12  # 15-minute windows in the span
MAX_RETRIES = 60
# Four workers on SQLite too: writers queue for the database's one write lock (BEGIN IMMEDIATE, 30 s busy
# timeout), each for a few milliseconds, so 64 connections wait well under the timeout; a 503 past it
# would be retried anyway.
WORKERS = 4

RULES_YAML = """\
# Rules the contention test's hot subjects cross (every type; thresholds tuned to the seeded workload).
- id: ct-count
  type: count
  label_zh: 单人单小时上户量
  label_en: Registrations by one operator in an hour
  domains: [vehicle_registration]
  filter: {action: register}
  group_by: operator
  window: 1h
  warn_at: 40
  trip_at: 50
  severity: high
- id: ct-ratio
  type: ratio
  label_zh: 检测站半小时不合格占比
  label_en: A station's share of failed inspections in half an hour
  domains: [vehicle_inspection]
  numerator: {attributes.result: fail}
  min_events: 6
  group_by: business_unit
  window: 30m
  warn_at: 0.5
  trip_at: 0.75
  severity: medium
- id: ct-distinct
  type: distinct
  label_zh: 同一中介单小时经办人数
  label_en: Operators one intermediary works through in an hour
  domains: [vehicle_registration]
  field: operator.id
  group_by: agent
  window: 1h
  warn_at: 6
  trip_at: 9
  severity: high
- id: ct-sum
  type: sum
  label_zh: 连带责任民警名下单小时罚款金额
  label_en: Fines answerable to one officer in an hour
  domains: [violation_handling]
  filter: {attributes.fine_amount: {gte: 50}}
  field: attributes.fine_amount
  group_by: responsible_officer
  window: 1h
  warn_at: 8500
  trip_at: 10000
  severity: high
- id: ct-spike
  type: spike
  label_zh: 单人一刻钟业务量突增
  label_en: An operator's business in a quarter hour far above the two before
  domains: [vehicle_registration]
  filter: {action: {in: [register, transfer]}}
  group_by: operator
  window: 15m
  baseline_windows: 2
  min_events: 4
  warn_at: 3
  trip_at: 6
  severity: medium
- id: ct-off-hours
  type: off_hours
  label_zh: 非工作时间办理登记
  label_en: Registrations outside office hours
  domains: [vehicle_registration]
  allowed_hours: "09:30-11:30"
  group_by: org_unit
  window: 1d
  warn_at: 60
  trip_at: 100
  severity: low
"""

Operator = dict[str, Any]
HOT: dict[str, Operator] = {
    "P1": {"id": "P1", "kind": "police", "unit": "CT-U1", "responsible_officer": None},
    "A1": {"id": "A1", "kind": "auxiliary", "unit": "CT-U1", "responsible_officer": "P1"},
    "P2": {"id": "P2", "kind": "police", "unit": "CT-U2", "responsible_officer": None},
    "A2": {"id": "A2", "kind": "auxiliary", "unit": "CT-U2", "responsible_officer": "P2"},
}
STAFF: Operator = {"id": "S1", "kind": "staff", "unit": "CT-U2", "responsible_officer": "P1"}
OTHERS: list[Operator] = [
    {"id": f"O{i}", "kind": "police", "unit": "CT-U3", "responsible_officer": None} for i in range(1, 9)
]
# (operator, quarter hour) where registrations burst: the spike rule's hot windows.
BURSTS = {("P1", 3), ("P1", 7), ("P1", 10), ("A1", 5), ("A1", 11), ("P2", 2), ("P2", 8), ("A2", 6), ("A2", 9)}
FINES = [20, 45, 62.5, 99.75, 100, 150.1, 200, 333.33]


@dataclass
class Post:
    """One request: a single event, or a batch."""

    phase: int
    events: list[dict[str, Any]]
    batch: bool


@dataclass
class Workload:
    events: list[dict[str, Any]]  # every distinct event body
    phase_of: dict[str, int]  # source_event_id -> the phase it is first posted in
    posts: list[list[Post]]  # per phase, in posting order


def _late(rnd: random.Random, p: float) -> int:
    return rnd.choice([1, 2]) if rnd.random() < p else 0


def workload(seed: int) -> Workload:
    rnd = random.Random(seed)
    drafts: list[tuple[int, dict[str, Any], int]] = []  # (seconds after START, body, phase)

    def add(second: int, body: dict[str, Any], phase: int) -> None:
        drafts.append((second, body, phase))

    def registration(operator: dict[str, Any], agent: str | None) -> dict[str, Any]:
        action = "register" if rnd.random() < 0.85 else "transfer"
        vehicle = rnd.choice(["car", "new_energy", "motorcycle"])
        return {
            "domain": "vehicle_registration",
            "action": action,
            "operator": operator,
            "agent_id": agent,
            "attributes": {"vehicle_type": vehicle},
        }

    # Registrations by the hot operators: a few a quarter hour, bursts in some; the two quarter hours
    # before a burst (its spike baseline) arrive late half the time.
    for name, operator in HOT.items():
        for quarter in range(QUARTERS):
            n = rnd.randint(16, 40) if (name, quarter) in BURSTS else rnd.randint(4, 12)
            before_burst = (name, quarter + 1) in BURSTS or (name, quarter + 2) in BURSTS
            for _ in range(n):
                agent = rnd.choices(["AG-1", "AG-2", None], [3, 2, 5])[0]
                phase = rnd.choice([1, 2]) if before_burst and rnd.random() < 0.5 else _late(rnd, 0.1)
                add(quarter * 900 + rnd.randrange(900), registration(operator, agent), phase)
    # Other officers working through the intermediaries (the distinct rule's subjects).
    for operator in OTHERS:
        for hour in range(3):
            if rnd.random() < 0.6:
                for _ in range(rnd.randint(2, 6)):
                    agent = "AG-1" if rnd.random() < 0.7 else "AG-2"
                    add(hour * 3600 + rnd.randrange(3600), registration(operator, agent), _late(rnd, 0.2))
    # Inspections per station and half hour, each with its own failure rate; passes often come late
    # (the share of failures falls: alerts clear), failures sometimes later still (they come back).
    inspectors = [*HOT.values(), *OTHERS]
    for station in ("IS-1", "IS-2", "IS-3"):
        for half in range(6):
            fail_rate = rnd.choice([0.15, 0.4, 0.55, 0.7, 0.9])
            profile = rnd.choice(["steady", "passes late", "comeback"])
            for _ in range(rnd.randint(10, 25)):
                result = "fail" if rnd.random() < fail_rate else "pass"
                if profile == "steady":
                    phase = _late(rnd, 0.1)
                elif result == "pass":
                    phase = 1 if rnd.random() < (0.7 if profile == "passes late" else 0.5) else 0
                else:
                    phase = 2 if profile == "comeback" and rnd.random() < 0.5 else 0
                body = {
                    "domain": "vehicle_inspection",
                    "action": "inspection",
                    "operator": rnd.choice(inspectors),
                    "business_unit": {"id": station, "kind": "inspection_station"},
                    "attributes": {
                        "result": result,
                        "duration_seconds": rnd.randrange(60, 1200),
                        "vehicle_type": "car",
                    },
                }
                add(half * 1800 + rnd.randrange(1800), body, phase)
    # Fines answerable to P1 (P1, A1, and the staff member S1) and P2 (P2, A2).
    for operator in [*HOT.values(), STAFF]:
        for hour in range(3):
            for _ in range(rnd.randint(20, 45)):
                body = {
                    "domain": "violation_handling",
                    "action": rnd.choice(["penalty_issued", "record_modified"]),
                    "operator": operator,
                    "attributes": {"fine_amount": rnd.choice(FINES), "points": rnd.randint(0, 6)},
                }
                add(hour * 3600 + rnd.randrange(3600), body, _late(rnd, 0.2))

    drafts.sort(key=lambda draft: draft[0])
    events: list[dict[str, Any]] = []
    phase_of: dict[str, int] = {}
    by_phase: list[list[dict[str, Any]]] = [[] for _ in range(PHASES)]
    for i, (second, body, phase) in enumerate(drafts):
        event: dict[str, Any] = {
            "source_event_id": f"CT-{i:05d}",
            "occurred_at": (START + timedelta(seconds=second)).isoformat(),
            **body,
        }
        events.append(event)
        phase_of[event["source_event_id"]] = phase
        by_phase[phase].append(event)
    posts: list[list[Post]] = []
    for phase, listed in enumerate(by_phase):
        if phase > 0:
            rnd.shuffle(listed)  # late events come in any order
        cut: list[Post] = []
        i = 0
        while i < len(listed):
            size = 1 if rnd.random() < 0.55 else rnd.randint(2, 8)
            cut.append(Post(phase, listed[i : i + size], batch=size > 1))
            i += size
        # A few events are sent again by another connection (a retry after a lost answer).
        for event in rnd.sample(listed, len(listed) // 30):
            cut.insert(rnd.randrange(len(cut) + 1), Post(phase, [event], batch=False))
        posts.append(cut)
    return Workload(events=events, phase_of=phase_of, posts=posts)


# --- the run ------------------------------------------------------------------------------------------------------


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    new: Counter[str] = field(default_factory=Counter)  # source_event_id -> answers saying "stored now"
    requests: int = 0
    retries: int = 0
    failures: list[str] = field(default_factory=list)


def send(http: httpx.Client, tally: Tally, method: str, path: str, **options: Any) -> httpx.Response:
    """A request, sent again after a 503 with Retry-After once the time it asks for has passed (e.g. on
    PostgreSQL "too many clients": the workers' pools together may ask for more than max_connections)."""
    for _ in range(MAX_RETRIES):
        response = http.request(method, path, **options)
        if response.status_code == 503 and "retry-after" in response.headers:
            with tally.lock:
                tally.retries += 1
            time.sleep(float(response.headers["retry-after"]))
            continue
        return response
    raise AssertionError(f"{path}: still 503 after {MAX_RETRIES} tries")


def post(http: httpx.Client, item: Post, tally: Tally) -> None:
    if item.batch:
        response = send(http, tally, "POST", "/v1/events/batch", json={"events": item.events})
        assert response.status_code == 200, response.text
        answers = response.json()["items"]
    else:
        response = send(http, tally, "POST", "/v1/events", json=item.events[0])
        assert response.status_code in (200, 201), response.text
        answers = [response.json()]
        assert answers[0]["duplicate"] is (response.status_code == 200), response.text
    assert len(answers) == len(item.events)
    with tally.lock:
        tally.requests += 1
        for event, answer in zip(item.events, answers, strict=True):
            if not answer["duplicate"]:
                tally.new[event["source_event_id"]] += 1


def pages(
    http: httpx.Client, tally: Tally, path: str, params: dict[str, Any] | None = None
) -> Iterator[dict[str, Any]]:
    """Every item of a paged collection."""
    query: dict[str, Any] = {**(params or {}), "limit": 500}
    while True:
        response = send(http, tally, "GET", path, params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        yield from page["items"]
        if page["next_cursor"] is None:
            return
        query["cursor"] = page["next_cursor"]


AlertKey = tuple[str, str, datetime]


def findings(rules: RuleSet, events: list[dict[str, Any]]) -> dict[AlertKey, Finding]:
    return {(f.rule_id, f.subject_id, f.window_start): f for rule in rules for f in evaluate(rule, events, ZONE)}


def brief(item: dict[str, Any] | Finding) -> str:
    """An alert or a finding in one line, for a failure message."""
    if isinstance(item, Finding):
        return (
            f"finding {item.rule_id} {item.subject_id} {item.window_start:%H:%M}Z value {item.value:g} hits {item.hits}"
        )
    return (
        f"alert {item['id']} {item['rule_id']} {item['subject_id']} {item['window_start']} value {item['value']:g}"
        f" hits {item['hits']} tripped {item['tripped']} cleared {item['cleared']}"
    )


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def write_rules(folder: Path) -> RuleSet:
    folder.mkdir()
    (folder / "contention.yaml").write_text(RULES_YAML, encoding="utf-8")
    return load_rules(folder)  # what `supervision rules check` runs: raises on any problem


def test_contention_with_scans_matches_the_reference(migrated: str, make_key: KeyMaker, tmp_path: Path) -> None:
    # make_key uses the `db` fixture: the tables are emptied after the test (the server is stopped first).
    began = time.monotonic()
    rules = write_rules(tmp_path / "rules")
    assert {rule.type for rule in rules} == {"count", "ratio", "distinct", "sum", "spike", "off_hours"}
    work = workload(SEED)
    source, inspector, admin = (make_key(role, f"ct-{role}") for role in ("source", "inspector", "admin"))
    env = {"SUPERVISION_RULES_DIR": str(tmp_path / "rules"), "SUPERVISION_TIMEZONE": ZONE_NAME}
    server = start_server(migrated, tmp_path / "server.log", workers=WORKERS, env=env)
    try:
        tally = Tally()
        scans = run_clients(server.base_url, source, admin, work, tally)
        posted = time.monotonic()
        check_outcome(server.base_url, inspector, admin, rules, work, tally)
    finally:
        stop_server(server)
    log.info(
        f"contention: {len(work.events)} events in {tally.requests} requests, {tally.retries} retries;"
        f" posting {posted - began:.1f} s, whole test {time.monotonic() - began:.1f} s; scans"
        + "; ".join(
            f" {s['duration_ms']} ms, raised {s['alerts_raised']} updated {s['alerts_updated']}"
            f" cleared {s['alerts_cleared']}"
            for s in scans
        )
    )


def run_clients(base_url: str, source: str, admin: str, work: Workload, tally: Tally) -> list[dict[str, Any]]:
    """64 connections post their shares phase by phase. In each of the first SCANNED_PHASES phases two scans
    start at once after about half the phase's requests that are not a connection's last are answered, and
    before any connection sends its last request of the phase (so the scans overlap the posting)."""
    shares = [[work.posts[phase][i::CLIENTS] for phase in range(PHASES)] for i in range(CLIENTS)]
    total = sum(len(posts) for posts in work.posts)
    done = [0] * PHASES  # requests answered, per phase
    trigger = [sum(max(0, len(share[phase]) - 1) for share in shares) // 2 for phase in range(PHASES)]
    go = [threading.Event() for _ in range(PHASES)]
    started = [threading.Event() for _ in range(PHASES)]
    phase_barrier = threading.Barrier(CLIENTS)
    scan_barrier = threading.Barrier(2)
    scans: list[dict[str, Any]] = []

    def fail(who: str, exc: BaseException) -> None:
        with tally.lock:
            tally.failures.append(f"{who}: {type(exc).__name__}: {exc}")
        phase_barrier.abort()
        scan_barrier.abort()
        for event in (*go, *started):
            event.set()

    def client(i: int) -> None:
        try:
            with httpx.Client(base_url=base_url, headers=bearer(source), timeout=60) as http:
                for phase in range(PHASES):
                    share = shares[i][phase]
                    for j, item in enumerate(share):
                        if done[phase] >= trigger[phase]:
                            go[phase].set()
                        if j == len(share) - 1 and phase < SCANNED_PHASES:
                            assert started[phase].wait(timeout=60), "the scans did not start"
                        post(http, item, tally)
                        with tally.lock:
                            done[phase] += 1
                    go[phase].set()
                    phase_barrier.wait(timeout=120)
        except BaseException as exc:  # noqa: BLE001 - recorded, and the other threads are released
            fail(f"client {i}", exc)

    def scan() -> None:
        try:
            with httpx.Client(base_url=base_url, headers=bearer(admin), timeout=120) as http:
                for phase in range(SCANNED_PHASES):
                    assert go[phase].wait(timeout=120), "the posting did not get going"
                    scan_barrier.wait(timeout=60)
                    with tally.lock:
                        answered = tally.requests
                    started[phase].set()
                    response = send(http, tally, "POST", "/v1/scans", json={})
                    assert response.status_code == 201, response.text
                    answer = response.json()
                    assert answer["status"] == "done", answer
                    assert answered < total, "a scan started after the posting"
                    with tally.lock:
                        scans.append(answer)
        except BaseException as exc:  # noqa: BLE001 - recorded, and the other threads are released
            fail("scan", exc)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    threads += [threading.Thread(target=scan) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # The first failure first (the others are mostly threads released from a barrier).
    failures = sorted(tally.failures, key=lambda failure: "BrokenBarrierError" in failure)
    assert failures == [], failures[:3]
    assert len(scans) == 2 * SCANNED_PHASES
    return scans


def check_outcome(base_url: str, inspector: str, admin: str, rules: RuleSet, work: Workload, tally: Tally) -> None:
    # Every event stored, and answered as new exactly once whatever the resends and retries.
    ids = {event["source_event_id"] for event in work.events}
    assert set(tally.new) == ids
    assert {sid: n for sid, n in tally.new.items() if n != 1} == {}
    with httpx.Client(base_url=base_url, headers=bearer(inspector), timeout=60) as http:
        stored = list(pages(http, tally, "/v1/events"))
        assert Counter(event["source_event_id"] for event in stored) == Counter(ids)
        final = findings(rules, stored)

        # One alert per (rule, subject, window start); the ones not cleared are the findings, equal.
        alerts = list(pages(http, tally, "/v1/alerts"))  # no `cleared` filter: cleared ones too
        counted = Counter((a["rule_id"], a["subject_id"], at(a["window_start"])) for a in alerts)
        assert [key for key, n in counted.items() if n > 1] == [], "duplicate alerts"
        by_key = {(a["rule_id"], a["subject_id"], at(a["window_start"])): a for a in alerts}
        active = {key: a for key, a in by_key.items() if not a["cleared"]}
        missed, extra = sorted(final.keys() - active.keys()), sorted(active.keys() - final.keys())
        assert (missed, extra) == ([], []), [brief(final[k]) for k in missed] + [brief(active[k]) for k in extra]
        unequal = [
            (key, a, final[key])
            for key, a in active.items()
            if not (
                same_value(a["value"], final[key].value)
                and a["hits"] == final[key].hits
                and a["tripped"] == final[key].tripped
                and a["subject_type"] == final[key].subject_type
                and at(a["window_end"]) == final[key].window_end
                and at(a["first_event_at"]) == final[key].first_event_at
                and at(a["last_event_at"]) == final[key].last_event_at
            )
        ]
        assert unequal == [], [(brief(a), brief(f)) for _, a, f in unequal[:5]]
        for key, a in active.items():
            detail = send(http, tally, "GET", f"/v1/alerts/{a['id']}")
            assert detail.status_code == 200, detail.text
            evidence = detail.json()["evidence"]
            assert evidence["event_ids"] == list(final[key].event_ids[:100]), key
            assert evidence["count"] == final[key].hits, key

        # A cleared alert's window measures under warn_at now.
        measured = {(rule.id, s, w): v for rule in rules for (s, w), v in values(rule, stored, ZONE).items()}
        for key, a in by_key.items():
            if a["cleared"]:
                value = measured.get(key)
                assert value is None or value < rules[key[0]].warn_at, (key, value, a)
                assert a["cleared_at"] is not None, a

        # At each barrier the stored events were those of the phases so far: a finding then that is gone
        # at the end was cleared; one that went and came back was cleared, then raised again.
        snapshots = [
            findings(rules, [e for e in stored if work.phase_of[e["source_event_id"]] <= phase])
            for phase in range(PHASES - 1)
        ] + [final]
        gone = {key for snapshot in snapshots for key in snapshot} - final.keys()
        assert [key for key in gone if not by_key[key]["cleared"]] == []
        back = {
            key
            for key in final
            for p in range(PHASES)
            for q in range(p + 1, PHASES)
            if key in snapshots[p] and key not in snapshots[q]
        }
        # The workload does what it is meant to (these follow from the seed alone).
        assert {key[0] for key in final} == set(rules.ids)
        assert {f.rule_id for f in final.values() if f.tripped} == set(rules.ids)
        assert {key[0] for key in gone} >= {"ct-ratio", "ct-spike"}
        assert back, "no alert cleared and raised again"

        # The audit chain holds (this also seals what ingest recorded), and tells of the comebacks.
        verdict = send(http, tally, "GET", "/v1/audit/verify")
        assert verdict.status_code == 200, verdict.text
        assert verdict.json()["ok"] is True, verdict.json()
        for key in back:
            trail = sorted(
                pages(http, tally, "/v1/audit", {"object_type": "alert", "object_id": str(by_key[key]["id"])}),
                key=lambda entry: entry["seq"],
            )
            actions = [entry["action"] for entry in trail]
            assert "alert.cleared" in actions, (key, actions)
            assert actions[-1] != "alert.cleared", (key, actions)

        # Every tripped finding's subject is stopped; no (rule, subject) has two breakers.
        breakers = list(pages(http, tally, "/v1/breakers"))
        per_subject = Counter((b["kind"], b["rule_id"], b["subject_type"], b["subject_id"]) for b in breakers)
        assert [k for k, n in per_subject.items() if n > 1] == []
        opened = {(b["rule_id"], b["subject_type"], b["subject_id"]) for b in breakers if b["state"] == "open"}
        stopped = {(f.rule_id, f.subject_type, f.subject_id) for f in final.values() if f.tripped}
        assert sorted(stopped - opened) == []

    # A scan now has nothing to change: inline evaluation and the scans left every alert right.
    with httpx.Client(base_url=base_url, headers=bearer(admin), timeout=120) as http:
        response = send(http, tally, "POST", "/v1/scans", json={})
        assert response.status_code == 201, response.text
        rescan = response.json()
        assert (rescan["alerts_raised"], rescan["alerts_updated"], rescan["alerts_cleared"]) == (0, 0, 0), rescan
