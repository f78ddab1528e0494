"""The demo city: Changde's traffic-police detachment (支队), its people and the businesses it oversees.

The org tree follows the articles: a detachment with brigades (大队) made of squads (中队) and service
windows (窗口), a vehicle administration office (车管所) and an exam management centre (考管中心).
Every auxiliary answers to a police officer of the same unit (民警连带辅警). The shape is fixed; the
seed decides who answers to whom and which names the business units carry.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import cached_property

DETACHMENT = "CD-ZD"
VEHICLE_OFFICE = "CD-CGS"
INSPECTION_SECTION = "CD-CGS-CY"
EXAM_CENTRE = "CD-KGZX"
PLATE_PREFIX = "湘J"  # Changde's plate prefix

OPERATOR_KINDS = ("police", "auxiliary", "staff")
BUSINESS_UNIT_KINDS = ("inspection_station", "service_station", "company", "driving_school", "exam_site")

_NUMERALS_ZH = "一二三四五六七八九十"

# (label_zh, label_en): three urban brigades, then three districts and counties.
_BRIGADES: tuple[tuple[str, str], ...] = (
    ("直属一大队", "1st Directly-administered Brigade"),
    ("直属二大队", "2nd Directly-administered Brigade"),
    ("直属三大队", "3rd Directly-administered Brigade"),
    ("鼎城区大队", "Dingcheng District Brigade"),
    ("汉寿县大队", "Hanshou County Brigade"),
    ("桃源县大队", "Taoyuan County Brigade"),
)
URBAN_BRIGADES = ("CD-DD1", "CD-DD2", "CD-DD3")  # the others are districts and counties
SQUADS_PER_BRIGADE = 4  # squads 1-3 patrol the roads; the last one handles accidents
REGISTRATION_WINDOWS = 8

# (police, auxiliaries, staff) per unit role: 300 police, 450 auxiliaries, 40 staff in all.
_STAFFING: dict[str, tuple[int, int, int]] = {
    "detachment": (12, 12, 0),
    "brigade": (4, 2, 0),
    "patrol_squad": (7, 12, 0),
    "accident_squad": (7, 12, 0),
    "violation_window": (2, 4, 1),
    "vehicle_window": (2, 4, 1),
    "vehicle_office": (2, 0, 0),
    "registration_window": (3, 6, 2),
    "inspection_section": (6, 12, 6),
    "exam_centre": (40, 30, 6),
}

_AREAS: tuple[tuple[str, str], ...] = (
    ("武陵区", "Wuling"),
    ("鼎城区", "Dingcheng"),
    ("津市市", "Jinshi"),
    ("汉寿县", "Hanshou"),
    ("澧县", "Lixian"),
    ("临澧县", "Linli"),
    ("桃源县", "Taoyuan"),
    ("石门县", "Shimen"),
    ("安乡县", "Anxiang"),
    ("西洞庭", "Xidongting"),
    ("柳叶湖", "Liuyehu"),
    ("经开区", "Economic Development Zone"),
)
_COMPANIES: tuple[tuple[str, str], ...] = (
    ("常德德源汽车销售服务有限公司", "Changde Deyuan Auto Sales & Service Co., Ltd."),
    ("常德沅澧新能源汽车有限公司", "Changde Yuanli New Energy Vehicles Co., Ltd."),
    ("常德桃花源物流有限公司", "Changde Taohuayuan Logistics Co., Ltd."),
    ("常德柳叶湖汽车贸易有限公司", "Changde Liuyehu Auto Trading Co., Ltd."),
    ("常德善卷运输有限公司", "Changde Shanjuan Transport Co., Ltd."),
    ("常德洞庭摩托车销售有限公司", "Changde Dongting Motorcycle Sales Co., Ltd."),
    ("常德武陵二手车交易市场有限公司", "Changde Wuling Used Car Market Co., Ltd."),
    ("常德澧水挂车制造有限公司", "Changde Lishui Trailer Manufacturing Co., Ltd."),
    ("常德朗州出租汽车有限公司", "Changde Langzhou Taxi Co., Ltd."),
    ("常德德山汽车租赁有限公司", "Changde Deshan Car Rental Co., Ltd."),
)
_DRIVING_SCHOOLS: tuple[tuple[str, str], ...] = (
    ("交通", "Jiaotong"),
    ("安达", "Anda"),
    ("顺通", "Shuntong"),
    ("德安", "De'an"),
    ("通达", "Tongda"),
    ("金盾", "Jindun"),
    ("平安", "Ping'an"),
    ("远航", "Yuanhang"),
)
_EXAM_SITES: tuple[tuple[str, str], ...] = (
    ("常德市机动车驾驶人考试中心", "Changde Driver Exam Centre"),
    ("鼎城区驾驶人考场", "Dingcheng Driver Exam Site"),
    ("津市市驾驶人考场", "Jinshi Driver Exam Site"),
    ("桃源县驾驶人考场", "Taoyuan Driver Exam Site"),
    ("石门县驾驶人考场", "Shimen Driver Exam Site"),
)
AGENT_COUNT = 60


@dataclass(frozen=True)
class Unit:
    id: str
    parent: str | None
    label_zh: str
    label_en: str


@dataclass(frozen=True)
class Operator:
    id: str
    kind: str  # police | auxiliary | staff
    unit: str
    responsible_officer: str | None

    def as_ref(self) -> dict[str, str | None]:
        """The operator as the event envelope carries it."""
        return {
            "id": self.id,
            "kind": self.kind,
            "unit": self.unit,
            "responsible_officer": self.responsible_officer,
        }


@dataclass(frozen=True)
class BusinessUnit:
    id: str
    kind: str  # inspection_station | service_station | company | driving_school | exam_site
    label_zh: str
    label_en: str

    def as_ref(self) -> dict[str, str]:
        return {"id": self.id, "kind": self.kind}


@dataclass(frozen=True)
class City:
    units: tuple[Unit, ...]
    police: tuple[Operator, ...]
    auxiliaries: tuple[Operator, ...]
    staff: tuple[Operator, ...]
    business_units: tuple[BusinessUnit, ...]
    agents: tuple[str, ...]

    @cached_property
    def operators(self) -> tuple[Operator, ...]:
        return self.police + self.auxiliaries + self.staff

    @cached_property
    def _operators_by_id(self) -> dict[str, Operator]:
        return {op.id: op for op in self.operators}

    @cached_property
    def _units_by_id(self) -> dict[str, Unit]:
        return {unit.id: unit for unit in self.units}

    def operator(self, operator_id: str) -> Operator:
        return self._operators_by_id[operator_id]

    def unit(self, unit_id: str) -> Unit:
        return self._units_by_id[unit_id]

    def members(self, *unit_ids: str, kinds: tuple[str, ...] = OPERATOR_KINDS) -> tuple[Operator, ...]:
        """Operators of the given units (in city order), optionally only some kinds."""
        wanted = set(unit_ids)
        return tuple(op for op in self.operators if op.unit in wanted and op.kind in kinds)

    def units_with_role(self, role: str) -> tuple[str, ...]:
        return tuple(unit.id for unit in self.units if unit_role(unit.id) == role)

    def business_units_of(self, kind: str) -> tuple[BusinessUnit, ...]:
        return tuple(bu for bu in self.business_units if bu.kind == kind)

    def auxiliaries_of(self, officer_id: str) -> tuple[Operator, ...]:
        return tuple(op for op in self.auxiliaries if op.responsible_officer == officer_id)


def unit_role(unit_id: str) -> str:
    """What a unit does, read from its id (ids are built by `build_city`, so their shape is known)."""
    parts = unit_id.split("-")
    if unit_id == DETACHMENT:
        return "detachment"
    if unit_id == VEHICLE_OFFICE:
        return "vehicle_office"
    if unit_id == INSPECTION_SECTION:
        return "inspection_section"
    if unit_id == EXAM_CENTRE:
        return "exam_centre"
    if unit_id.startswith(VEHICLE_OFFICE + "-CK"):
        return "registration_window"
    if len(parts) == 2 and parts[1].startswith("DD"):
        return "brigade"
    if len(parts) == 3 and parts[1].startswith("DD"):
        if parts[2] == f"ZD{SQUADS_PER_BRIGADE}":
            return "accident_squad"
        if parts[2].startswith("ZD"):
            return "patrol_squad"
        return "violation_window" if parts[2] == "CK1" else "vehicle_window"
    raise ValueError(f"not a demo unit id: {unit_id}")


def brigade_of(unit_id: str) -> str | None:
    """The brigade a unit belongs to (itself for a brigade), or None outside the brigades."""
    parts = unit_id.split("-")
    return "-".join(parts[:2]) if len(parts) >= 2 and parts[1].startswith("DD") else None


def _units() -> list[Unit]:
    units = [Unit(DETACHMENT, None, "常德市公安局交通警察支队", "Changde Traffic Police Detachment")]
    for number, (zh, en) in enumerate(_BRIGADES, start=1):
        brigade = f"CD-DD{number}"
        units.append(Unit(brigade, DETACHMENT, zh, en))
        for squad in range(1, SQUADS_PER_BRIGADE + 1):
            if squad == SQUADS_PER_BRIGADE:
                label = (f"{zh}事故处理中队", f"{en}, Accident Squad")
            else:
                label = (f"{zh}{_NUMERALS_ZH[squad - 1]}中队", f"{en}, Squad {squad}")
            units.append(Unit(f"{brigade}-ZD{squad}", brigade, *label))
        units.append(Unit(f"{brigade}-CK1", brigade, f"{zh}违法处理窗口", f"{en}, Violation Handling Window"))
        units.append(Unit(f"{brigade}-CK2", brigade, f"{zh}车驾管服务窗口", f"{en}, Vehicle & Driver Window"))
    units.append(Unit(VEHICLE_OFFICE, DETACHMENT, "车辆管理所", "Vehicle Administration Office"))
    for window in range(1, REGISTRATION_WINDOWS + 1):
        units.append(
            Unit(
                f"{VEHICLE_OFFICE}-CK{window}",
                VEHICLE_OFFICE,
                f"车管所{window}号登记窗口",
                f"Vehicle Administration Office, Registration Window {window}",
            )
        )
    units.append(Unit(INSPECTION_SECTION, VEHICLE_OFFICE, "车管所查验科", "Vehicle Inspection Section"))
    units.append(Unit(EXAM_CENTRE, DETACHMENT, "考试管理中心", "Driver Exam Management Centre"))
    return units


def _business_units(rng: random.Random) -> list[BusinessUnit]:
    areas = list(_AREAS)
    rng.shuffle(areas)
    result = [
        BusinessUnit(f"IS-{i:02d}", "inspection_station", f"{zh}机动车检测站", f"{en} Vehicle Inspection Station")
        for i, (zh, en) in enumerate(areas, start=1)
    ]
    result += [
        BusinessUnit(f"SS-{i:02d}", "service_station", f"{zh}车管服务站", f"{en} Vehicle Services Station")
        for i, (zh, en) in enumerate(rng.sample(_AREAS, 6), start=1)
    ]
    result += [
        BusinessUnit(f"CO-{i:02d}", "company", zh, en)
        for i, (zh, en) in enumerate(rng.sample(_COMPANIES, len(_COMPANIES)), start=1)
    ]
    result += [
        BusinessUnit(f"DS-{i:02d}", "driving_school", f"常德{zh}驾驶员培训学校", f"Changde {en} Driving School")
        for i, (zh, en) in enumerate(rng.sample(_DRIVING_SCHOOLS, len(_DRIVING_SCHOOLS)), start=1)
    ]
    result += [BusinessUnit(f"ES-{i:02d}", "exam_site", zh, en) for i, (zh, en) in enumerate(_EXAM_SITES, start=1)]
    return result


def build_city(seed: int) -> City:
    """The demo detachment for a seed: same seed, same city."""
    rng = random.Random(f"city:{seed}")
    units = _units()
    police: list[Operator] = []
    auxiliaries: list[Operator] = []
    staff: list[Operator] = []
    for unit in units:
        n_police, n_aux, n_staff = _STAFFING[unit_role(unit.id)]
        officers = [Operator(f"P{1001 + len(police) + i}", "police", unit.id, None) for i in range(n_police)]
        police += officers
        # Balanced but shuffled pairing, so each officer answers for one or two auxiliaries.
        order = [op.id for op in officers]
        rng.shuffle(order)
        auxiliaries += [
            Operator(f"A{2001 + len(auxiliaries) + i}", "auxiliary", unit.id, order[i % len(order)])
            for i in range(n_aux)
        ]
        for _ in range(n_staff):
            officer = rng.choice(order) if rng.random() < 0.5 else None
            staff.append(Operator(f"S{3001 + len(staff)}", "staff", unit.id, officer))
    return City(
        units=tuple(units),
        police=tuple(police),
        auxiliaries=tuple(auxiliaries),
        staff=tuple(staff),
        business_units=tuple(_business_units(rng)),
        agents=tuple(f"AG-{i:03d}" for i in range(1, AGENT_COUNT + 1)),
    )


_PLATE_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # I and O are never used on plates
_DIGITS = "0123456789"


def plate_number(rng: random.Random, vehicle_type: str) -> str:
    """A plausible Changde plate for the vehicle type (new-energy plates are one character longer)."""
    digits = "".join(rng.choices(_DIGITS, k=5))
    if vehicle_type == "new_energy":
        return f"{PLATE_PREFIX}{rng.choice('DF')}{digits}"
    if vehicle_type == "trailer":
        return f"{PLATE_PREFIX}{rng.choice(_PLATE_LETTERS)}{digits[:3]}挂"
    if vehicle_type == "motorcycle":
        return f"{PLATE_PREFIX}{digits}"
    return f"{PLATE_PREFIX}{rng.choice(_PLATE_LETTERS)}{rng.choice(_PLATE_LETTERS + _DIGITS)}{digits[:3]}"
