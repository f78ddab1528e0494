"""Rule specifications (预警规则): what a rule file may say (the contract's Rules section).

One frozen model per rule type, discriminated on `type`. Everything a rule author can get wrong is
refused here, when the rule is loaded, so that evaluation never meets a malformed rule.

Pure: no I/O.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import time, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    ValidationInfo,
    field_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

from app.events.domains import Domain, text_problem
from app.rules.filters import FieldPath, Filter

UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# Far beyond any sensible window; it keeps window arithmetic clear of timedelta's overflow.
MAX_DURATION = timedelta(days=3660)
_DURATION_RE = re.compile(r"(0|[1-9][0-9]*)([a-z]+)")
DURATION_HINT = "a positive whole number and a unit (s, m, h, d or w), e.g. 15m, 1h, 1d, 7d"


class Duration(timedelta):
    """A timedelta that remembers the text it was written as (`15m`, `1h`, `7d`), and prints as that text."""

    __slots__ = ("text",)
    text: str

    def __new__(cls, text: str) -> Duration:
        match = _DURATION_RE.fullmatch(text) if isinstance(text, str) else None
        if match is None:
            raise ValueError(f"{text!r} is not a duration: write {DURATION_HINT}")
        amount, unit = int(match[1]), match[2]
        if unit not in UNIT_SECONDS:
            raise ValueError(f"{text!r} has an unknown unit {unit!r}: write {DURATION_HINT}")
        if amount == 0:
            raise ValueError(f"{text!r} is not positive: write {DURATION_HINT}")
        if amount * UNIT_SECONDS[unit] > MAX_DURATION.total_seconds():
            raise ValueError(f"{text!r} is too long: at most {MAX_DURATION.days}d")
        self = super().__new__(cls, seconds=amount * UNIT_SECONDS[unit])
        self.text = text
        return self

    @classmethod
    def of(cls, delta: timedelta) -> Duration:
        """The duration of `delta`, written in the largest unit that divides it."""
        if isinstance(delta, Duration):
            return delta
        seconds = delta.total_seconds()
        if seconds <= 0 or seconds != int(seconds):
            raise ValueError(f"{delta} is not a positive whole number of seconds")
        for unit in ("w", "d", "h", "m", "s"):
            if seconds % UNIT_SECONDS[unit] == 0:
                return cls(f"{int(seconds) // UNIT_SECONDS[unit]}{unit}")
        raise AssertionError("unreachable: every whole number of seconds is a multiple of 1s")

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"Duration({self.text!r})"

    def __reduce__(self) -> tuple[type[Duration], tuple[str]]:
        # timedelta pickles as (days, seconds, microseconds), which this constructor does not take.
        return (Duration, (self.text,))

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            _validate_duration,
            serialization=core_schema.plain_serializer_function_ser_schema(str, when_used="json"),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"type": "string", "pattern": r"^[1-9][0-9]*[smhdw]$", "examples": ["15m", "1h", "1d", "7d"]}


def _validate_duration(value: Any) -> Duration:
    try:
        if isinstance(value, timedelta):
            return Duration.of(value)
        if isinstance(value, str):
            return Duration(value)
    except ValueError as exc:
        raise PydanticCustomError("duration", "{problem}", {"problem": str(exc)}) from None
    raise PydanticCustomError("duration", "must be a duration: {hint}", {"hint": DURATION_HINT})


_HOURS_RE = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-3]):([0-5][0-9])")


@dataclass(frozen=True, slots=True)
class HoursRange:
    """Local working hours `HH:MM-HH:MM`; a time is inside when start ≤ time < end."""

    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> HoursRange:
        match = _HOURS_RE.fullmatch(text)
        if match is None:
            raise ValueError(f"{text!r} is not a range of hours: write HH:MM-HH:MM, e.g. 08:00-18:00")
        start = time(int(match[1]), int(match[2]))
        end = time(int(match[3]), int(match[4]))
        if not start < end:
            raise ValueError(f"{text!r}: the start must come before the end (ranges over midnight are not supported)")
        return cls(start, end)

    def __contains__(self, moment: time) -> bool:
        return self.start <= moment < self.end

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            _validate_hours,
            serialization=core_schema.plain_serializer_function_ser_schema(str, when_used="json"),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"type": "string", "pattern": _HOURS_RE.pattern, "examples": ["08:00-18:00"]}


def _validate_hours(value: Any) -> HoursRange:
    if isinstance(value, HoursRange):
        return value
    if not isinstance(value, str):
        raise PydanticCustomError("hours", 'must be text HH:MM-HH:MM, e.g. "08:00-18:00" (quoted)')
    try:
        return HoursRange.parse(value)
    except ValueError as exc:
        raise PydanticCustomError("hours", "{problem}", {"problem": str(exc)}) from None


class GroupBy(StrEnum):
    OPERATOR = "operator"
    RESPONSIBLE_OFFICER = "responsible_officer"
    BUSINESS_UNIT = "business_unit"
    AGENT = "agent"
    ORG_UNIT = "org_unit"


class Severity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


def _label(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    problem = text_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def _number(value: Any) -> Any:
    # Pydantic would read true as 1 and "20" as 20; a rule author who wrote either meant something else.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a number")
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


RuleId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9-]*$")]
Label = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_label)]
Threshold = Annotated[float, Field(ge=0), BeforeValidator(_number)]
Count = Annotated[int, Field(ge=1, strict=True)]


class RuleBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: RuleId = Field(description="lowercase letters, digits and hyphens, e.g. vr-bulk-register")
    label_zh: Label
    label_en: Label
    domains: Annotated[tuple[Domain, ...], Field(min_length=1)]
    filter: Filter = Field(default_factory=Filter, description="empty: every event of the rule's domains")
    group_by: GroupBy
    window: Duration
    warn_at: Threshold
    trip_at: Threshold | None = Field(default=None, description="reaching it opens a breaker; ≥ warn_at")
    severity: Severity
    probation: Duration = Field(default=Duration("24h"), description="half-open period after a reset")

    @field_validator("domains")
    @classmethod
    def _domains_once(cls, value: tuple[Domain, ...]) -> tuple[Domain, ...]:
        seen: set[Domain] = set()
        for domain in value:
            if domain in seen:
                raise ValueError(f"{domain.value} is listed twice")
            seen.add(domain)
        return value

    @field_validator("trip_at")
    @classmethod
    def _trip_at_not_below_warn_at(cls, value: float | None, info: ValidationInfo) -> float | None:
        warn_at = info.data.get("warn_at")
        if value is not None and warn_at is not None and value < warn_at:
            raise ValueError(f"must be ≥ warn_at ({warn_at:g})")
        return value


class CountRule(RuleBase):
    """Value: how many matching events."""

    type: Literal["count"] = "count"


class RatioRule(RuleBase):
    """Value: the share of matching events that also match `numerator`, once `min_events` match."""

    type: Literal["ratio"] = "ratio"
    numerator: Filter
    min_events: Count = 1

    @field_validator("warn_at", "trip_at")
    @classmethod
    def _a_share(cls, value: float | None) -> float | None:
        if value is not None and value > 1:
            raise ValueError("a ratio threshold is a share and must lie in [0, 1] (e.g. 0.3 for 30%)")
        return value

    @field_validator("numerator")
    @classmethod
    def _numerator_selects(cls, value: Filter) -> Filter:
        if not value:
            raise ValueError("must hold at least one condition (an empty numerator makes every ratio 1)")
        return value


class DistinctRule(RuleBase):
    """Value: how many distinct values of `field` the matching events have."""

    type: Literal["distinct"] = "distinct"
    field: FieldPath


class SumRule(RuleBase):
    """Value: the sum of the numeric `field` over the matching events."""

    type: Literal["sum"] = "sum"
    field: FieldPath


class OffHoursRule(RuleBase):
    """Value: how many matching events happened outside `allowed_hours` (local time)."""

    type: Literal["off_hours"] = "off_hours"
    allowed_hours: HoursRange


class SpikeRule(RuleBase):
    """Value: this window's count over the average of the previous `baseline_windows` windows."""

    type: Literal["spike"] = "spike"
    baseline_windows: Count
    min_events: Count = 1


RULE_TYPES: dict[str, type[RuleBase]] = {
    "count": CountRule,
    "ratio": RatioRule,
    "distinct": DistinctRule,
    "sum": SumRule,
    "off_hours": OffHoursRule,
    "spike": SpikeRule,
}

AnyRule = CountRule | RatioRule | DistinctRule | SumRule | OffHoursRule | SpikeRule
Rule = Annotated[AnyRule, Field(discriminator="type")]


class RuleSet:
    """An immutable set of rules in file order, with unique ids."""

    __slots__ = ("_by_domain", "_by_id", "_rules")

    def __init__(self, rules: Iterable[AnyRule] = ()) -> None:
        self._rules: tuple[AnyRule, ...] = tuple(rules)
        self._by_id: dict[str, AnyRule] = {}
        for rule in self._rules:
            if rule.id in self._by_id:
                raise ValueError(f"duplicate rule id {rule.id!r}")
            self._by_id[rule.id] = rule
        self._by_domain: dict[Domain, tuple[AnyRule, ...]] = {
            domain: tuple(r for r in self._rules if domain in r.domains) for domain in Domain
        }

    @property
    def rules(self) -> tuple[AnyRule, ...]:
        return self._rules

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(self._by_id)

    def get(self, rule_id: str) -> AnyRule | None:
        return self._by_id.get(rule_id)

    def for_domain(self, domain: Domain) -> tuple[AnyRule, ...]:
        """The rules that look at events of `domain`."""
        return self._by_domain[domain]

    def __getitem__(self, rule_id: str) -> AnyRule:
        return self._by_id[rule_id]

    def __contains__(self, rule_id: object) -> bool:
        return rule_id in self._by_id

    def __iter__(self) -> Iterator[AnyRule]:
        return iter(self._rules)

    def __len__(self) -> int:
        return len(self._rules)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RuleSet) and self._rules == other._rules

    def __hash__(self) -> int:
        return hash(self._rules)

    def __repr__(self) -> str:
        return f"RuleSet({', '.join(self.ids)})"
