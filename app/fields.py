"""Field types shared by request bodies and parameters: clean text, ids, reasons, times."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BeforeValidator, Field

from app.events.domains import text_problem

MIN_TIME = datetime(2000, 1, 1, tzinfo=UTC)
MAX_TIME = datetime(2100, 1, 1, tzinfo=UTC)
# Row ids lie in their column's range: a larger one names nothing, and the database refuses even to
# compare with it (PostgreSQL casts the parameter to the column's type). Events and audit entries
# have BIGINT ids; alerts, breakers and scans INTEGER ones (SQLite's are 64-bit either way).
MAX_ROW_ID = 2**63 - 1
MAX_INT_ROW_ID = 2**31 - 1


def _clean_text(value: str) -> str:
    problem = text_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def _rfc3339_string(value: Any) -> Any:
    # Numbers would be read as Unix timestamps; the contract asks for RFC 3339 text with an offset.
    if not isinstance(value, str):
        raise ValueError("must be an RFC 3339 time with an offset, e.g. 2026-11-21T09:30:00+08:00")
    return value


def in_time_range(value: datetime) -> datetime:
    if not MIN_TIME <= value < MAX_TIME:
        raise ValueError("must lie between 2000-01-01 and 2100-01-01")
    return value.astimezone(UTC)


Text = Annotated[str, AfterValidator(_clean_text)]
IDENT_PATTERN = r"^\S(?:.*\S)?$"  # no leading or trailing blanks
# Pydantic enforces a pattern given after a validator but leaves it out of the JSON schema; this
# states it there too, so the OpenAPI document says what the server checks.
SHOW_IDENT_PATTERN: dict[str, Any] = {"pattern": IDENT_PATTERN}
Ident = Annotated[Text, Field(min_length=1, max_length=64, pattern=IDENT_PATTERN, json_schema_extra=SHOW_IDENT_PATTERN)]


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


# Free text a person writes to justify an action (a reset, a transition): required, not blank.
Reason = Annotated[Text, Field(min_length=1, max_length=2000), AfterValidator(_not_blank)]
Time = Annotated[AwareDatetime, BeforeValidator(_rfc3339_string), AfterValidator(in_time_range)]
