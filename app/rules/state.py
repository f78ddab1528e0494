"""The rules a worker holds in force, kept in step with reloads made through any worker.

Each worker process loads the rule files at start. `POST /v1/rules/reload` loads them again in the
worker that answers it and records a generation (a row with the rules' digest). Every worker looks
for a newer generation at most once a second, before it uses its rules, and then loads the files
itself; it adopts them only if their digest is the recorded one, so no worker runs rules that nobody
reloaded (files edited after the reload wait for the next one).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from app.audit import service as audit
from app.db import Database, after_commit, utcnow
from app.errors import InvalidInput, Loc
from app.jsonutil import canonical_hash
from app.rules.aggregates import ensure_built
from app.rules.loader import RuleFileError, load_rules
from app.rules.models import RuleGeneration
from app.rules.service import load, rule_json
from app.rules.spec import RuleSet

log = logging.getLogger("supervision.rules")

CHECK_EVERY_S = 1.0
_LATEST = select(RuleGeneration.id, RuleGeneration.digest).order_by(RuleGeneration.id.desc()).limit(1)


def digest(rules: RuleSet) -> str:
    return canonical_hash([rule_json(rule) for rule in sorted(rules, key=lambda rule: rule.id)])


class RulesInForce:
    def __init__(self, directory: Path, db: Database) -> None:
        self.directory = directory
        self._db = db
        self._lock = threading.Lock()
        self._checked = time.monotonic()
        # The generation is read before the files: a reload in between then only makes this worker
        # load the same files once more, never miss a reload.
        self.generation = self._latest(db)[0]
        loaded = load(directory)
        self.rules, self.error = loaded.rules, loaded.error
        self._build(db)

    def _build(self, db: Database) -> None:
        """Build the aggregates of the rules in force that do not follow them yet (new or changed rules)."""
        try:
            ensure_built(db, self.rules, db.settings.zone)
        except SQLAlchemyError:
            # No database (or not migrated) yet: /readyz says so; the first evaluation builds them.
            log.warning("rule aggregates not built at start", exc_info=True)

    @staticmethod
    def _latest(db: Database) -> tuple[int, str | None]:
        try:
            with db.engine.connect() as conn:
                row = conn.execute(_LATEST).first()
        except SQLAlchemyError:
            return 0, None  # no database (or not migrated) yet: /readyz says so
        return (row.id, row.digest) if row is not None else (0, None)

    def current(self, db: Database) -> RuleSet:
        """The rules to use now, after catching up with a reload made elsewhere (checked once a second)."""
        now = time.monotonic()
        if now - self._checked >= CHECK_EVERY_S:
            with self._lock:
                if now - self._checked >= CHECK_EVERY_S:
                    self._checked = now
                    self._catch_up(db)
        return self.rules

    def rules_for(self, db: Database, refresh: bool = False) -> RuleSet:
        """The rules to use now; ``refresh``: catch up with reloads made elsewhere first, whenever last checked."""
        if refresh:
            with self._lock:
                self._checked = time.monotonic()
                self._catch_up(db)
        return self.current(db)

    def _catch_up(self, db: Database) -> None:
        generation, wanted = self._latest(db)
        if generation <= self.generation:
            return
        self.generation = generation
        loaded = load(self.directory)
        if loaded.error is None and digest(loaded.rules) == wanted:
            self.rules, self.error = loaded.rules, None
            log.info("rules of generation %s in force: %s rules", generation, len(loaded.rules))
            self._build(self._db)
        else:
            log.error("rules of generation %s not taken up: the files no longer hold what was reloaded", generation)

    def reload(self, session: Session, *, actor: str) -> RuleGeneration:
        """Load the files again; on any problem raise (422) and keep the rules in force untouched."""
        try:
            rules = load_rules(self.directory)
        except RuleFileError as exc:
            problems: list[tuple[Loc, str]] = []
            for problem in exc.problems:
                rule: list[str | int] = [problem.rule_id] if problem.rule_id else []
                if not rule and problem.index is not None:
                    rule = [problem.index]
                problems.append(((problem.file, *rule, *problem.loc), problem.message))
            raise InvalidInput(
                problems, detail=f"rules not reloaded, the rules in force stay: {exc.problems[0]}"
            ) from None
        except OSError as exc:
            raise InvalidInput([((str(self.directory),), f"cannot be read: {exc}")]) from None
        generation = RuleGeneration(digest=digest(rules), rules=len(rules), actor=actor, created_at=utcnow())
        session.add(generation)
        session.flush()
        audit.record(
            session,
            actor=actor,
            action=audit.AuditAction.RULES_RELOADED,
            object_type="rules",
            object_id=str(generation.id),
            data={"digest": generation.digest, "rules": generation.rules, "ids": list(rules.ids)},
        )

        def adopt() -> None:
            with self._lock:
                self.rules, self.error = rules, None
                self.generation = max(self.generation, generation.id)
            # A rule added or changed gets its aggregates built from the stored events before the reload
            # answers; an event taken meanwhile by a worker on the previous rules is retried once it caught up.
            self._build(self._db)

        after_commit(session, adopt)
        return generation
