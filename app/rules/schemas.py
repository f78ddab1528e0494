"""Request and response bodies of the rule endpoints (预警规则)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from app.events.schemas import Time
from app.rules.spec import Rule


class RuleList(BaseModel):
    """The rules in force, sorted by id (a single page: `next_cursor` is always null)."""

    items: list[Rule]
    next_cursor: None = None


class ValidateOut(BaseModel):
    """A rule document that would load: the ids of its rules, in document order."""

    valid: bool = True
    rules: list[str]


class BacktestIn(BaseModel):
    """The range of windows to replay: windows starting in [from, to)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    time_from: Time = Field(alias="from", description="RFC 3339 with an offset; windows starting at or after it")
    to: Time = Field(description="RFC 3339 with an offset; windows starting before it, events before it")


class BacktestItem(BaseModel):
    """An alert the rule would have raised: one subject in one window that reached `warn_at`."""

    subject_type: str = Field(description="the rule's group_by")
    subject_id: str
    window_start: datetime
    window_end: datetime
    value: float
    tripped: bool = Field(description="the rule has a trip_at and the value reached it")
    hits: int = Field(description="how many events counted toward the value")
    event_ids: list[int] = Field(description="the events that counted, in (occurred_at, id) order")
    exemption_id: int | None = Field(
        default=None, description="the approved exemption (报备) that would cover the alert: it would trip nothing"
    )


class BacktestOut(BaseModel):
    items: list[BacktestItem]


class ReloadOut(BaseModel):
    generation: int = Field(
        description="increases with every successful reload; every worker adopts it within a second"
    )
    rules: int = Field(description="how many rules are now in force")
    digest: str = Field(description="SHA-256 of the rules in force, as canonical JSON")
