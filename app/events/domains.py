"""What each business domain (业务类别) accepts: its actions and the attributes it knows.

Pure: no I/O. `domain_errors` returns every problem with its location inside the event, so a client
is told exactly which field to fix.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

Loc = tuple[str | int, ...]

# JSON numbers beyond this are not exact in IEEE doubles, so their canonical hash would be ambiguous.
MAX_SAFE_INTEGER = 2**53 - 1


class Domain(StrEnum):
    VEHICLE_REGISTRATION = "vehicle_registration"
    DRIVER_TESTING = "driver_testing"
    VEHICLE_INSPECTION = "vehicle_inspection"
    ACCIDENT_HANDLING = "accident_handling"
    VIOLATION_HANDLING = "violation_handling"


DOMAIN_LABELS: dict[Domain, tuple[str, str]] = {
    Domain.VEHICLE_REGISTRATION: ("车辆上户/登记", "Vehicle registration"),
    Domain.DRIVER_TESTING: ("驾驶人考试", "Driver testing"),
    Domain.VEHICLE_INSPECTION: ("车辆检测", "Vehicle inspection"),
    Domain.ACCIDENT_HANDLING: ("事故处理", "Accident handling"),
    Domain.VIOLATION_HANDLING: ("违法处理", "Violation handling"),
}

VEHICLE_TYPES = ("car", "new_energy", "motorcycle", "trailer", "truck", "other")
RESULTS = ("pass", "fail")
CLOSURES = ("mediated", "penalized", "no_liability", "transferred")


class Check(Protocol):
    """A known attribute's check: the problem with a value, or None; and the JSON schema it enforces."""

    def __call__(self, value: Any) -> str | None: ...

    def json_schema(self) -> dict[str, Any]: ...


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True)
class _OneOf:
    choices: tuple[str, ...]

    def __call__(self, value: Any) -> str | None:
        return None if value in self.choices else f"must be one of {', '.join(self.choices)}"

    def json_schema(self) -> dict[str, Any]:
        return {"type": "string", "enum": list(self.choices)}


@dataclass(frozen=True)
class _Number:
    low: float | None
    high: float | None
    integer: bool

    def __call__(self, value: Any) -> str | None:
        if not _is_number(value) or (self.integer and not isinstance(value, int)):
            return "must be an integer" if self.integer else "must be a number"
        if self.low is not None and value < self.low:
            return f"must be ≥ {self.low:g}"
        if self.high is not None and value > self.high:
            return f"must be ≤ {self.high:g}"
        return None

    def json_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "integer" if self.integer else "number"}
        if self.low is not None:
            schema["minimum"] = self.low
        if self.high is not None:
            schema["maximum"] = self.high
        elif self.integer:
            schema["maximum"] = MAX_SAFE_INTEGER  # json_value_errors refuses larger integers
        return schema


def one_of(*choices: str) -> Check:
    return _OneOf(choices)


def number(*, low: float | None = None, high: float | None = None, integer: bool = False) -> Check:
    return _Number(low, high, integer)


@dataclass(frozen=True)
class Attribute:
    check: Check
    required_for: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class DomainSpec:
    actions: tuple[str, ...]
    attributes: Mapping[str, Attribute]


def _all(*actions: str) -> frozenset[str]:
    return frozenset(actions)


SPECS: dict[Domain, DomainSpec] = {
    Domain.VEHICLE_REGISTRATION: DomainSpec(
        actions=("register", "transfer", "deregister"),
        attributes={
            "vehicle_type": Attribute(one_of(*VEHICLE_TYPES), _all("register", "transfer", "deregister")),
        },
    ),
    Domain.DRIVER_TESTING: DomainSpec(
        actions=("exam",),
        attributes={
            "subject": Attribute(number(low=1, high=4, integer=True), _all("exam")),
            "result": Attribute(one_of(*RESULTS), _all("exam")),
            "score": Attribute(number(low=0, high=100), _all("exam")),
        },
    ),
    Domain.VEHICLE_INSPECTION: DomainSpec(
        actions=("inspection",),
        attributes={
            "result": Attribute(one_of(*RESULTS), _all("inspection")),
            "duration_seconds": Attribute(number(low=0), _all("inspection")),
            "vehicle_type": Attribute(one_of(*VEHICLE_TYPES), _all("inspection")),
        },
    ),
    Domain.ACCIDENT_HANDLING: DomainSpec(
        actions=("case_opened", "case_closed"),
        attributes={"closure": Attribute(one_of(*CLOSURES), _all("case_closed"))},
    ),
    Domain.VIOLATION_HANDLING: DomainSpec(
        actions=("penalty_issued", "record_modified", "record_deleted"),
        attributes={
            "fine_amount": Attribute(number(low=0), _all("penalty_issued", "record_modified", "record_deleted")),
            "points": Attribute(
                number(low=0, integer=True), _all("penalty_issued", "record_modified", "record_deleted")
            ),
        },
    ),
}


def action_errors(domain: Domain, action: str) -> Iterator[tuple[Loc, str]]:
    actions = SPECS[domain].actions
    if action not in actions:
        yield ("action",), f"unknown action for {domain.value}; expected one of {', '.join(actions)}"


def attribute_errors(domain: Domain, action: str, attributes: Mapping[str, Any]) -> Iterator[tuple[Loc, str]]:
    """Known attributes are checked when present and required where the action needs them."""
    for name, spec in SPECS[domain].attributes.items():
        if name not in attributes:
            if action in spec.required_for:
                yield ("attributes", name), f"required for {domain.value} {action}"
            continue
        problem = spec.check(attributes[name])
        if problem:
            yield ("attributes", name), problem


def json_value_errors(value: Any, loc: Loc) -> Iterator[tuple[Loc, str]]:
    """Free-form JSON that every database can store and hash canonically: finite numbers, safe
    integers, and text without NUL characters or unpaired surrogates."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _text_errors(key, (*loc, key))
            yield from json_value_errors(item, (*loc, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from json_value_errors(item, (*loc, index))
    elif isinstance(value, str):
        yield from _text_errors(value, loc)
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            yield loc, f"integers must lie within ±{MAX_SAFE_INTEGER}"
    elif isinstance(value, float) and not math.isfinite(value):
        yield loc, "numbers must be finite"


def _text_errors(text: str, loc: Loc) -> Iterator[tuple[Loc, str]]:
    message = text_problem(text)
    if message:
        yield loc, message


def text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "text must not contain NUL characters"
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "text must be valid Unicode (no unpaired surrogates)"
    return None
