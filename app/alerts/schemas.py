from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from app.events.domains import Domain
from app.fields import Ident, Reason, Text, Time
from app.rules.spec import Severity


class Stage(StrEnum):
    WARNING = "warning"  # 预警
    SUPERVISION = "supervision"  # 提级督办
    INTERVIEW = "interview"  # 警示约谈
    ACCOUNTABILITY = "accountability"  # 追责问责
    CLOSED = "closed"  # 办结
    DISMISSED = "dismissed"  # 排除


class InterviewLevel(StrEnum):
    """三级约谈: by the unit, by the discipline inspection office, by the party committee."""

    UNIT = "unit"
    DISCIPLINE = "discipline"
    COMMITTEE = "committee"


class Outcome(StrEnum):
    CRITICISM = "criticism"  # 批评教育
    WARNING = "warning"  # 警告
    DEMERIT = "demerit"  # 记过
    DISMISSAL = "dismissal"  # 辞退
    TRANSFERRED_TO_DISCIPLINE = "transferred_to_discipline"  # 移交纪检监察
    SUSPENSION = "suspension"  # 停业整改 (a business unit)


class TransitionIn(BaseModel):
    """A move of the alert to another stage; `reason` always, and the fields the target stage takes."""

    model_config = ConfigDict(extra="forbid")

    to: Stage
    reason: Reason
    assignee_unit: Ident | None = Field(default=None, description="supervision: the org unit that handles it")
    due_at: Time | None = Field(default=None, description="supervision: when it must be handled by")
    interviewees: list[Ident] | None = Field(default=None, max_length=100, description="interview: who was interviewed")
    level: InterviewLevel | None = Field(default=None, description="interview: unit, discipline or committee")
    held_at: Time | None = Field(default=None, description="interview: when it was held")
    summary: Annotated[Text, Field(min_length=1, max_length=4000)] | None = Field(
        default=None, description="interview: what was said"
    )
    outcome: Outcome | None = Field(default=None, description="accountability: for people, or suspension")
    suspension_days: int | None = Field(default=None, ge=1, le=3650, description="accountability: suspension length")

    def given(self) -> dict[str, Any]:
        """The stage fields sent (not null), by name."""
        return {name: value for name, value in self.model_dump(exclude={"to", "reason"}).items() if value is not None}


class TransitionOut(BaseModel):
    from_stage: Stage = Field(serialization_alias="from")
    to_stage: Stage = Field(serialization_alias="to")
    actor: str
    at: datetime
    reason: str
    details: dict[str, Any] = Field(description="the fields given with the move")


class AlertOut(BaseModel):
    id: int
    rule_id: str
    severity: Severity
    subject_type: str = Field(description="the rule's group_by")
    subject_id: str
    domains: list[Domain] = Field(description="the rule's domains")
    window_start: datetime
    window_end: datetime
    value: float = Field(description="the window's current value")
    hits: int = Field(description="how many events counted toward the value")
    unit: str = Field(description="org unit of the operator of the alert's first event; decides who sees it")
    stage: Stage
    tripped: bool = Field(description="the value reached the rule's trip_at (a breaker opened)")
    cleared: bool = Field(description="the value fell back under warn_at; the alert is kept")
    cleared_at: datetime | None
    overdue: bool = Field(description="in supervision past its due_at")
    assignee_unit: str | None = Field(description="supervision: the org unit that handles it")
    due_at: datetime | None = Field(description="supervision: when it must be handled by")
    responsible_officer: str | None = Field(description="连带责任民警: the officer answerable for an auxiliary subject")
    exempted: bool = Field(description="an approved exemption (报备) covers it: it trips no breaker, counts apart")
    exemption_id: int | None = Field(description="the approved exemption that covers it")
    first_event_at: datetime
    last_event_at: datetime
    created_at: datetime
    updated_at: datetime


class AlertDetail(AlertOut):
    evidence: dict[str, Any] = Field(
        description="event_ids (the first counted events, in time order), count (all that counted), value, "
        "truncated, responsible_officer"
    )
    history: list[TransitionOut] = Field(description="stage transitions, oldest first")
