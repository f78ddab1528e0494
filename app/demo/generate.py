"""A month of the demo detachment's business, as the events its five business systems post.

Volumes follow ../shared/DOMAIN.md: about 100,000 events in 30 days at scale 1, violations the
largest share. The normal population is spread over many operators and stations so that nobody in
it looks abnormal; the planted stories (`app.demo.stories`) are the only irregular business.
Each domain and day draws from its own `random.Random`, so a shorter window is a prefix of a longer
one and the stories never depend on `scale`. Public holidays are not modelled: weekends only.
"""

from __future__ import annotations

import random
from bisect import bisect
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from itertools import accumulate
from typing import Any

from app.demo.city import (
    EXAM_CENTRE,
    INSPECTION_SECTION,
    OPERATOR_KINDS,
    BusinessUnit,
    City,
    Operator,
    plate_number,
)
from app.demo.stories import (
    DEFAULT_SEED,
    DEMO_START,
    STORIES,
    TZ,
    Draft,
    Story,
    candidate_ref,
    local,
    plant,
    planted_stories,
    violation,
)

__all__ = [
    "DEFAULT_DAYS",
    "DEFAULT_SEED",
    "DEMO_START",
    "SOURCES",
    "STORIES",
    "TZ",
    "DemoEvent",
    "Story",
    "generate",
    "planted_stories",
]

DEFAULT_DAYS = 30

# domain -> (source system, source_event_id prefix); prefixes sort like the domains below.
SOURCES: dict[str, tuple[str, str]] = {
    "accident_handling": ("ah-system", "AH"),
    "driver_testing": ("dt-system", "DT"),
    "violation_handling": ("vh-system", "VH"),
    "vehicle_inspection": ("vi-system", "VI"),
    "vehicle_registration": ("vr-system", "VR"),
}
_DOMAIN_ORDER = {domain: i for i, domain in enumerate(SOURCES)}


@dataclass(frozen=True)
class DemoEvent:
    source: str  # the business system that posts it: vr-system, dt-system, vi-system, ah-system, vh-system
    body: dict[str, Any]  # the POST /v1/events body


# Events a day city-wide at scale 1, as (weekday, Saturday, Sunday).
_VOLUMES: dict[str, tuple[float, float, float]] = {
    "registration": (800, 180, 40),
    "exam": (520, 150, 0),
    "inspection": (440, 380, 220),  # stations open every day
    "penalty": (1800, 1500, 1500),  # the road never closes
    "accident": (55, 55, 55),  # cases opened; each is closed later, so about twice as many events
    "modification": (8, 1, 0),
    "deletion": (3, 0, 0),
}
# Traffic, and so penalties and accidents, is heavier in the city than in the counties.
_BRIGADES = ("CD-DD1", "CD-DD2", "CD-DD3", "CD-DD4", "CD-DD5", "CD-DD6")
_BRIGADE_SHARES = (1.3, 1.2, 1.1, 0.9, 0.75, 0.75)
_VEHICLE_TYPES = ("car", "new_energy", "motorcycle", "trailer", "truck", "other")
_REGISTERED_MIX = (0.50, 0.25, 0.12, 0.02, 0.06, 0.05)
_INSPECTED_MIX = (0.70, 0.12, 0.04, 0.015, 0.08, 0.045)
_INSPECTION_PASS = {"car": 0.88, "new_energy": 0.9, "motorcycle": 0.85, "trailer": 0.75, "truck": 0.78}
# (fewest, most, usual) seconds per inspection: never under five minutes in normal business.
_INSPECTION_SECONDS = {"car": (360, 1800, 840), "new_energy": (360, 1800, 840), "motorcycle": (300, 900, 480)}
_HEAVY_INSPECTION = (720, 2700, 1320)
_EXAM_PASS = {1: 0.62, 2: 0.66, 3: 0.72, 4: 0.78}
_CLOSURES = ("mediated", "penalized", "no_liability", "transferred")
_CLOSURE_SHARES = (0.45, 0.35, 0.10, 0.10)
_LONGEST_CASE_DAYS = 20


class _Profile:
    """When in the day business happens: (start hour, end hour, share) segments, local time."""

    def __init__(self, *segments: tuple[float, float, float]) -> None:
        self._spans = [(start * 3600, end * 3600) for start, end, _ in segments]
        self._cumulative = list(accumulate(share for _, _, share in segments))

    def at(self, rng: random.Random, day: date) -> datetime:
        lo, hi = self._spans[bisect(self._cumulative, rng.random() * self._cumulative[-1])]
        return local(day, rng.uniform(lo, hi))


# Offices open 08:30-17:30 with a thin lunch break and a little evening service (延时服务).
_OFFICE = _Profile((8.5, 12, 0.45), (12, 14, 0.06), (14, 17.5, 0.45), (17.5, 19.5, 0.04))
_STATION = _Profile((8, 12, 0.48), (12, 13.5, 0.07), (13.5, 17.5, 0.45))
_EXAMS = _Profile((8.5, 12, 0.5), (14, 17.5, 0.5))
_DESK = _Profile((9, 12, 0.5), (14.5, 17, 0.5))
_ROAD = _Profile(
    (0, 6, 0.02),
    (6, 7, 0.02),
    (7, 9, 0.16),
    (9, 12, 0.22),
    (12, 14, 0.10),
    (14, 17, 0.20),
    (17, 19, 0.16),
    (19, 22, 0.09),
    (22, 24, 0.03),
)
_TRAFFIC = _Profile(
    (0, 6, 0.05), (6, 9, 0.15), (9, 12, 0.2), (12, 14, 0.1), (14, 17, 0.2), (17, 20, 0.2), (20, 24, 0.1)
)


_ByKind = dict[str, tuple[Operator, ...]]


def _by_kind(operators: tuple[Operator, ...]) -> _ByKind:
    return {kind: tuple(op for op in operators if op.kind == kind) for kind in OPERATOR_KINDS}


@dataclass(frozen=True)
class _Pools:
    """Who does which business, and how busy each business unit and agent is."""

    registration_office: tuple[Operator, ...]
    registration_county: tuple[Operator, ...]
    inspectors: tuple[Operator, ...]
    examiners: tuple[Operator, ...]
    patrol: dict[str, _ByKind]
    accident: dict[str, _ByKind]
    window: dict[str, _ByKind]
    stations: tuple[tuple[BusinessUnit, float], ...]
    companies: tuple[BusinessUnit, ...]
    service_stations: tuple[BusinessUnit, ...]
    schools: tuple[BusinessUnit, ...]
    school_weights: tuple[float, ...]
    agents: tuple[str, ...]
    agent_weights: tuple[float, ...]


def _pools(city: City, seed: int) -> _Pools:
    rng = random.Random(f"pools:{seed}")
    stations = city.business_units_of("inspection_station")
    weights = [rng.uniform(0.85, 1.15) for _ in stations]
    schools = city.business_units_of("driving_school")
    return _Pools(
        registration_office=city.members(*city.units_with_role("registration_window")),
        registration_county=city.members(*city.units_with_role("vehicle_window")),
        inspectors=city.members(INSPECTION_SECTION),
        examiners=city.members(EXAM_CENTRE, kinds=("police", "auxiliary")),
        patrol={b: _by_kind(city.members(f"{b}-ZD1", f"{b}-ZD2", f"{b}-ZD3")) for b in _BRIGADES},
        accident={b: _by_kind(city.members(f"{b}-ZD4")) for b in _BRIGADES},
        window={b: _by_kind(city.members(f"{b}-CK1")) for b in _BRIGADES},
        stations=tuple(zip(stations, (w * len(weights) / sum(weights) for w in weights), strict=True)),
        companies=city.business_units_of("company"),
        service_stations=city.business_units_of("service_station"),
        schools=schools,
        school_weights=tuple(rng.uniform(0.5, 2.0) for _ in schools),
        agents=city.agents,
        agent_weights=tuple(rng.uniform(0.5, 2.0) for _ in city.agents),
    )


def _count(rng: random.Random, mean: float) -> int:
    """A day's count around `mean`, rounded at random so small scales still get their share."""
    value = mean * rng.uniform(0.9, 1.1)
    return int(value) + (rng.random() < value - int(value))


def _volume(kind: str, day: date, scale: float) -> float:
    weekday, saturday, sunday = _VOLUMES[kind]
    return scale * (weekday if day.weekday() < 5 else saturday if day.weekday() == 5 else sunday)


def _pick(rng: random.Random, pool: _ByKind, **shares: float) -> Operator:
    """An operator of the pool, of a kind drawn with the given shares."""
    kind = rng.choices(list(shares), weights=list(shares.values()))[0]
    return rng.choice(pool[kind])


# (operator id, day) of inspectors and examiners a story keeps at its own station or exam site all day.
_Busy = frozenset[tuple[str, date]]


def _registrations(pools: _Pools, rng: random.Random, day: date, scale: float) -> Iterator[Draft]:
    for _ in range(_count(rng, _volume("registration", day, scale))):
        county = rng.random() < 0.2
        op = rng.choice(pools.registration_county if county else pools.registration_office)
        action = rng.choices(("register", "transfer", "deregister"), weights=(0.6, 0.3, 0.1))[0]
        vehicle_type = rng.choices(_VEHICLE_TYPES, weights=_REGISTERED_MIX)[0]
        business_unit = None
        if action == "register" and rng.random() < 0.3:
            business_unit = rng.choice(pools.companies)  # dealers and fleets register their own vehicles
        elif rng.random() < 0.1:
            business_unit = rng.choice(pools.service_stations)
        agent_share = {"register": 0.1, "transfer": 0.25, "deregister": 0.05}[action]
        agent = rng.choices(pools.agents, pools.agent_weights)[0] if rng.random() < agent_share else None
        yield Draft(
            _OFFICE.at(rng, day),
            "vehicle_registration",
            action,
            op,
            {"vehicle_type": vehicle_type},
            business_unit=business_unit,
            agent_id=agent,
            object_ref=plate_number(rng, vehicle_type),
        )


def _inspections(pools: _Pools, rng: random.Random, day: date, scale: float, busy: _Busy) -> Iterator[Draft]:
    crew = [op for op in pools.inspectors if (op.id, day) not in busy]
    rng.shuffle(crew)  # a pair of inspectors per station each day; short-handed, one covers two stations
    per_station = _volume("inspection", day, scale) / len(pools.stations)
    for i, (station, weight) in enumerate(pools.stations):
        pair = (crew[(2 * i) % len(crew)], crew[(2 * i + 1) % len(crew)])
        for _ in range(_count(rng, per_station * weight)):
            vehicle_type = rng.choices(_VEHICLE_TYPES, weights=_INSPECTED_MIX)[0]
            lo, hi, mode = _INSPECTION_SECONDS.get(vehicle_type, _HEAVY_INSPECTION)
            attrs = {
                "vehicle_type": vehicle_type,
                "result": "pass" if rng.random() < _INSPECTION_PASS.get(vehicle_type, 0.82) else "fail",
                "duration_seconds": round(rng.triangular(lo, hi, mode)),
                "station_lane": rng.randint(1, 4),
            }
            yield Draft(
                _STATION.at(rng, day),
                "vehicle_inspection",
                "inspection",
                rng.choice(pair),
                attrs,
                business_unit=station,
                object_ref=plate_number(rng, vehicle_type),
            )


def _exams(
    pools: _Pools, rng: random.Random, day: date, scale: float, sites: tuple[BusinessUnit, ...], busy: _Busy
) -> Iterator[Draft]:
    crew = [op for op in pools.examiners if (op.id, day) not in busy]
    rng.shuffle(crew)
    total = _volume("exam", day, scale)
    for i, site in enumerate(sites):
        # The city centre's site is the big one, with six examiners; county sites have four.
        share, size = (0.32, 6) if i == 0 else (0.68 / (len(sites) - 1), 4)
        examiners, crew = crew[:size], crew[size:]
        for _ in range(_count(rng, total * share)):
            subject = rng.choices((1, 2, 3, 4), weights=(0.3, 0.25, 0.25, 0.2))[0]
            passed = rng.random() < _EXAM_PASS[subject]
            if subject in (1, 4):  # theory: 90 of 100 to pass
                score = rng.randint(90, 100) if passed else rng.randint(40, 89)
            else:  # road tests deduct 10, 20 or everything
                score = rng.choice((80, 90, 100)) if passed else rng.choice((0, 0, 60, 70))
            attrs = {
                "subject": subject,
                "result": "pass" if passed else "fail",
                "score": score,
                "driving_school": rng.choices(pools.schools, pools.school_weights)[0].id,
            }
            yield Draft(
                _EXAMS.at(rng, day),
                "driver_testing",
                "exam",
                rng.choice(examiners),
                attrs,
                business_unit=site,
                object_ref=candidate_ref(rng),
            )


def _accidents(pools: _Pools, rng: random.Random, day: date, scale: float) -> Iterator[Draft]:
    """Cases opened on `day`, each with its closure (which may fall days later, or past the window)."""
    numbers: Counter[str] = Counter()
    for _ in range(_count(rng, _volume("accident", day, scale))):
        brigade = rng.choices(_BRIGADES, weights=_BRIGADE_SHARES)[0]
        numbers[brigade] += 1
        case = f"{brigade}-SG-{day:%Y%m%d}-{numbers[brigade]:03d}"
        severity = rng.choices(("property_damage", "injury", "fatal"), weights=(0.75, 0.23, 0.02))[0]
        # Auxiliaries only take the minor cases; their responsible officer answers for them.
        aux_share = 0.4 if severity == "property_damage" else 0.0
        handler = _pick(rng, pools.accident[brigade], police=1 - aux_share, auxiliary=aux_share)
        opened = _TRAFFIC.at(rng, day)
        yield Draft(opened, "accident_handling", "case_opened", handler, {"severity": severity}, object_ref=case)
        if severity == "property_damage" and rng.random() < 0.7:
            closed = opened + timedelta(seconds=rng.randint(20 * 60, 3 * 3600))  # settled on the spot
        else:
            close_day = day + timedelta(days=rng.randint(2, _LONGEST_CASE_DAYS))
            while close_day.weekday() >= 5:
                close_day += timedelta(days=1)
            closed = _OFFICE.at(rng, close_day)
        closure = "transferred" if severity == "fatal" else rng.choices(_CLOSURES, weights=_CLOSURE_SHARES)[0]
        attrs = {"closure": closure, "severity": severity}
        yield Draft(closed, "accident_handling", "case_closed", handler, attrs, object_ref=case)


def _violations(pools: _Pools, rng: random.Random, day: date, scale: float) -> Iterator[Draft]:
    workday = day.weekday() < 5
    for _ in range(_count(rng, _volume("penalty", day, scale))):
        brigade = rng.choices(_BRIGADES, weights=_BRIGADE_SHARES)[0]
        if workday and rng.random() < 0.15:  # drivers who come to the window to settle a record
            op, at = _pick(rng, pools.window[brigade], police=0.5, auxiliary=0.4, staff=0.1), _OFFICE.at(rng, day)
        else:
            op, at = _pick(rng, pools.patrol[brigade], police=0.55, auxiliary=0.45), _ROAD.at(rng, day)
        code, fine, points = violation(rng)
        vehicle_type = {"no_helmet": "motorcycle", "overload": "truck"}.get(code, "car")
        attrs = {"fine_amount": fine, "points": points, "violation": code}
        yield Draft(at, "violation_handling", "penalty_issued", op, attrs, object_ref=plate_number(rng, vehicle_type))
    for _ in range(_count(rng, _volume("modification", day, scale))):
        brigade = rng.choices(_BRIGADES, weights=_BRIGADE_SHARES)[0]
        op = _pick(rng, pools.window[brigade], police=0.6, auxiliary=0.3, staff=0.1)
        code, fine, points = violation(rng)
        reason = rng.choices(("plate_correction", "location_correction", "leniency"), weights=(0.4, 0.35, 0.25))[0]
        attrs = {
            "fine_amount": fine // 2 if reason == "leniency" else fine,
            "points": points,
            "violation": code,
            "original_fine_amount": fine,
            "original_points": points,
            "reason": reason,
        }
        yield Draft(
            _DESK.at(rng, day), "violation_handling", "record_modified", op, attrs, object_ref=plate_number(rng, "car")
        )
    for _ in range(_count(rng, _volume("deletion", day, scale))):
        brigade = rng.choices(_BRIGADES, weights=_BRIGADE_SHARES)[0]
        op = _pick(rng, pools.window[brigade], police=1.0)  # only police may delete a record
        code, fine, points = violation(rng)
        reason = rng.choice(("duplicate_record", "emergency_vehicle", "plate_misread"))
        attrs = {"fine_amount": fine, "points": points, "violation": code, "reason": reason}
        yield Draft(
            _DESK.at(rng, day), "violation_handling", "record_deleted", op, attrs, object_ref=plate_number(rng, "car")
        )


def _body(draft: Draft, event_id: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "source_event_id": event_id,
        "domain": draft.domain,
        "action": draft.action,
        "occurred_at": draft.at.isoformat(timespec="seconds"),
        "operator": draft.operator.as_ref(),
    }
    if draft.business_unit is not None:
        body["business_unit"] = draft.business_unit.as_ref()
    if draft.agent_id is not None:
        body["agent_id"] = draft.agent_id
    if draft.object_ref is not None:
        body["object_ref"] = draft.object_ref
    body["attributes"] = dict(draft.attributes)
    return body


def generate(
    city: City, *, seed: int, start: date = DEMO_START, days: int = DEFAULT_DAYS, scale: float = 1.0
) -> list[DemoEvent]:
    """Every event of `days` days from `start`, sorted by occurred_at then source_event_id.

    `scale` multiplies the normal population's volume; the planted stories keep their size.
    """
    if days < 1:
        raise ValueError("days must be at least 1")
    if scale < 0:
        raise ValueError("scale must not be negative")
    pools = _pools(city, seed)
    sites = city.business_units_of("exam_site")
    stories = plant(city, seed=seed, start=start)
    busy = frozenset(
        (d.operator.id, d.at.date()) for d in stories if d.domain in ("vehicle_inspection", "driver_testing")
    )
    drafts: list[Draft] = []
    # Cases opened before the window still close inside it, as they would in a real month.
    for offset in range(-_LONGEST_CASE_DAYS, days):
        day = start + timedelta(days=offset)
        drafts += _accidents(pools, _rng(seed, "accidents", day), day, scale)
        if offset >= 0:
            drafts += _registrations(pools, _rng(seed, "registrations", day), day, scale)
            drafts += _inspections(pools, _rng(seed, "inspections", day), day, scale, busy)
            drafts += _exams(pools, _rng(seed, "exams", day), day, scale, sites, busy)
            drafts += _violations(pools, _rng(seed, "violations", day), day, scale)
    drafts += stories
    first, end = local(start, 0), local(start + timedelta(days=days), 0)
    kept = sorted((d for d in drafts if first <= d.at < end), key=lambda d: (d.at, _DOMAIN_ORDER[d.domain]))

    per_day: Counter[tuple[str, date]] = Counter()
    events = []
    for draft in kept:
        source, prefix = SOURCES[draft.domain]
        day = draft.at.date()
        per_day[prefix, day] += 1
        events.append(DemoEvent(source, _body(draft, f"{prefix}-{day:%Y%m%d}-{per_day[prefix, day]:06d}")))
    events.sort(key=lambda e: (e.body["occurred_at"], e.body["source_event_id"]))
    return events


def _rng(seed: int, stream: str, day: date) -> random.Random:
    return random.Random(f"{seed}:{stream}:{day.isoformat()}")
