from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from app.events.domains import Domain
from app.fields import Ident, Reason, Text, Time
from app.rules.spec import GroupBy


class ExemptionStatus(StrEnum):
    REQUESTED = "requested"  # 已申请
    APPROVED = "approved"  # 已批准
    REJECTED = "rejected"  # 已驳回
    REVOKED = "revoked"  # 已撤销


class ExemptionIn(BaseModel):
    """A filing (报备): one rule, or (rule_id null) every rule watching any of `domains`, for one subject."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    rule_id: Ident | None = Field(description="the rule covered; null: every rule watching any of `domains`")
    domains: list[Domain] | None = Field(
        default=None, min_length=1, max_length=5, description="defaults to the rule's; required without rule_id"
    )
    subject_type: GroupBy
    subject_id: Ident
    starts_at: Time = Field(alias="from", description="start of the business covered (may lie in the past)")
    ends_at: Time = Field(alias="to", description="end (exclusive), at most 31 days after `from`")
    reason: Reason
    reference: Annotated[Text, Field(min_length=1, max_length=200)] | None = Field(
        default=None, description="the business's own reference, e.g. a fleet order number"
    )


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Strict: `0`, `"no"` or `"false"` is not a decision (JSON has true and false for that).
    approve: StrictBool
    reason: Reason


class RevokeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Reason


class ExemptionOut(BaseModel):
    id: int
    status: ExemptionStatus
    active: bool = Field(description="approved and from ≤ now < to")
    rule_id: str | None
    domains: list[Domain]
    subject_type: str
    subject_id: str
    starts_at: datetime = Field(serialization_alias="from")
    ends_at: datetime = Field(serialization_alias="to")
    reason: str
    reference: str | None
    requested_by: str
    filed_at: datetime
    late: bool = Field(description="filed after `from` (late filing, 补报)")
    decided_by: str | None
    decided_at: datetime | None
    decision_reason: str | None
    revoked_by: str | None
    revoked_at: datetime | None
    revoke_reason: str | None
