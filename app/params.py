"""Parameters given in query strings and paths: times (`from`, `to`) and ids."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import Path, Query
from pydantic import AfterValidator, AwareDatetime, BeforeValidator

from app.fields import IDENT_PATTERN, MAX_INT_ROW_ID, MAX_ROW_ID, SHOW_IDENT_PATTERN, Text, in_time_range

# An unescaped "+" in a query string arrives as a space ("…T09:30:00 08:00"): read it as the offset
# sign it was meant to be, since a time without an offset is refused anyway.
_SPACE_OFFSET = re.compile(r"^(.*\d) (\d\d:?\d\d)$")


def _restore_plus(value: Any) -> Any:
    if isinstance(value, str):
        match = _SPACE_OFFSET.match(value)
        if match:
            return f"{match.group(1)}+{match.group(2)}"
    return value


QueryTime = Annotated[AwareDatetime, BeforeValidator(_restore_plus), AfterValidator(in_time_range)]


# Ids in query strings and paths are text as stored: no NUL characters, no surrounding blanks.
QueryId = Annotated[Text | None, Query(max_length=64)]
PathId = Annotated[Text, Path(min_length=1, max_length=64, pattern=IDENT_PATTERN, json_schema_extra=SHOW_IDENT_PATTERN)]
# Row ids: positive, within their column's range (beyond it, a 422 rather than a database error).
BigRowId = Annotated[int, Path(ge=1, le=MAX_ROW_ID, description="a positive 64-bit integer")]
RowId = Annotated[int, Path(ge=1, le=MAX_INT_ROW_ID, description="a positive 32-bit integer")]
