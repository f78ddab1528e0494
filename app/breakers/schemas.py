from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from app.events.domains import Domain
from app.fields import Reason


class BreakerState(StrEnum):
    CLOSED = "closed"  # business flows
    OPEN = "open"  # business stopped (熔断)
    HALF_OPEN = "half_open"  # reset by an inspector, on probation: business flows, a new trip re-opens it


class BreakerOut(BaseModel):
    id: int
    subject_type: str = Field(description="the rule's group_by: operator, responsible_officer, business_unit, …")
    subject_id: str
    domains: list[Domain] = Field(description="the business domains stopped while the breaker is open")
    state: BreakerState
    rule_id: str
    alert_id: int = Field(description="the alert whose value reached trip_at when the breaker last opened")
    opened_at: datetime
    reset_at: datetime | None
    probation_until: datetime | None
    kind: str = Field(description="rule (tripped by a rule) or suspension (停业整改 by an accountability outcome)")
    suspended_until: datetime | None = Field(description="a suspension: business stops until then")


class BreakerChangeOut(BaseModel):
    action: str = Field(description="trip, reset, suspend or lift")
    from_state: BreakerState = Field(serialization_alias="from")
    to_state: BreakerState = Field(serialization_alias="to")
    actor: str
    reason: str
    alert_id: int
    at: datetime


class BreakerDetail(BreakerOut):
    history: list[BreakerChangeOut] = Field(description="every trip and reset, oldest first")


class CheckOut(BaseModel):
    allowed: bool = Field(description="false while an open breaker stops this subject's business in the domain")
    breakers: list[BreakerOut] = Field(description="the open breakers that stop it")


class ResetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Reason = Field(description="why business may flow again (on probation)")
