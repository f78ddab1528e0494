"""A bare peer of the service's ingest, to compare with (bench/compare.py starts it).

What it is: FastAPI, a pydantic model of the contract's event body (envelope, kinds, an offset on
`occurred_at`, no unknown fields), and one SQLAlchemy Core INSERT … RETURNING id per `POST /v1/events`
(one executemany, in a single transaction, per `POST /v1/events/batch`) into its own table
`peer_events`. No auth, no rules, no canonical hashing, no duplicate handling, no middleware. It
answers as the service does: 201 `{id, duplicate: false, alerts: [], blocked: false, breakers: []}`,
a batch 200 `{items: [...]}`; `GET /readyz` 200. SQLite is used as the service uses it (WAL,
synchronous=NORMAL, busy timeout, BEGIN IMMEDIATE for writes); pools are the service's defaults.

Run it alone (only 127.0.0.1; the table is created if missing):

    .venv/bin/python bench/peer.py --port 8100 --workers 2 --database-url sqlite:////tmp/peer.db
    .venv/bin/python bench/peer.py --port 8100 --workers 2 \\
        --database-url postgresql://postgres@127.0.0.1:5432/bench_peer   # a database you created
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import uvicorn
from fastapi import FastAPI
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    event,
    insert,
)

URL_ENV = "BENCH_PEER_DATABASE_URL"
Ident = Annotated[str, Field(min_length=1, max_length=64)]

metadata = MetaData()
events = Table(
    "peer_events",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("source_event_id", String(128), nullable=False, unique=True),
    Column("domain", String(32), nullable=False),
    Column("action", String(32), nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False, index=True),
    Column("operator_id", String(64), nullable=False, index=True),
    Column("operator_kind", String(16), nullable=False),
    Column("operator_unit", String(64), nullable=False),
    Column("responsible_officer", String(64)),
    Column("business_unit_id", String(64)),
    Column("business_unit_kind", String(32)),
    Column("agent_id", String(64)),
    Column("object_ref", String(128)),
    Column("attributes", JSON, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OperatorIn(_Strict):
    id: Ident
    kind: Literal["police", "auxiliary", "staff"]
    unit: Ident
    responsible_officer: Ident | None = None


class BusinessUnitIn(_Strict):
    id: Ident
    kind: Literal["inspection_station", "service_station", "company", "driving_school", "exam_site"]


class EventIn(_Strict):
    source_event_id: Annotated[str, Field(min_length=1, max_length=128)]
    domain: Literal[
        "vehicle_registration", "driver_testing", "vehicle_inspection", "accident_handling", "violation_handling"
    ]
    action: Annotated[str, Field(min_length=1, max_length=32)]
    occurred_at: AwareDatetime
    operator: OperatorIn
    business_unit: BusinessUnitIn | None = None
    agent_id: Ident | None = None
    object_ref: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)


class BatchIn(_Strict):
    events: Annotated[list[EventIn], Field(max_length=1000)]


class Result(BaseModel):
    id: int
    duplicate: bool = False
    alerts: list[int] = Field(default_factory=list)
    blocked: bool = False
    breakers: list[dict[str, Any]] = Field(default_factory=list)


class BatchOut(BaseModel):
    items: list[Result]


def make_engine(url: str) -> Engine:
    """The service's URL forms and pool sizes; on SQLite its pragmas and BEGIN IMMEDIATE."""
    for prefix, driver in (("postgresql://", "postgresql+psycopg://"), ("sqlite://", "sqlite+pysqlite://")):
        if url.startswith(prefix):
            url = driver + url[len(prefix) :]
    if not url.startswith("sqlite"):
        return create_engine(url, pool_size=20, max_overflow=10, pool_pre_ping=False)
    engine = create_engine(url, pool_size=20, max_overflow=10, connect_args={"check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        for pragma in ("journal_mode=WAL", "busy_timeout=30000", "synchronous=NORMAL"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def row(item: EventIn, received_at: datetime) -> dict[str, Any]:
    return {
        "source_event_id": item.source_event_id,
        "domain": item.domain,
        "action": item.action,
        "occurred_at": item.occurred_at,
        "operator_id": item.operator.id,
        "operator_kind": item.operator.kind,
        "operator_unit": item.operator.unit,
        "responsible_officer": item.operator.responsible_officer,
        "business_unit_id": item.business_unit.id if item.business_unit else None,
        "business_unit_kind": item.business_unit.kind if item.business_unit else None,
        "agent_id": item.agent_id,
        "object_ref": item.object_ref,
        "attributes": item.attributes,
        "received_at": received_at,
    }


def create_app() -> FastAPI:
    """The app (uvicorn factory): the database URL comes from the environment, as workers are spawned."""
    engine = make_engine(os.environ[URL_ENV])
    app = FastAPI(title="bench peer", openapi_url=None, docs_url=None, redoc_url=None)
    one = insert(events).returning(events.c.id)
    many = insert(events).returning(events.c.id, sort_by_parameter_order=True)

    @app.get("/readyz")
    def readyz() -> dict[str, str]:
        return {"status": "ready"}

    @app.post("/v1/events", status_code=201)
    def post_event(item: EventIn) -> Result:
        with engine.begin() as conn:
            new_id = conn.execute(one, row(item, datetime.now(UTC))).scalar_one()
        return Result(id=new_id)

    @app.post("/v1/events/batch")
    def post_batch(batch: BatchIn) -> BatchOut:
        now = datetime.now(UTC)
        with engine.begin() as conn:
            ids = conn.execute(many, [row(item, now) for item in batch.events]).scalars().all()
        return BatchOut(items=[Result(id=new_id) for new_id in ids])

    return app


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", choices=("127.0.0.1",), help="loopback only")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--database-url", required=True, help="sqlite:///path or postgresql://…")
    args = parser.parse_args()
    os.environ[URL_ENV] = args.database_url
    engine = make_engine(args.database_url)
    metadata.create_all(engine)  # before the workers start, so that they do not race to create it
    engine.dispose()
    uvicorn.run(
        "peer:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=10,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
