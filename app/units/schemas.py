from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from app.events.schemas import Ident, Text

Label = Annotated[Text, Field(min_length=1, max_length=200)]


class UnitIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    parent: Ident | None = Field(default=None, description="the unit above this one; null for a top unit")
    label_zh: Label
    label_en: Label


class UnitOut(BaseModel):
    id: str
    parent: str | None
    label_zh: str | None
    label_en: str | None
    registered_by: str = Field(description="`admin`, or `event` for a unit first named by an event")
    created_at: datetime
    updated_at: datetime
