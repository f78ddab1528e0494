"""The `data` of a delivery: the object as `GET /v1/<objects>/{id}` shows it at the end of the change."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from app.alerts.models import Alert
from app.alerts.router import alert_detail
from app.breakers.models import Breaker
from app.breakers.router import breaker_detail
from app.exemptions.models import Exemption
from app.exemptions.router import exemption_out


def snapshot(session: Session, kind: str, object_id: int, now: datetime) -> dict[str, Any] | None:
    if kind == "alert":
        alert = session.get(Alert, object_id)
        return None if alert is None else alert_detail(session, alert).model_dump(mode="json", by_alias=True)
    if kind == "breaker":
        breaker = session.get(Breaker, object_id)
        return None if breaker is None else breaker_detail(session, breaker).model_dump(mode="json", by_alias=True)
    if kind == "exemption":
        exemption = session.get(Exemption, object_id)
        return None if exemption is None else exemption_out(exemption, now).model_dump(mode="json", by_alias=True)
    raise ValueError(f"unknown kind {kind!r}")
