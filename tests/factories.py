"""Plain factory functions for test data."""

from __future__ import annotations

import itertools
from typing import Any

_ids = itertools.count(1)


def make_event(**overrides: Any) -> dict[str, Any]:
    """A valid vehicle-registration event body; keyword arguments replace top-level fields."""
    body: dict[str, Any] = {
        "source_event_id": f"VR-{next(_ids):08d}",
        "domain": "vehicle_registration",
        "action": "register",
        "occurred_at": "2026-11-21T09:30:00+08:00",
        "operator": {"id": "P1001", "kind": "police", "unit": "ZS1-CW", "responsible_officer": None},
        "business_unit": {"id": "IS-07", "kind": "inspection_station"},
        "agent_id": "AG-88",
        "object_ref": "湘J12345",
        "attributes": {"vehicle_type": "new_energy"},
    }
    body.update(overrides)
    return body


def auxiliary(unit: str = "ZS1-CW", officer: str = "P1001", operator_id: str = "A2001") -> dict[str, Any]:
    return {"id": operator_id, "kind": "auxiliary", "unit": unit, "responsible_officer": officer}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# The rule example of ../shared/CONTRACT.md (Rules), as a rule file holds it.
CONTRACT_RULE_YAML = """\
- id: vr-bulk-register
  type: count
  label_zh: 单人单小时大量上户
  label_en: Bulk registrations by one operator in an hour
  domains: [vehicle_registration]
  filter: {action: register, attributes.vehicle_type: {in: [new_energy, motorcycle]}}
  group_by: operator
  window: 1h
  warn_at: 20
  trip_at: 40
  severity: high
  probation: 24h
"""
