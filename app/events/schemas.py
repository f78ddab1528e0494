"""Event bodies in and out (the contract's Events section)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    model_validator,
)

from app.breakers.schemas import BreakerOut
from app.errors import PayloadTooLarge
from app.events.domains import Domain
from app.fields import (
    IDENT_PATTERN,
    MAX_TIME,
    MIN_TIME,
    SHOW_IDENT_PATTERN,
    Ident,
    Reason,
    Text,
    Time,
    in_time_range,
)
from app.jsonutil import MAX_BYTES, MAX_DEPTH, MAX_ITEMS, MAX_KEYS, MAX_TEXT

__all__ = ["IDENT_PATTERN", "MAX_TIME", "MIN_TIME", "Ident", "Reason", "Text", "Time", "in_time_range"]

MAX_BATCH = 1000


class OperatorKind(StrEnum):
    POLICE = "police"
    AUXILIARY = "auxiliary"
    STAFF = "staff"


class BusinessUnitKind(StrEnum):
    INSPECTION_STATION = "inspection_station"
    SERVICE_STATION = "service_station"
    COMPANY = "company"
    DRIVING_SCHOOL = "driving_school"
    EXAM_SITE = "exam_site"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OperatorIn(_Strict):
    id: Ident
    kind: OperatorKind
    unit: Ident = Field(description="org unit (单位) id; an unknown unit is registered on the fly")
    responsible_officer: Ident | None = Field(
        default=None, description="连带责任民警: required for auxiliaries, allowed for staff"
    )


class BusinessUnitIn(_Strict):
    id: Ident
    kind: BusinessUnitKind


class EventIn(_Strict):
    source_event_id: Annotated[
        Text, Field(min_length=1, max_length=128, pattern=IDENT_PATTERN, json_schema_extra=SHOW_IDENT_PATTERN)
    ]
    domain: Domain
    action: Annotated[Text, Field(min_length=1, max_length=32)]
    occurred_at: Time
    operator: OperatorIn
    business_unit: BusinessUnitIn | None = None
    agent_id: Ident | None = None
    object_ref: Annotated[Text, Field(min_length=1, max_length=128)] | None = None
    attributes: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            f"free-form; known ones are checked. At most {MAX_KEYS} keys, {MAX_DEPTH} levels deep and"
            f" {MAX_BYTES} bytes as JSON; strings (keys too) at most {MAX_TEXT} characters, arrays at most"
            f" {MAX_ITEMS} items"
        ),
        json_schema_extra={"maxProperties": MAX_KEYS},
    )


class OperatorOut(BaseModel):
    id: str
    kind: OperatorKind
    unit: str
    responsible_officer: str | None


class BusinessUnitOut(BaseModel):
    id: str
    kind: BusinessUnitKind


class EventOut(BaseModel):
    id: int
    source: str
    source_event_id: str
    domain: Domain
    action: str
    occurred_at: datetime
    operator: OperatorOut
    business_unit: BusinessUnitOut | None
    agent_id: str | None
    object_ref: str | None
    attributes: dict[str, Any]
    content_hash: str = Field(description="SHA-256 of the event's canonical (RFC 8785) content")
    received_at: datetime


class IngestResult(BaseModel):
    id: int
    duplicate: bool = Field(description="true when this event was already stored with the same content")
    alerts: list[int] = Field(description="ids of the alerts this event raised or updated")
    blocked: bool = Field(description="true when a breaker stops this event's subject: stop the business")
    breakers: list[BreakerOut] = Field(description="open breakers covering this event's subjects in its domain")


class BatchIn(_Strict):
    events: list[EventIn] = Field(
        description=f"at most {MAX_BATCH} events (413 past that); all are stored or none",
        json_schema_extra={"maxItems": MAX_BATCH},
    )

    @model_validator(mode="before")
    @classmethod
    def _at_most_max_batch(cls, data: Any) -> Any:
        # Checked before the items are validated: an oversized batch is a 413 whatever it holds.
        # Pydantic lets exceptions other than ValueError through, so this reaches the problem handler.
        if isinstance(data, dict) and isinstance(data.get("events"), list) and len(data["events"]) > MAX_BATCH:
            raise PayloadTooLarge(f"a batch holds at most {MAX_BATCH} events; this one has {len(data['events'])}")
        return data


class BatchOut(BaseModel):
    items: list[IngestResult]
