"""Rule filters: which events a rule looks at (the contract's Rules section, `filter`).

A filter maps a field path to a value (equality) or to a one-key mapping of one operator. All entries
must hold. An absent field (missing or null) matches nothing but `ne` and `not_in`. Values are compared
only with values of the same kind (text, number, true/false), so text never equals or orders against a
number and nothing raises. `ne` and `not_in` are exactly the negations of equality and `in`.

Pure: no I/O. A filter is compiled once, when its rule is loaded, into one predicate per entry, because
`matches` runs for every stored event a scan reads.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from typing import Annotated, Any

from pydantic import AfterValidator, GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

from app.events.domains import Domain
from app.events.schemas import BusinessUnitKind, OperatorKind

Event = Mapping[str, Any]
Getter = Callable[[Event], Any]
Predicate = Callable[[Event], bool]
Scalar = str | int | float | bool

ATTRIBUTES_PREFIX = "attributes."
TOP_LEVEL_PATHS = ("domain", "action", "source", "source_event_id", "agent_id", "object_ref")
NESTED_PATHS = (
    "operator.id",
    "operator.kind",
    "operator.unit",
    "operator.responsible_officer",
    "business_unit.id",
    "business_unit.kind",
)
KNOWN_PATHS = (*TOP_LEVEL_PATHS, *NESTED_PATHS)

# Paths whose values are a closed set: a typo there would silently never match, so it is refused.
ENUM_PATHS: dict[str, tuple[str, ...]] = {
    "domain": tuple(d.value for d in Domain),
    "operator.kind": tuple(k.value for k in OperatorKind),
    "business_unit.kind": tuple(k.value for k in BusinessUnitKind),
}


class Operator(StrEnum):
    EQ = "eq"  # written as a bare value in rule files, never as `eq:`
    IN = "in"
    NOT_IN = "not_in"
    NE = "ne"
    GT = "gt"
    GTE = "gte"
    LT = "lt"
    LTE = "lte"


WRITTEN_OPERATORS = tuple(op for op in Operator if op is not Operator.EQ)
LIST_OPERATORS = frozenset({Operator.IN, Operator.NOT_IN})
ORDER_OPERATORS = frozenset({Operator.GT, Operator.GTE, Operator.LT, Operator.LTE})

# Kinds of comparable values; anything else (lists, mappings, null) has no kind and compares with nothing.
_TEXT, _NUMBER, _BOOL = 1, 2, 3


def _kind(value: object) -> int:
    if isinstance(value, str):
        return _TEXT
    if isinstance(value, bool):  # before int: bool is an int subclass, but true is not 1 here
        return _BOOL
    if isinstance(value, int | float):
        return _NUMBER
    return 0


def check_path(path: str) -> str:
    """Return `path` if a filter or a rule's `field` may read it; raise ValueError naming it otherwise."""
    if path in KNOWN_PATHS:
        return path
    if path.startswith(ATTRIBUTES_PREFIX) and len(path) > len(ATTRIBUTES_PREFIX):
        return path
    raise ValueError(
        f"unknown field path {path!r}; use one of {', '.join(KNOWN_PATHS)} or attributes.<name>",
    )


FieldPath = Annotated[str, AfterValidator(check_path)]


@lru_cache(maxsize=1024)
def getter(path: str) -> Getter:
    """A function reading `path` from an event in the contract's JSON shape; None when it is absent."""
    check_path(path)
    outer, _, key = path.partition(".")
    if not key:

        def get_top(event: Event) -> Any:
            return event.get(outer)

        return get_top

    def get_nested(event: Event) -> Any:
        inner = event.get(outer)
        if inner is None:
            return None
        try:
            return inner.get(key)
        except AttributeError:  # a malformed event (e.g. attributes as text) simply has no such field
            return None

    return get_nested


def field_value(path: str, event: Event) -> Any:
    """The value at `path` in `event` (None when absent), for `distinct` and `sum` rules."""
    return getter(path)(event)


@dataclass(frozen=True, slots=True)
class Condition:
    path: str
    op: Operator
    value: Scalar | tuple[Scalar, ...]

    def written(self) -> Any:
        """The condition's value as a rule file writes it."""
        if self.op is Operator.EQ:
            return self.value
        value = list(self.value) if isinstance(self.value, tuple) else self.value
        return {self.op.value: value}


def _compile(condition: Condition) -> Predicate:
    get = getter(condition.path)
    op, value = condition.op, condition.value
    if op in LIST_OPERATORS:
        assert isinstance(value, tuple)
        # One set per kind, so that true and 1 (equal and same hash in Python) stay apart.
        by_kind: dict[int, frozenset[Scalar]] = {
            kind: frozenset(v for v in value if _kind(v) == kind) for kind in (_TEXT, _NUMBER, _BOOL)
        }

        def is_in(event: Event) -> bool:
            actual = get(event)
            members = by_kind.get(_kind(actual))
            return members is not None and actual in members

        if op is Operator.IN:
            return is_in
        return lambda event: not is_in(event)

    kind = _kind(value)

    def equals(event: Event) -> bool:
        actual = get(event)
        return bool(actual == value) and _kind(actual) == kind

    if op is Operator.EQ:
        return equals
    if op is Operator.NE:
        return lambda event: not equals(event)

    def ordered(compare: Callable[[Any, Any], bool]) -> Predicate:
        def check(event: Event) -> bool:
            actual = get(event)
            return _kind(actual) == kind and compare(actual, value)

        return check

    if op is Operator.GT:
        return ordered(lambda a, b: a > b)
    if op is Operator.GTE:
        return ordered(lambda a, b: a >= b)
    if op is Operator.LT:
        return ordered(lambda a, b: a < b)
    return ordered(lambda a, b: a <= b)


def _scalar_problem(value: Any) -> str | None:
    if value is None:
        return "null matches nothing; an absent field matches only ne and not_in"
    if isinstance(value, float) and not math.isfinite(value):
        return "numbers must be finite"
    if _kind(value) == 0:
        return f"must be text, a number or true/false, not {type(value).__name__}"
    return None


def _parse_condition(path: Any, written: Any) -> tuple[Condition | None, list[str]]:
    if not isinstance(path, str):
        return None, [f"{path!r}: a field path must be text"]
    try:
        check_path(path)
    except ValueError as exc:
        return None, [str(exc)]

    if isinstance(written, Mapping):
        names = [str(k) for k in written]
        if len(written) != 1 or names[0] not in WRITTEN_OPERATORS:
            return None, [
                f"{path}: an operator mapping holds exactly one of {', '.join(WRITTEN_OPERATORS)}"
                + (f" (got {', '.join(names)})" if names else "")
            ]
        op = Operator(names[0])
        value: Any = next(iter(written.values()))
    else:
        op, value = Operator.EQ, written

    where = f"{path}" if op is Operator.EQ else f"{path}.{op.value}"
    if op in LIST_OPERATORS:
        if not isinstance(value, list | tuple):
            return None, [f"{where}: {op.value} needs a list of values"]
        problems = [f"{where}[{i}]: {p}" for i, item in enumerate(value) if (p := _scalar_problem(item))]
        items: tuple[Scalar, ...] = tuple(value)
        problems += _enum_problems(path, where, items)
        return (None if problems else Condition(path, op, items)), problems

    if op is Operator.EQ and isinstance(value, list | tuple):
        return None, [f"{where}: a list is not a value; to match any of several, write {{in: [...]}}"]
    problem = _scalar_problem(value)
    if problem:
        return None, [f"{where}: {problem}"]
    if op in ORDER_OPERATORS and _kind(value) not in (_TEXT, _NUMBER):
        return None, [f"{where}: {op.value} needs a number or text"]
    if op not in ORDER_OPERATORS:
        problems = _enum_problems(path, where, (value,))
        if problems:
            return None, problems
    return Condition(path, op, value), []


def _enum_problems(path: str, where: str, values: Iterable[Any]) -> list[str]:
    allowed = ENUM_PATHS.get(path)
    if allowed is None:
        return []
    return [f"{where}: {v!r} is not one of {', '.join(allowed)}" for v in values if v not in allowed]


@dataclass(frozen=True, slots=True)
class Filter:
    """A compiled filter. Build it with `Filter.parse(mapping)`; the empty filter matches every event."""

    conditions: tuple[Condition, ...] = ()
    _predicates: tuple[Predicate, ...] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_predicates", tuple(_compile(c) for c in self.conditions))

    @classmethod
    def parse(cls, written: Mapping[str, Any] | None) -> Filter:
        """Compile a filter as a rule file writes it; raise ValueError listing every problem."""
        if written is None:
            return cls()
        if not isinstance(written, Mapping):
            raise ValueError("a filter maps field paths to values, e.g. {action: register}")
        conditions: list[Condition] = []
        problems: list[str] = []
        for path, value in written.items():
            condition, found = _parse_condition(path, value)
            problems += found
            if condition is not None:
                conditions.append(condition)
        if problems:
            raise ValueError("; ".join(problems))
        return cls(tuple(conditions))

    def matches(self, event: Event) -> bool:
        for predicate in self._predicates:
            if not predicate(event):
                return False
        return True

    def to_mapping(self) -> dict[str, Any]:
        """The filter as a rule file writes it."""
        return {c.path: c.written() for c in self.conditions}

    def __bool__(self) -> bool:
        return bool(self.conditions)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            _validate_filter,
            serialization=core_schema.plain_serializer_function_ser_schema(lambda f: f.to_mapping()),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {
            "type": "object",
            "description": "field path → value (equality) or {op: value} with op one of "
            + ", ".join(WRITTEN_OPERATORS),
        }


def _validate_filter(value: Any) -> Filter:
    if isinstance(value, Filter):
        return value
    try:
        return Filter.parse(value)
    except ValueError as exc:
        # A custom error keeps the message free of pydantic's "Value error, " prefix.
        raise PydanticCustomError("filter", "{problem}", {"problem": str(exc)}) from None


def matches(filter: Filter, event: Event) -> bool:
    """Whether `event` (the contract's JSON shape: the POST body plus `source`) passes `filter`."""
    return filter.matches(event)
