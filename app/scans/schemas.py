from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from app.fields import Time


class ScanIn(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    time_from: Time | None = Field(default=None, alias="from", description="first instant (default: the first event)")
    time_to: Time | None = Field(default=None, alias="to", description="end, exclusive (default: after the last event)")

    @field_validator("time_to")
    @classmethod
    def _ordered(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        start = info.data.get("time_from")
        if value is not None and start is not None and value <= start:
            raise ValueError("must be after `from`")
        return value


class ScanOut(BaseModel):
    id: int
    trigger: str = Field(description="cli, api or periodic")
    actor: str
    status: str = Field(description="running, done or failed")
    time_from: datetime | None = Field(serialization_alias="from")
    time_to: datetime | None = Field(serialization_alias="to")
    started_at: datetime
    finished_at: datetime | None
    duration_ms: int | None
    rules: int = Field(description="rules evaluated")
    windows: int = Field(description="(subject, window) groups measured")
    events: int = Field(description="stored events in the range")
    alerts_raised: int
    alerts_updated: int
    alerts_cleared: int
    breakers_tripped: int
    overdue_flagged: int = Field(description="supervisions this scan found past their due time")
    windows_repaired: int = Field(
        description="(rule, subject, window) aggregates found to differ from the stored events, and rebuilt"
    )
    error: str | None
