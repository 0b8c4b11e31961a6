"""A relay or a consumer that SIGKILLs itself at the worst moment, for test_batching_crashes.py.

python -m tests.integration.crash_worker relay SCHEMA DATABASE_URL BOOTSTRAP
    publishes the schema's outbox and dies once the broker has acknowledged the
    first batch, before the rows are marked published;
python -m tests.integration.crash_worker consumer SCHEMA DATABASE_URL BOOTSTRAP GROUP MERCHANT
    consumes stock.oversells.v1 in GROUP, applies MERCHANT's events (inbox + effect,
    one transaction) and dies right after the first such commit, before the offsets
    are committed;
python -m tests.integration.crash_worker lease SCHEMA DATABASE_URL BOOTSTRAP
    publishes the schema's outbox and holds the relay's lease until it is killed (the
    lease test freezes it with SIGSTOP, as a network cut or a stalled host would).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncEngine

from stocksync_common.contracts import OversellDetected
from stocksync_common.db import claim_events, inbox_table, make_engine, outbox_broker_table, outbox_table
from stocksync_common.kafka import BatchConsumer, ConsumedEvent, make_producer
from stocksync_common.outbox import OutboxRelay
from stocksync_common.settings import ServiceSettings
from stocksync_common.topics import OVERSELLS


class Tables:
    """A schema of the test's own: inbox, outbox, outbox_broker and what was applied."""

    def __init__(self, schema: str) -> None:
        self.metadata = sa.MetaData(schema=schema)
        self.inbox = inbox_table(self.metadata)
        self.outbox = outbox_table(self.metadata)
        self.outbox_broker = outbox_broker_table(self.metadata)
        self.effects = sa.Table(
            "effects",
            self.metadata,
            sa.Column("event_id", pg.UUID(as_uuid=True), primary_key=True),
            sa.Column("version", sa.BigInteger, nullable=False),
        )

    async def create(self, engine: AsyncEngine) -> None:
        async with engine.begin() as conn:
            await conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{self.metadata.schema}"'))
            await conn.run_sync(self.metadata.create_all)


def settings(database_url: str, bootstrap: str) -> ServiceSettings:
    # A member that dies holds its partitions until its session times out: keep it short.
    return ServiceSettings(
        database_url=database_url,
        kafka_bootstrap_servers=bootstrap,
        kafka_session_timeout_ms=1_000,
        kafka_heartbeat_interval_ms=300,
    )


def apply_handler(engine: AsyncEngine, tables: Tables, merchant_id: uuid.UUID, after_commit: Any) -> Any:
    async def handle(batch: list[ConsumedEvent]) -> None:
        mine = [i.event for i in batch if i.event.merchant_id == merchant_id and isinstance(i.event, OversellDetected)]
        if not mine:
            return
        async with engine.begin() as conn:
            new = await claim_events(conn, tables.inbox, OVERSELLS.name, (e.event_id for e in mine))
            rows = [{"event_id": e.event_id, "version": e.version} for e in mine if e.event_id in new]
            if rows:
                await conn.execute(sa.insert(tables.effects), rows)
        after_commit(mine, new)

    return handle


def die(*_: Any) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


async def lease(schema: str, database_url: str, bootstrap: str) -> None:
    tables = Tables(schema)
    engine = make_engine(database_url, 2)
    producer = make_producer(settings(database_url, bootstrap))
    await producer.start()
    await OutboxRelay(engine, tables.outbox, producer, bootstrap_servers=bootstrap, lease_timeout_s=2.0).run()


async def relay(schema: str, database_url: str, bootstrap: str) -> None:
    tables = Tables(schema)
    engine = make_engine(database_url, 2)
    producer = make_producer(settings(database_url, bootstrap))
    await producer.start()
    outbox_relay = OutboxRelay(engine, tables.outbox, producer, bootstrap_servers=bootstrap)
    enqueue = outbox_relay._enqueue

    async def enqueue_then_die(rows: list[Any]) -> asyncio.Future[Any]:
        delivered = await enqueue(rows)
        await delivered  # the broker has every row of the batch
        die()
        return delivered

    outbox_relay._enqueue = enqueue_then_die  # type: ignore[method-assign]
    await outbox_relay.run()


async def consumer(schema: str, database_url: str, bootstrap: str, group: str, merchant: str) -> None:
    tables = Tables(schema)
    engine = make_engine(database_url, 2)
    batch_consumer = BatchConsumer(
        settings(database_url, bootstrap), [OVERSELLS], group, apply_handler(engine, tables, uuid.UUID(merchant), die)
    )
    await batch_consumer.start()
    await batch_consumer.run()


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    modes: dict[str, Callable[..., Coroutine[Any, Any, None]]] = {"relay": relay, "lease": lease, "consumer": consumer}
    asyncio.run(modes[mode](*args))
