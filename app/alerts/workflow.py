"""The alert workflow (处置流程) as a pure transition table: which moves are allowed, and what each needs.

预警 warning → 提级督办 supervision → 警示约谈 interview → 追责问责 accountability, forward only (a stage may
be skipped); 办结 closed and 排除 dismissed (a false positive) from any open stage; closed and dismissed are
final. No I/O here: the service applies a move, this module decides whether it is one.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from app.alerts.schemas import Outcome, Stage

OPEN_ORDER = (Stage.WARNING, Stage.SUPERVISION, Stage.INTERVIEW, Stage.ACCOUNTABILITY)
FINAL = frozenset({Stage.CLOSED, Stage.DISMISSED})


# Outcomes for people (an accountability of a business unit is a suspension), in the order reports list them.
PEOPLE_OUTCOMES = tuple(o.value for o in Outcome if o is not Outcome.SUSPENSION)

# The fields a target stage takes (all required except where noted in `problems`).
FIELDS: Mapping[Stage, tuple[str, ...]] = {
    Stage.SUPERVISION: ("assignee_unit", "due_at"),
    Stage.INTERVIEW: ("interviewees", "level", "held_at", "summary"),
    Stage.ACCOUNTABILITY: ("outcome", "suspension_days"),
    Stage.CLOSED: (),
    Stage.DISMISSED: (),
    Stage.WARNING: (),
}
ALL_FIELDS = frozenset(name for names in FIELDS.values() for name in names)


def allowed_targets(stage: Stage) -> list[Stage]:
    """Where an alert in ``stage`` may go: any later open stage, closed or dismissed; nowhere once final."""
    if stage in FINAL:
        return []
    later = list(OPEN_ORDER[OPEN_ORDER.index(stage) + 1 :])
    return [*later, Stage.CLOSED, Stage.DISMISSED]


def problems(
    target: Stage, given: Mapping[str, Any], *, subject_type: str, now: datetime
) -> list[tuple[tuple[str, ...], str]]:
    """Every field problem of a move to ``target`` with the fields ``given`` (the non-null ones), by field."""
    found: list[tuple[tuple[str, ...], str]] = []
    takes = FIELDS[target]
    for name in sorted(set(given) - set(takes)):
        found.append(((name,), f"not used when moving to {target.value}"))
    required = [name for name in takes if name != "suspension_days"]
    for name in required:
        if name not in given:
            found.append(((name,), f"required when moving to {target.value}"))
    if target is Stage.INTERVIEW and "interviewees" in given and not given["interviewees"]:
        found.append((("interviewees",), "name at least one person interviewed"))
    if target is Stage.ACCOUNTABILITY and "outcome" in given:
        outcome = Outcome(given["outcome"])
        if outcome is Outcome.SUSPENSION:
            if subject_type != "business_unit":
                found.append((("outcome",), "suspension applies to a business unit; this alert's subject is a person"))
            if "suspension_days" not in given:
                found.append((("suspension_days",), "required with outcome suspension"))
        elif "suspension_days" in given:
            found.append((("suspension_days",), "only with outcome suspension"))
        elif subject_type == "business_unit":
            found.append((("outcome",), "a business unit is held accountable by suspension"))
    return found
