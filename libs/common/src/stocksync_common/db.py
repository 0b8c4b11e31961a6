"""SQLAlchemy 2 async engine and the tables every service has: inbox and outbox.

Each service owns one PostgreSQL schema and declares its tables on a `MetaData` bound
to that schema; no service reads another's tables.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

# A pooled connection idle for longer than this is pinged before it is handed out.
PING_AFTER_IDLE_S = 1.0


def make_engine(url: str, pool_size: int = 10) -> AsyncEngine:
    """The service's engine: a LIFO pool that pings only connections idle for a while.

    SQLAlchemy's `pool_pre_ping` pings on every checkout, and the asyncpg dialect's ping
    is three round trips (BEGIN, `;`, ROLLBACK): on the hot paths, which check out a
    connection per webhook or per consumer batch, that was about as many round trips as
    the work itself. A connection used less than `PING_AFTER_IDLE_S` ago is handed out
    as is; one idle for longer is pinged first, and a failed ping invalidates the pool
    as `pool_pre_ping` does. LIFO keeps the busy connections busy, so under load
    checkouts find a connection used moments ago, and the idle ones get pinged.
    A database restart is still noticed: by the ping of an idle connection, or by the
    first statement on a busy one, which invalidates the pool.
    """
    engine = create_async_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_use_lifo=True)
    pool = engine.sync_engine.pool

    @event.listens_for(pool, "checkin")
    def _checked_in(dbapi_connection: Any, record: Any) -> None:
        record.info["checked_in_at"] = time.monotonic()

    @event.listens_for(pool, "checkout")
    def _ping_if_idle(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        checked_in_at = record.info.get("checked_in_at")
        if checked_in_at is None or time.monotonic() - checked_in_at < PING_AFTER_IDLE_S:
            return  # new (its info is reset on reconnect) or used moments ago
        try:
            dbapi_connection.ping()
        except Exception as exc:
            raise sa.exc.InvalidatePoolError(f"ping failed: {exc}") from exc

    return engine


def service_metadata(schema: str) -> sa.MetaData:
    return sa.MetaData(schema=schema)


def inbox_table(metadata: sa.MetaData) -> sa.Table:
    """Ids of events this service has applied, written in the transaction of the effect."""
    return sa.Table(
        "inbox",
        metadata,
        sa.Column("event_id", pg.UUID(as_uuid=True), primary_key=True),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )


def outbox_table(metadata: sa.MetaData) -> sa.Table:
    """Events written in the transaction of the state change they announce."""
    return sa.Table(
        "outbox",
        metadata,
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("key", sa.LargeBinary, nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("event_type", sa.Text, nullable=False),
        sa.Column("causation_id", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        # The W3C traceparent the event's record carries (stocksync_common.tracing); NULL
        # when tracing is off.
        sa.Column("trace_context", sa.Text, nullable=True),
        # Set when the broker acknowledged the row; the row is kept for the retention
        # window after that. The relay reads unpublished rows through the partial index.
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Index("outbox_unpublished", "id", postgresql_where=sa.text("published_at IS NULL")),
        sa.Index("outbox_published_at", "published_at", postgresql_where=sa.text("published_at IS NOT NULL")),
    )


def outbox_broker_table(metadata: sa.MetaData) -> sa.Table:
    """The cluster id of the broker the outbox was last published to (one row): a
    different id means a new broker, which gets the retained rows again."""
    return sa.Table(
        "outbox_broker",
        metadata,
        sa.Column("id", sa.SmallInteger, primary_key=True),
        sa.Column("cluster_id", sa.Text, nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint("id = 1", name="outbox_broker_one_row"),
    )


async def claim_events(
    conn: AsyncConnection, inbox: sa.Table, topic: str, event_ids: Iterable[uuid.UUID]
) -> set[uuid.UUID]:
    """Record event ids as processed; return those that were new.

    Must run in the transaction that applies the events' effects: if it rolls back,
    the claims roll back with it and a redelivery is applied again.
    """
    ids = list(dict.fromkeys(event_ids))
    if not ids:
        return set()
    # The ids travel as one array parameter: the statement is compiled once whatever the
    # batch size (a multi-row VALUES is compiled anew for every batch, which dominated
    # the cost of large batches).
    claimed = sa.select(
        sa.func.unnest(sa.bindparam("event_ids", ids, pg.ARRAY(pg.UUID(as_uuid=True)))).label("event_id"),
        sa.literal(topic, sa.Text).label("topic"),
    )
    stmt = (
        pg.insert(inbox)
        .from_select(["event_id", "topic"], claimed)
        .on_conflict_do_nothing(index_elements=["event_id"])
        .returning(inbox.c.event_id)
    )
    return set((await conn.execute(stmt)).scalars().all())


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(sa.text("SELECT 1"))
