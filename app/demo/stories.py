"""The planted risk stories: irregular business the articles describe, hidden in the demo month.

Each story has one subject (an operator, a responsible officer, a business unit or an agent) and a day,
both chosen from the seed alone, so `planted_stories` names exactly what `generate` plants whatever
the scale or the length of the window. Stories fall on weekdays between the 3rd and the 28th day
after `start` (the no-liability closures take the Monday-Friday of one week), so a 30-day month holds
them all; a shorter window holds the ones inside it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from app.demo.city import (
    EXAM_CENTRE,
    INSPECTION_SECTION,
    URBAN_BRIGADES,
    BusinessUnit,
    City,
    Operator,
    brigade_of,
    build_city,
    plate_number,
)

TZ = ZoneInfo("Asia/Shanghai")
DEMO_START = date(2026, 10, 1)
DEFAULT_SEED = 7

# (code, fine in yuan, points, share of penalties): common cases, with typical fines and points.
VIOLATIONS: tuple[tuple[str, int, int, float], ...] = (
    ("parking", 100, 0, 0.55),
    ("no_helmet", 50, 1, 0.10),
    ("speeding", 200, 3, 0.10),
    ("red_light", 200, 6, 0.05),
    ("seat_belt", 50, 1, 0.06),
    ("phone_use", 200, 3, 0.05),
    ("wrong_lane", 100, 1, 0.04),
    ("overload", 500, 6, 0.02),
    ("no_licence", 1000, 0, 0.01),
    ("drink_driving", 1500, 12, 0.01),
    ("warning", 0, 0, 0.01),
)


@dataclass(frozen=True, slots=True)
class Draft:
    """A business event before it gets its source_event_id."""

    at: datetime
    domain: str
    action: str
    operator: Operator
    attributes: dict[str, Any]
    business_unit: BusinessUnit | None = None
    agent_id: str | None = None
    object_ref: str | None = None


@dataclass(frozen=True)
class Story:
    key: str
    label_zh: str
    label_en: str
    domain: str
    subject_type: str  # operator | responsible_officer | business_unit | agent | org_unit
    subject_id: str
    day: date


def local(day: date, seconds: float) -> datetime:
    """Local time `seconds` after midnight of `day` (Shanghai keeps no daylight saving)."""
    return datetime.combine(day, time(), TZ) + timedelta(seconds=int(seconds))


def violation(rng: random.Random) -> tuple[str, int, int]:
    code, fine, points, _ = rng.choices(VIOLATIONS, weights=[v[3] for v in VIOLATIONS])[0]
    return code, fine, points


def candidate_ref(rng: random.Random) -> str:
    """A masked identity number, as exam systems show candidates."""
    return f"4307{rng.randint(1, 26):02d}********{rng.randint(0, 9999):04d}"


AGENT_OPERATORS = 15  # distinct clerks the intermediary works through on the story day
_WORKDAY = (9 * 3600, 17 * 3600)


@dataclass(frozen=True)
class _Cast:
    """Who and when, for every story: drawn once from the seed."""

    days: dict[str, date]
    hours: dict[str, int]
    operators: dict[str, Operator]
    business_units: dict[str, BusinessUnit]
    agent: str
    agent_operators: tuple[Operator, ...]


def _cast(city: City, seed: int, start: date) -> _Cast:
    rng = random.Random(f"stories:{seed}")
    weekdays = [start + timedelta(d) for d in range(2, 28) if (start + timedelta(d)).weekday() < 5]
    mondays = [start + timedelta(d) for d in range(0, 26) if (start + timedelta(d)).weekday() == 0]
    single_day = [key for key, *_ in _CATALOGUE if key != "no-liability-closures"]
    days = dict(zip(single_day, rng.sample(weekdays, len(single_day)), strict=True))
    days["no-liability-closures"] = rng.choice(mondays)

    used: set[str] = set()

    def pick(pool: tuple[Operator, ...]) -> Operator:
        chosen = rng.choice([op for op in pool if op.id not in used])
        used.add(chosen.id)
        return chosen

    registration = city.units_with_role("registration_window")
    # Motorcycles are a county business: the story's auxiliary sits at a county brigade's window.
    county_vehicle_windows = [u for u in city.units_with_role("vehicle_window") if brigade_of(u) not in URBAN_BRIGADES]
    violation_windows = city.units_with_role("violation_window")
    officers_with_aux = tuple(
        op
        for op in city.members(*city.units_with_role("accident_squad"), kinds=("police",))
        if len(city.auxiliaries_of(op.id)) >= 2
    )
    operators = {
        "new-energy-bulk-registration": pick(city.members(*registration, kinds=("police",))),
        "motorcycle-bulk-registration": pick(city.members(*county_vehicle_windows, kinds=("auxiliary",))),
        "trailer-bulk-inspection": pick(city.members(INSPECTION_SECTION, kinds=("police",))),
        "rushed-inspection": pick(city.members(INSPECTION_SECTION, kinds=("staff",))),
        "night-record-deletion": pick(city.members(*violation_windows, kinds=("police",))),
        "no-liability-closures": pick(officers_with_aux),
        "fine-reduction": pick(city.members(*violation_windows, kinds=("auxiliary",))),
        "examiner-pass-rate": pick(city.members(EXAM_CENTRE, kinds=("police",))),
    }
    stations = rng.sample(city.business_units_of("inspection_station"), 2)
    business_units = {
        "new-energy-bulk-registration": rng.choice(city.business_units_of("company")),
        "trailer-bulk-inspection": stations[0],
        "rushed-inspection": stations[1],
        "examiner-pass-rate": rng.choice(city.business_units_of("exam_site")),
        "examiner-school": rng.choice(city.business_units_of("driving_school")),
    }
    clerks = [op for op in city.members(*registration) if op.id not in used]
    return _Cast(
        days=days,
        hours={key: rng.choice((9, 10, 11, 14, 15, 16)) for key in days},
        operators=operators,
        business_units=business_units,
        agent=rng.choice(city.agents),
        agent_operators=tuple(rng.sample(clerks, AGENT_OPERATORS)),
    )


def _times(rng: random.Random, day: date, n: int, lo: int, hi: int) -> list[datetime]:
    return [local(day, s) for s in sorted(rng.sample(range(lo, hi), n))]


def _new_energy(cast: _Cast, rng: random.Random, city: City) -> list[Draft]:
    key = "new-energy-bulk-registration"
    hour = cast.hours[key] * 3600
    return [
        Draft(
            at,
            "vehicle_registration",
            "register",
            cast.operators[key],
            {"vehicle_type": "new_energy"},
            business_unit=cast.business_units[key],
            object_ref=plate_number(rng, "new_energy"),
        )
        for at in _times(rng, cast.days[key], 45, hour, hour + 3600)
    ]


def _motorcycles(cast: _Cast, rng: random.Random, city: City) -> list[Draft]:
    key = "motorcycle-bulk-registration"
    hour = cast.hours[key] * 3600
    return [
        Draft(
            at,
            "vehicle_registration",
            "register",
            cast.operators[key],
            {"vehicle_type": "motorcycle"},
            object_ref=plate_number(rng, "motorcycle"),
        )
        for at in _times(rng, cast.days[key], 40, hour, hour + 3600)
    ]


def _inspection(at: datetime, op: Operator, station: BusinessUnit, attrs: dict[str, Any], ref: str) -> Draft:
    return Draft(at, "vehicle_inspection", "inspection", op, attrs, business_unit=station, object_ref=ref)


def _trailers(cast: _Cast, rng: random.Random, city: City) -> list[Draft]:
    key = "trailer-bulk-inspection"
    return [
        _inspection(
            at,
            cast.operators[key],
            cast.business_units[key],
            {
                "vehicle_type": "trailer",
                "result": "pass",
                "duration_seconds": rng.randint(600, 1500),
                "station_lane": rng.randint(1, 4),
            },
            plate_number(rng, "trailer"),
        )
        for at in _times(rng, cast.days[key], 70, 8 * 3600 + 1800, 17 * 3600 + 1800)
    ]


def _rushed(cast: _Cast, rng: random.Random, city: City) -> list[Draft]:
    key = "rushed-inspection"
    drafts = []
    for at in _times(rng, cast.days[key], 30, 14 * 3600, 16 * 3600):
        vehicle_type = rng.choice(("car", "car", "car", "truck", "new_energy"))
        attrs = {
            "vehicle_type": vehicle_type,
            "result": "pass",
            "duration_seconds": rng.randint(40, 110),
            "station_lane": 1,
        }
        drafts.append(
            _inspection(at, cast.operators[key], cast.business_units[key], attrs, plate_number(rng, vehicle_type))
        )
    return drafts


def _agent(cast: _Cast, rng: random.Random, city: City) -> list[Draft]:
    key = "agent-many-officers"
    drafts = []
    for i, at in enumerate(_times(rng, cast.days[key], 35, *_WORKDAY)):
        vehicle_type = rng.choice(("car", "car", "new_energy", "truck"))
        action = "transfer" if rng.random() < 0.4 else "register"
        operator = cast.agent_operators[i % len(cast.agent_operators)]
        drafts.append(
            Draft(
                at,
                "vehicle_registration",
                action,
                operator,
                {"vehicle_type": vehicle_type},
                agent_id=cast.agent,
                object_ref=plate_number(rng, vehicle_type),
            )
        )
    return drafts


def _night_deletions(cast: _Cast, rng: random.Random, city: City) -> list[Draft]:
    key = "night-record-deletion"
    day = cast.days[key]
    # Most before midnight, so a daily window still sees the bulk; a few spill past it.
    times = _times(rng, day, 21, 22 * 3600, 24 * 3600) + _times(rng, day + timedelta(1), 4, 0, 6300)
    drafts = []
    for at in times:
        code, fine, points = violation(rng)
        attrs = {"fine_amount": fine, "points": points, "violation": code, "reason": "duplicate_record"}
        drafts.append(
            Draft(
                at,
                "violation_handling",
                "record_deleted",
                cast.operators[key],
                attrs,
                object_ref=plate_number(rng, "car"),
            )
        )
    return drafts


def _no_liability(cast: _Cast, rng: random.Random, city: City) -> list[Draft]:
    key = "no-liability-closures"
    officer = cast.operators[key]
    auxiliaries = city.auxiliaries_of(officer.id)
    brigade = brigade_of(officer.unit)
    monday = cast.days[key]
    drafts = []
    for n in range(20):
        aux = auxiliaries[n % len(auxiliaries)]
        closed_at = local(monday + timedelta(n // 4), rng.randint(*_WORKDAY))
        opened_at = closed_at - timedelta(days=rng.randint(1, 4), seconds=rng.randint(0, 8 * 3600))
        case = f"{brigade}-SG-{opened_at:%Y%m%d}-{800 + n:03d}"
        drafts.append(
            Draft(
                opened_at,
                "accident_handling",
                "case_opened",
                aux,
                {"severity": "property_damage"},
                object_ref=case,
            )
        )
        drafts.append(
            Draft(
                closed_at,
                "accident_handling",
                "case_closed",
                aux,
                {"closure": "no_liability", "severity": "property_damage"},
                object_ref=case,
            )
        )
    return drafts


def _fine_reductions(cast: _Cast, rng: random.Random, city: City) -> list[Draft]:
    key = "fine-reduction"
    charged = [v for v in VIOLATIONS if v[1] >= 100]
    drafts = []
    for at in _times(rng, cast.days[key], 30, *_WORKDAY):
        code, fine, points, _ = rng.choice(charged)
        attrs = {
            "fine_amount": int(fine * rng.choice((0, 0.2, 0.5))),
            "points": 0,
            "violation": code,
            "original_fine_amount": fine,
            "original_points": points,
            "reason": "leniency",
        }
        drafts.append(
            Draft(
                at,
                "violation_handling",
                "record_modified",
                cast.operators[key],
                attrs,
                object_ref=plate_number(rng, "car"),
            )
        )
    return drafts


def _examiner(cast: _Cast, rng: random.Random, city: City) -> list[Draft]:
    key = "examiner-pass-rate"
    school = cast.business_units["examiner-school"]
    drafts = []
    for i, at in enumerate(_times(rng, cast.days[key], 60, 8 * 3600 + 1800, 17 * 3600 + 1800)):
        passed = i != 17  # one failure keeps the rate at 98%, not a suspicious-looking 100%
        attrs = {
            "subject": rng.choice((2, 3)),
            "result": "pass" if passed else "fail",
            "score": rng.choice((90, 100, 100)) if passed else 70,
            "driving_school": school.id if rng.random() < 0.8 else f"DS-{rng.randint(1, 8):02d}",
        }
        drafts.append(
            Draft(
                at,
                "driver_testing",
                "exam",
                cast.operators[key],
                attrs,
                business_unit=cast.business_units[key],
                object_ref=candidate_ref(rng),
            )
        )
    return drafts


# (key, label_zh, label_en, domain, subject_type)
_CATALOGUE: tuple[tuple[str, str, str, str, str], ...] = (
    (
        "new-energy-bulk-registration",
        "民警单小时批量办理新能源汽车上户",
        "One officer registers new-energy vehicles in bulk within an hour",
        "vehicle_registration",
        "operator",
    ),
    (
        "motorcycle-bulk-registration",
        "辅警单小时批量办理摩托车上户",
        "One auxiliary registers motorcycles in bulk within an hour",
        "vehicle_registration",
        "operator",
    ),
    (
        "trailer-bulk-inspection",
        "检测站单日批量通过平板挂车检测",
        "An inspection station passes flatbed trailers in bulk in one day",
        "vehicle_inspection",
        "business_unit",
    ),
    (
        "rushed-inspection",
        "检测站两分钟内完成检测并通过",
        "An inspection station passes vehicles in under two minutes",
        "vehicle_inspection",
        "business_unit",
    ),
    (
        "agent-many-officers",
        "中介单日经多名经办人集中办理业务",
        "One intermediary works through many officers in one day",
        "vehicle_registration",
        "agent",
    ),
    (
        "night-record-deletion",
        "深夜批量删除交通违法记录",
        "Violation records deleted in bulk late at night",
        "violation_handling",
        "operator",
    ),
    (
        "no-liability-closures",
        "连带责任民警名下辅警批量无责结案",
        "Auxiliaries answerable to one officer close accidents as no-liability in bulk",
        "accident_handling",
        "responsible_officer",
    ),
    (
        "fine-reduction",
        "单人单日批量减免违法罚款",
        "One operator reduces fines in bulk in one day",
        "violation_handling",
        "operator",
    ),
    (
        "examiner-pass-rate",
        "考场考试员单日异常高通过率",
        "An examiner at one exam site passes nearly every candidate in a day",
        "driver_testing",
        "operator",
    ),
)

_PLANTERS: dict[str, Callable[[_Cast, random.Random, City], list[Draft]]] = {
    "new-energy-bulk-registration": _new_energy,
    "motorcycle-bulk-registration": _motorcycles,
    "trailer-bulk-inspection": _trailers,
    "rushed-inspection": _rushed,
    "agent-many-officers": _agent,
    "night-record-deletion": _night_deletions,
    "no-liability-closures": _no_liability,
    "fine-reduction": _fine_reductions,
    "examiner-pass-rate": _examiner,
}


def _subject(cast: _Cast, key: str, subject_type: str) -> str:
    if subject_type == "business_unit":
        return cast.business_units[key].id
    if subject_type == "agent":
        return cast.agent
    return cast.operators[key].id


def planted_stories(city: City, *, seed: int, start: date = DEMO_START) -> tuple[Story, ...]:
    """The stories `generate` plants for this city and seed, in catalogue order."""
    cast = _cast(city, seed, start)
    return tuple(
        Story(key, zh, en, domain, subject_type, _subject(cast, key, subject_type), cast.days[key])
        for key, zh, en, domain, subject_type in _CATALOGUE
    )


# --- the inspectors' stories -------------------------------------------------------------------------------
# Two more, for the demo's simulated inspectors: legitimate bulk business filed in advance (报备), and a staff
# clerk's bulk corrections (so accountability reaches the third kind of operator). They draw from their own
# random streams, so the nine stories above stay where they were for every seed.

FLEET_VEHICLES = 36  # more than vr-bulk-new-energy's trip_at in one hour: without the filing it would trip
STAFF_CORRECTIONS = 14  # past vh-bulk-modification's warn_at, short of its trip_at

_EXTRA_CATALOGUE: tuple[tuple[str, str, str, str, str], ...] = (
    (
        "fleet-registration",
        "车队集中办理新能源汽车上户（已报备）",
        "A fleet company registers new-energy vehicles in bulk one morning (filed in advance)",
        "vehicle_registration",
        "operator",
    ),
    (
        "staff-record-corrections",
        "其他工作人员单日批量修改违法记录",
        "A staff clerk modifies violation records in bulk in one day",
        "violation_handling",
        "operator",
    ),
)


@dataclass(frozen=True)
class _ExtraCast:
    days: dict[str, date]
    hours: dict[str, int]
    operators: dict[str, Operator]
    company: BusinessUnit


def _extra_cast(city: City, seed: int, start: date) -> _ExtraCast:
    main = _cast(city, seed, start)
    rng = random.Random(f"stories-extra:{seed}")
    taken = set(main.days.values())
    weekdays = [
        start + timedelta(d)
        for d in range(2, 28)
        if (start + timedelta(d)).weekday() < 5 and start + timedelta(d) not in taken
    ]
    days = dict(zip([key for key, *_ in _EXTRA_CATALOGUE], rng.sample(weekdays, len(_EXTRA_CATALOGUE)), strict=True))
    used = {op.id for op in main.operators.values()} | {op.id for op in main.agent_operators}
    windows = city.units_with_role("registration_window")
    clerks = city.members(*city.units_with_role("violation_window"), kinds=("staff",)) or city.staff
    operators = {
        "fleet-registration": rng.choice([op for op in city.members(*windows, kinds=("police",)) if op.id not in used]),
        "staff-record-corrections": rng.choice([op for op in clerks if op.id not in used]),
    }
    others = [bu for bu in city.business_units_of("company") if bu.id != main.business_units[_NE].id]
    # A fleet: a taxi, rental, logistics or transport company, where the city has one.
    fleets = [bu for bu in others if any(word in bu.label_en for word in ("Taxi", "Rental", "Logistics", "Transport"))]
    companies = fleets or others
    return _ExtraCast(days, {"fleet-registration": 9, "staff-record-corrections": 14}, operators, rng.choice(companies))


_NE = "new-energy-bulk-registration"


def _fleet(cast: _ExtraCast, rng: random.Random) -> list[Draft]:
    key = "fleet-registration"
    hour = cast.hours[key] * 3600
    return [
        Draft(
            at,
            "vehicle_registration",
            "register",
            cast.operators[key],
            {"vehicle_type": "new_energy", "fleet_order": f"FLEET-{cast.days[key]:%Y%m%d}"},
            business_unit=cast.company,
            object_ref=plate_number(rng, "new_energy"),
        )
        for at in _times(rng, cast.days[key], FLEET_VEHICLES, hour, hour + 3600)
    ]


def _corrections(cast: _ExtraCast, rng: random.Random) -> list[Draft]:
    key = "staff-record-corrections"
    hour = cast.hours[key] * 3600
    drafts = []
    for at in _times(rng, cast.days[key], STAFF_CORRECTIONS, hour, hour + 3 * 3600):
        code, fine, points = violation(rng)
        attrs = {
            "fine_amount": fine,
            "points": points,
            "violation": code,
            "original_fine_amount": fine,
            "original_points": points,
            "reason": "plate_corrected",
        }
        drafts.append(
            Draft(
                at,
                "violation_handling",
                "record_modified",
                cast.operators[key],
                attrs,
                object_ref=plate_number(rng, "car"),
            )
        )
    return drafts


def extra_stories(city: City, *, seed: int, start: date = DEMO_START) -> tuple[Story, ...]:
    """The inspectors' two stories `generate` plants as well (the fleet's filing, the staff clerk)."""
    cast = _extra_cast(city, seed, start)
    return tuple(
        Story(key, zh, en, domain, subject_type, cast.operators[key].id, cast.days[key])
        for key, zh, en, domain, subject_type in _EXTRA_CATALOGUE
    )


def fleet_company(city: City, *, seed: int, start: date = DEMO_START) -> BusinessUnit:
    """The fleet company of the legitimate bulk registration (named in its filing)."""
    return _extra_cast(city, seed, start).company


def story_operator(city: City, key: str, *, seed: int, start: date = DEMO_START) -> Operator:
    """The operator who does a story's business (for a business unit's story, its clerk)."""
    cast = _cast(city, seed, start)
    return cast.operators[key] if key in cast.operators else _extra_cast(city, seed, start).operators[key]


def story_times(city: City, key: str, *, seed: int, start: date = DEMO_START) -> list[datetime]:
    """When a story's events happen, in order (the inspectors time their moves by them)."""
    if key in _PLANTERS:
        drafts = _PLANTERS[key](_cast(city, seed, start), random.Random(f"story:{seed}:{key}"), city)
    else:
        drafts = _EXTRA_PLANTERS[key](_extra_cast(city, seed, start), random.Random(f"story:{seed}:{key}"))
    return sorted(draft.at for draft in drafts)


_EXTRA_PLANTERS: dict[str, Callable[[_ExtraCast, random.Random], list[Draft]]] = {
    "fleet-registration": _fleet,
    "staff-record-corrections": _corrections,
}


def plant(city: City, *, seed: int, start: date = DEMO_START) -> list[Draft]:
    """Every planted story's events, the inspectors' two included (the caller drops those outside its window)."""
    cast = _cast(city, seed, start)
    drafts: list[Draft] = []
    for key, *_ in _CATALOGUE:
        drafts += _PLANTERS[key](cast, random.Random(f"story:{seed}:{key}"), city)
    extra = _extra_cast(city, seed, start)
    for key, *_ in _EXTRA_CATALOGUE:
        drafts += _EXTRA_PLANTERS[key](extra, random.Random(f"story:{seed}:{key}"))
    return drafts


# The default demo's stories, for the README and the tests to name.
STORIES: tuple[Story, ...] = planted_stories(build_city(DEFAULT_SEED), seed=DEFAULT_SEED)
