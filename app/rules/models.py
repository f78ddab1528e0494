from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import BigInteger, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, ExactDecimal, UTCDateTime, utcnow


class RuleGeneration(Base):
    """One successful `POST /v1/rules/reload`: every worker moves to the rules with this digest."""

    __tablename__ = "rule_generations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # SHA-256 of the loaded rules' canonical JSON: a worker reloading the files checks it got the same rules.
    digest: Mapped[str] = mapped_column(String(64))
    rules: Mapped[int] = mapped_column(Integer)
    actor: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RuleWindow(Base):
    """The running aggregates of one (rule, subject, window): what the rule's value is made of.

    Derived data, kept by the inline evaluation in the transaction that stores the events (an upsert that
    adds each new event's share), rebuilt from the events by `supervision aggregates rebuild` and when a
    rule's definition changes, and checked against the events by every scan. The events stay the only
    source of truth.
    """

    __tablename__ = "rule_windows"

    rule_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    subject_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    window_end: Mapped[datetime] = mapped_column(UTCDateTime)
    n: Mapped[int] = mapped_column(BigInteger)  # considered events
    hits: Mapped[int] = mapped_column(BigInteger)  # events that count toward the value
    part: Mapped[int] = mapped_column(BigInteger)  # ratio: numerator matches; distinct: distinct values
    total: Mapped[Decimal | None] = mapped_column(ExactDecimal)  # sum: the exact sum
    first_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # first counted event
    last_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # last counted event


class RuleWindowValue(Base):
    """One distinct value a ``distinct`` rule met in a (rule, subject, window), by a hash of its normal form."""

    __tablename__ = "rule_window_values"

    rule_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    subject_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    value_hash: Mapped[str] = mapped_column(String(32), primary_key=True)


class RuleBuild(Base):
    """Whose definition a rule's aggregates follow: inline results are trusted only for this fingerprint."""

    __tablename__ = "rule_builds"

    rule_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # SHA-256 of what the aggregates depend on (type, domains, filter, subject, window, field, zone).
    fingerprint: Mapped[str] = mapped_column(String(64))
    built_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    windows: Mapped[int] = mapped_column(Integer)
    duration_ms: Mapped[int] = mapped_column(Integer)
