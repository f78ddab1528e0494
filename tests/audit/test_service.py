"""The audit chain on the database: recording, sealing, verifying, and tampering caught."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from app.audit import service
from app.audit.chain import GENESIS, entry_hash
from app.audit.models import AuditEntry
from app.db import Database
from tests.audit.helpers import entries, is_postgresql, only_postgresql, record_some, tampering, verdict


def test_a_recorded_entry_is_pending_until_sealed(db: Database) -> None:
    ids = record_some(db, 3, seal=False)
    assert [(e.seq, e.prev_hash, e.hash) for e in entries(db) if e.id in ids] == [(None, None, None)] * 3
    with db.session(write=True) as session:
        assert service.seal(session) >= 3
    with db.session(write=True) as session:
        assert service.seal(session) == 0


def test_sealed_entries_form_a_gap_free_chain_from_genesis(db: Database) -> None:
    record_some(db, 4)
    record_some(db, 3, seal=False)
    record_some(db, 2)
    chain = sorted(entries(db), key=lambda e: e.seq or 0)
    assert [e.seq for e in chain] == list(range(1, len(chain) + 1))
    assert chain[0].prev_hash == GENESIS
    for before, entry in zip(chain, chain[1:], strict=False):
        assert entry.prev_hash == before.hash
    for entry in chain:
        assert entry.seq is not None
        assert entry.prev_hash is not None
        assert entry.hash == entry_hash(
            entry_id=entry.id,
            seq=entry.seq,
            at=entry.at,
            actor=entry.actor,
            action=entry.action,
            object_type=entry.object_type,
            object_id=entry.object_id,
            unit=entry.unit,
            data=entry.data,
            prev_hash=entry.prev_hash,
        )


def test_entries_are_sealed_in_id_order(db: Database) -> None:
    ids = record_some(db, 5, seal=False)
    record_some(db, 0)
    seqs = {e.id: e.seq for e in entries(db)}
    assert sorted(ids, key=lambda i: seqs[i] or 0) == ids


def test_a_long_chain_verifies(db: Database) -> None:
    for _ in range(3):
        record_some(db, service.SEAL_CHUNK // 2 + 7, seal=False)
    found = verdict(db)
    total = len(entries(db))
    assert total >= 3 * (service.SEAL_CHUNK // 2 + 7)
    assert found == service.Verdict(ok=True, checked=total, head_seq=total, head_hash=found.head_hash)
    assert found.head_hash == max(entries(db), key=lambda e: e.seq or 0).hash


def test_an_empty_chain_verifies(db: Database) -> None:
    assert verdict(db) == service.Verdict(ok=True, checked=0)


def test_an_entry_recorded_in_a_rolled_back_transaction_leaves_no_trace(db: Database) -> None:
    before = len(entries(db))

    def failed_change() -> None:
        with db.session(write=True) as session:
            service.record(session, actor="admin", action="key.revoked", object_type="key", object_id="9")
            raise RuntimeError("the change failed")

    with pytest.raises(RuntimeError):
        failed_change()
    assert len(entries(db)) == before
    assert verdict(db).ok


def test_append_answers_the_entry_already_chained(db: Database) -> None:
    pending = record_some(db, 2, seal=False)
    with db.session(write=True) as session:
        entry = service.append(
            session,
            actor="inspector-wang",
            action="breaker.reset",
            object_type="breaker",
            object_id="5",
            data={"reason": "整改完毕", "to": "half_open"},
            unit="ZS1-CW",
        )
    assert entry.seq is not None
    assert entry.hash is not None
    assert entry.data == {"reason": "整改完毕", "to": "half_open"}
    assert entry.unit == "ZS1-CW"
    seqs = {e.id: e.seq for e in entries(db)}
    assert all((seqs[i] or 0) < entry.seq for i in pending)


def test_record_all_records_many_in_one_statement(db: Database) -> None:
    with db.session(write=True) as session:
        service.record_all(
            session,
            [service.Change("system", "alert.raised", "alert", str(i), {"value": i + 0.5}) for i in range(10)],
        )
        service.record_all(session, [])
    assert sum(e.action == "alert.raised" for e in entries(db)) == 10
    assert verdict(db).ok


def test_data_is_stored_as_json(db: Database) -> None:
    with db.session(write=True) as session:
        entry_id = service.record(
            session,
            actor="admin",
            action=service.AuditAction.RULES_RELOADED,
            object_type="rules",
            object_id="3",
            data={"at": datetime(2026, 11, 21, 1, 30, tzinfo=UTC), "action": service.AuditAction.KEY_CREATED},
        )
    (entry,) = [e for e in entries(db) if e.id == entry_id]
    assert entry.action == "rules.reloaded"
    assert entry.data == {"at": "2026-11-21T01:30:00Z", "action": "key.created"}


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"object_id": "x" * 65}, "object_id"),
        ({"action": ""}, "action"),
        ({"data": {"n": 2**60}}, "data"),
        ({"data": {"n": float("nan")}}, "data"),
        ({"data": {"t": "a\x00b"}}, "data"),
    ],
)
def test_an_entry_that_cannot_be_stored_and_hashed_is_refused(
    db: Database, fields: dict[str, object], problem: str
) -> None:
    change = {"actor": "admin", "action": "unit.changed", "object_type": "unit", "object_id": "U1", **fields}
    with pytest.raises(ValueError, match=problem), db.session(write=True) as session:
        service.record(session, **change)  # type: ignore[arg-type]


def test_seal_needs_a_write_session_on_sqlite(db: Database) -> None:
    if is_postgresql(db):
        pytest.skip("SQLite only: on PostgreSQL the chain lock serialises sealers")
    with pytest.raises(RuntimeError, match="write session"), db.session() as session:
        service.seal(session)


def test_verify_leaves_pending_entries_for_later(db: Database) -> None:
    record_some(db, 3)
    record_some(db, 2, seal=False)
    with db.session() as session:
        assert service.verify(session) == service.Verdict(ok=True, checked=3, head_seq=3, head_hash=entries(db)[2].hash)


# Tampering: each change made directly in the database is caught and the first bad entry named.

Tamper = Callable[[Session, list[int]], int]  # edits the chain of entries `ids`; the id verify must name


def edit_data(session: Session, ids: list[int]) -> int:
    session.execute(update(AuditEntry).where(AuditEntry.id == ids[4]).values(data={"parent": "ZD", "index": 4}))
    return ids[4]


def edit_actor(session: Session, ids: list[int]) -> int:
    session.execute(update(AuditEntry).where(AuditEntry.id == ids[6]).values(actor="somebody-else"))
    return ids[6]


def edit_time(session: Session, ids: list[int]) -> int:
    session.execute(
        update(AuditEntry).where(AuditEntry.id == ids[2]).values(at=AuditEntry.at + text("INTERVAL '1 second'"))
        if session.get_bind().dialect.name == "postgresql"
        else text("UPDATE audit_log SET at = datetime(at, '+1 second') WHERE id = :id").bindparams(id=ids[2])
    )
    return ids[2]


def delete_one(session: Session, ids: list[int]) -> int:
    session.execute(text("DELETE FROM audit_log WHERE id = :id"), {"id": ids[5]})
    return ids[6]  # the entry after the gap


def swap_two(session: Session, ids: list[int]) -> int:
    # Reorder: entries 3 and 7 trade places (the unique seq needs a parking value in between).
    third, seventh = (session.scalar(select(AuditEntry.seq).where(AuditEntry.id == i)) for i in (ids[3], ids[7]))
    session.execute(update(AuditEntry).where(AuditEntry.id == ids[3]).values(seq=-1))
    session.execute(update(AuditEntry).where(AuditEntry.id == ids[7]).values(seq=third))
    session.execute(update(AuditEntry).where(AuditEntry.id == ids[3]).values(seq=seventh))
    return ids[7]  # now the earlier of the two


def edit_prev_hash(session: Session, ids: list[int]) -> int:
    session.execute(update(AuditEntry).where(AuditEntry.id == ids[8]).values(prev_hash="f" * 64))
    return ids[8]


def rehash_one(session: Session, ids: list[int]) -> int:
    # The entry is edited and its own hash recomputed: the next entry no longer links to it.
    row = session.execute(select(AuditEntry).where(AuditEntry.id == ids[1])).scalar_one()
    assert row.seq is not None
    assert row.prev_hash is not None
    digest = entry_hash(
        entry_id=row.id,
        seq=row.seq,
        at=row.at,
        actor="forger",
        action=row.action,
        object_type=row.object_type,
        object_id=row.object_id,
        unit=row.unit,
        data=row.data,
        prev_hash=row.prev_hash,
    )
    session.execute(update(AuditEntry).where(AuditEntry.id == ids[1]).values(actor="forger", hash=digest))
    return ids[2]


def unseal_one(session: Session, ids: list[int]) -> int:
    # Taken out of the chain to be sealed again at its end: the hole stays.
    session.execute(update(AuditEntry).where(AuditEntry.id == ids[3]).values(seq=None, prev_hash=None, hash=None))
    return ids[4]


@pytest.mark.parametrize(
    "tamper",
    [edit_data, edit_actor, edit_time, delete_one, swap_two, edit_prev_hash, rehash_one, unseal_one],
)
def test_a_change_made_in_the_database_is_found_naming_the_first_bad_entry(db: Database, tamper: Tamper) -> None:
    ids = record_some(db, 10)
    record_some(db, 5)
    assert verdict(db).ok
    with tampering(db) as session:
        expected = tamper(session, ids)
    found = verdict(db)
    assert not found.ok
    assert found.first_mismatch == expected, found.reason
    assert found.reason
    assert str(expected) in found.reason


def test_the_first_of_several_changes_is_named(db: Database) -> None:
    ids = record_some(db, 10)
    with tampering(db) as session:
        edit_prev_hash(session, ids)
        edit_data(session, ids)
    assert verdict(db).first_mismatch == ids[4]


# PostgreSQL: the append-only trigger, and the chain under concurrent writers.


def test_postgresql_refuses_to_change_or_delete_a_sealed_entry(db: Database) -> None:
    only_postgresql(db)
    ids = record_some(db, 3)
    for statement in (
        "UPDATE audit_log SET actor = 'forger' WHERE id = :id",
        "UPDATE audit_log SET seq = seq WHERE id = :id",
        "UPDATE audit_log SET hash = NULL, seq = NULL, prev_hash = NULL WHERE id = :id",
        "DELETE FROM audit_log WHERE id = :id",
    ):
        with pytest.raises(DBAPIError, match="append-only"), db.session(write=True) as session:
            session.execute(text(statement), {"id": ids[1]})
    assert len(entries(db)) == 3
    record_some(db, 2)
    assert verdict(db) == service.Verdict(ok=True, checked=5, head_seq=5, head_hash=verdict(db).head_hash)


def test_postgresql_lets_a_pending_entry_be_sealed_but_not_changed(db: Database) -> None:
    only_postgresql(db)
    (pending,) = record_some(db, 1, seal=False)
    for statement in (
        "UPDATE audit_log SET data = '{}' WHERE id = :id",
        "UPDATE audit_log SET seq = 1, prev_hash = :h, hash = :h, actor = 'forger' WHERE id = :id",
        "UPDATE audit_log SET seq = 1 WHERE id = :id",
    ):
        with pytest.raises(DBAPIError, match="append-only"), db.session(write=True) as session:
            session.execute(text(statement), {"id": pending, "h": "0" * 64})
    with pytest.raises(DBAPIError, match="inserted pending"), db.session(write=True) as session:
        session.execute(
            text(
                "INSERT INTO audit_log (at, actor, action, object_type, object_id, data, seq, prev_hash, hash) "
                "VALUES (now(), 'forger', 'checkpoint', 'events', '0', '{}', 99, :h, :h)"
            ),
            {"h": "0" * 64},
        )
    assert verdict(db).ok


def test_postgresql_refuses_truncate_to_anyone_but_a_superuser(db: Database) -> None:
    only_postgresql(db)
    record_some(db, 2)

    def truncate_as_a_clerk() -> None:
        # Role changes are transactional: the role goes with the rollback.
        with db.session(write=True) as session:
            session.execute(text("CREATE ROLE audit_test_clerk NOSUPERUSER"))
            session.execute(text("GRANT TRUNCATE ON audit_log TO audit_test_clerk"))
            session.execute(text("SET LOCAL ROLE audit_test_clerk"))
            session.execute(text("TRUNCATE audit_log"))

    with pytest.raises(DBAPIError, match="TRUNCATE is refused"):
        truncate_as_a_clerk()
    assert len(entries(db)) == 2


def test_concurrent_writers_build_one_gap_free_chain(db: Database) -> None:
    only_postgresql(db)
    threads, each = 8, 25
    start = threading.Barrier(threads)
    failures: list[BaseException] = []

    def write(worker: int) -> None:
        try:
            start.wait()
            for index in range(each):
                if worker % 2:  # the change and its sealing in one transaction
                    with db.session(write=True) as session:
                        service.record(
                            session, actor=f"w{worker}", action="unit.changed", object_type="unit", object_id=f"{index}"
                        )
                        service.seal(session)
                else:  # recorded with the change, sealed afterwards
                    with db.session(write=True) as session:
                        service.record(
                            session, actor=f"w{worker}", action="unit.changed", object_type="unit", object_id=f"{index}"
                        )
                    with db.session(write=True) as session:
                        service.seal(session)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            failures.append(exc)

    workers = [threading.Thread(target=write, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert not failures
    chain = entries(db)
    assert sorted(e.seq or 0 for e in chain) == list(range(1, threads * each + 1))
    assert verdict(db) == service.Verdict(
        ok=True, checked=threads * each, head_seq=threads * each, head_hash=verdict(db).head_hash
    )


def test_recording_never_waits_for_the_chain_lock(db: Database) -> None:
    only_postgresql(db)
    sealing = threading.Event()
    release = threading.Event()

    def hold_the_chain() -> None:
        with db.session(write=True) as session:
            service.seal(session)  # takes the lock, held until this transaction ends
            sealing.set()
            release.wait(timeout=30)

    holder = threading.Thread(target=hold_the_chain)
    holder.start()
    try:
        assert sealing.wait(timeout=10)
        started = time.monotonic()
        record_some(db, 3, seal=False)
        assert time.monotonic() - started < 2
    finally:
        release.set()
        holder.join(timeout=30)
    assert verdict(db).checked == 3


def test_pending_entries_do_not_count_as_chain(db: Database) -> None:
    record_some(db, 2, seal=False)
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.seq.is_(None))) == 2
