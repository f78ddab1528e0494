from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from app.events.domains import Domain
from app.rules.spec import Severity


class Stage(StrEnum):
    WARNING = "warning"  # 预警
    SUPERVISION = "supervision"  # 提级督办
    INTERVIEW = "interview"  # 警示约谈
    ACCOUNTABILITY = "accountability"  # 追责问责
    CLOSED = "closed"  # 办结
    DISMISSED = "dismissed"  # 排除


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
    responsible_officer: str | None = Field(description="连带责任民警: the officer answerable for an auxiliary subject")
    first_event_at: datetime
    last_event_at: datetime
    created_at: datetime
    updated_at: datetime


class AlertDetail(AlertOut):
    evidence: dict[str, Any] = Field(
        description="event_ids (the first counted events, in time order), count (all that counted), value, "
        "truncated, responsible_officer"
    )
    history: list[dict[str, Any]] = Field(description="stage transitions: {from, to, actor, at, reason, …}")
