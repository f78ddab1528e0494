"""Rules in force, rule documents checked without side effects, and backtests over stored events.

Nothing here writes: `load` reads the rule folder (for `app.rules.state.RulesInForce`, which keeps a
worker's rules in step with reloads), validation parses text into rules it throws away, and a
backtest reads events and evaluates a rule over them in memory.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from app.errors import InvalidInput, Loc
from app.events.models import Event
from app.events.router import event_out
from app.rules.engine import Finding, evaluate
from app.rules.loader import RuleFileError, load_rules, parse_rules_text
from app.rules.spec import AnyRule, RuleSet, SpikeRule

log = logging.getLogger("supervision.rules")

# The most events one backtest reads; a range holding more is refused rather than exhausting memory.
MAX_BACKTEST_EVENTS = 500_000
MAX_BACKTEST_SPAN = timedelta(days=366)
VALIDATE_NAME = "body"


@dataclass(frozen=True)
class Loaded:
    """The rules read at start-up; on failure an empty set and what went wrong."""

    rules: RuleSet
    error: str | None = None


def load(directory: Path) -> Loaded:
    """Load the rules folder; a failure is logged and reported, never raised, so the service still starts."""
    try:
        return Loaded(load_rules(directory))
    except RuleFileError as exc:
        first = str(exc.problems[0]) if exc.problems else "no rules"
        more = len(exc.problems) - 1
        error = first + (f" (and {more} more problem{'s' if more > 1 else ''})" if more > 0 else "")
        log.error("rules not loaded from %s:\n%s", directory, exc)
        return Loaded(RuleSet(), error)
    except OSError as exc:
        log.error("rules not loaded from %s: %s", directory, exc)
        return Loaded(RuleSet(), f"{directory}: cannot be read: {exc.strerror or exc.__class__.__name__}")


def readiness(rules: RuleSet | None, error: str | None) -> tuple[bool, str]:
    """Whether the rules are ready, and the text `/readyz` shows for them."""
    if error is not None:
        # /readyz answers anyone: it says that the rules failed, not what they say (thresholds are
        # exactly what someone gaming the platform would like to read). The log holds the problems.
        return False, "not loaded: the rule files have problems; see the server log or `supervision rules check`"
    if rules is None:
        return False, "not loaded"
    return True, f"{len(rules)} loaded"


def listed(rules: RuleSet, domain: str | None = None) -> list[dict[str, Any]]:
    """The rules as JSON, sorted by id, optionally only those looking at `domain`."""
    chosen = [rule for rule in rules if domain is None or domain in rule.domains]
    return [rule_json(rule) for rule in sorted(chosen, key=lambda rule: rule.id)]


def rule_json(rule: AnyRule) -> dict[str, Any]:
    return rule.model_dump(mode="json")


def validate_text(text: str) -> list[str]:
    """The ids of the rules in a YAML document; InvalidInput naming each rule's index and field otherwise."""
    try:
        rules = parse_rules_text(text, VALIDATE_NAME)
    except RuleFileError as exc:
        errors: list[tuple[Loc, str]] = []
        for item in exc.problems:
            loc: Loc = ("body",) if item.index is None else ("body", item.index)
            message = item.message if item.rule_id is None else f"rule {item.rule_id}: {item.message}"
            errors.append(((*loc, *item.loc), message))
        raise InvalidInput(errors) from None
    return [rule.id for rule in rules]


def lookback(rule: AnyRule) -> timedelta:
    """How far before `from` events are read: spike rules need their baseline windows, others one window."""
    windows = rule.baseline_windows + 1 if isinstance(rule, SpikeRule) else 1
    return timedelta(seconds=rule.window.total_seconds() * windows)


def backtest(
    session: Session,
    *,
    rule: AnyRule,
    time_from: datetime,
    time_to: datetime,
    zone: tzinfo,
    units: Select[tuple[str]] | None = None,
) -> list[Finding]:
    """The findings the rule makes over stored events for windows starting in [from, to); writes nothing."""
    if time_to <= time_from:
        raise InvalidInput([(("body", "to"), "must be after `from`")])
    if time_to - time_from > MAX_BACKTEST_SPAN:
        raise InvalidInput([(("body", "to"), f"at most {MAX_BACKTEST_SPAN.days} days after `from`")])
    conditions = [
        Event.domain.in_([domain.value for domain in rule.domains]),
        Event.occurred_at >= time_from - lookback(rule),
        Event.occurred_at < time_to,
    ]
    if units is not None:
        conditions.append(Event.operator_unit.in_(units))
    count = session.scalar(select(func.count()).select_from(Event).where(*conditions)) or 0
    if count > MAX_BACKTEST_EVENTS:
        message = f"the range holds {count} events, more than {MAX_BACKTEST_EVENTS} a backtest reads: shorten it"
        raise InvalidInput([(("body", "from"), message)])
    rows = session.scalars(select(Event).where(*conditions).order_by(Event.occurred_at, Event.id))
    events = [event_out(row).model_dump(mode="json") for row in rows]
    findings = [f for f in evaluate(rule, events, zone) if time_from <= f.window_start < time_to]
    return sorted(findings, key=lambda f: (f.window_start, f.subject_type, f.subject_id))
