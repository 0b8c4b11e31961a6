"""The transactional outbox and its relay.

A service writes derived events with `add_to_outbox` in the same transaction as the
state change. The relay publishes rows in id order and deletes them once the broker
has acknowledged them. Per key, ids follow commit order because writers of one key
serialise on that key's row lock, so publishing in id order keeps each key in order.
Only one relay publishes at a time per service (a transaction-scoped advisory lock),
which keeps that order when several instances run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zlib
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from prometheus_client import Counter, Gauge
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from stocksync_common.contracts import Event
from stocksync_common.kafka import encode_event
from stocksync_common.raw_connection import raw_transaction
from stocksync_common.topics import topic_for

log = logging.getLogger(__name__)

RELAYED = Counter("stocksync_outbox_relayed_total", "Outbox events published", ["topic"])
BACKLOG = Gauge("stocksync_outbox_backlog", "Outbox rows waiting to be published", ["schema"])
# The backlog is counted on this period even while publishing fails (broker down),
# which is when it matters; a count per batch would cost too much under load.
BACKLOG_SAMPLE_INTERVAL_S = 5.0


OUTBOX_COLUMNS = ("topic", "key", "payload", "event_type", "causation_id")


def outbox_row(event: Event) -> tuple[str, bytes, bytes, str, str]:
    """The values of an event's outbox row, in the order of `OUTBOX_COLUMNS`."""
    topic = topic_for(event)
    return topic.name, topic.key_of(event), encode_event(event), type(event).__name__, event.causation_id


def outbox_arrays(events: Iterable[Event]) -> tuple[list[Any], ...]:
    """The outbox rows of events as one list per column: the parameters of `outbox_insert_sql`."""
    rows = [outbox_row(event) for event in events]
    return tuple([row[i] for row in rows] for i in range(len(OUTBOX_COLUMNS)))


def outbox_insert_sql(outbox: sa.Table, first_parameter: int) -> str:
    """An INSERT of outbox rows from five array parameters ($n to $n+4, `outbox_arrays`),
    for asyncpg (stocksync_common.raw_connection); ids are given in array order and
    returned. Usable as a CTE beside the state change it announces."""
    n = first_parameter
    return (
        f"INSERT INTO {outbox.fullname} ({', '.join(OUTBOX_COLUMNS)}) "
        "SELECT o.topic, o.key, o.payload, o.event_type, o.causation_id "
        f"FROM unnest(${n}::text[], ${n + 1}::bytea[], ${n + 2}::bytea[], ${n + 3}::text[], ${n + 4}::text[]) "
        "WITH ORDINALITY AS o(topic, key, payload, event_type, causation_id, n) "
        "ORDER BY o.n RETURNING id"
    )


async def add_to_outbox(conn: AsyncConnection, outbox: sa.Table, events: Iterable[Event]) -> list[int]:
    rows = [dict(zip(OUTBOX_COLUMNS, outbox_row(event), strict=True)) for event in events]
    if not rows:
        return []
    result = await conn.execute(sa.insert(outbox).returning(outbox.c.id), rows)
    return list(result.scalars().all())


class OutboxRelay:
    def __init__(
        self,
        engine: AsyncEngine,
        outbox: sa.Table,
        producer: AIOKafkaProducer,
        *,
        batch_size: int = 500,
        poll_interval_s: float = 0.5,
    ) -> None:
        self.engine = engine
        self.outbox = outbox
        self.producer = producer
        self.batch_size = batch_size
        self.poll_interval_s = poll_interval_s
        self._lock_key = zlib.crc32(f"outbox:{outbox.schema}".encode())
        self._wake = asyncio.Event()
        self._stopping = False
        self._published_up_to = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    def wake(self) -> None:
        self._wake.set()

    def request_stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def wait_published(self, ids: list[int], timeout_s: float) -> bool:
        """Wait until the rows with these ids have been acknowledged by the broker."""
        if not ids:
            return True
        target = max(ids)
        if target <= self._published_up_to:
            return True
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((target, future))
        self.wake()
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout_s)
            return True
        except TimeoutError:
            return False

    async def run(self) -> None:
        backlog_sampled_at = float("-inf")
        while True:
            if time.monotonic() - backlog_sampled_at >= BACKLOG_SAMPLE_INTERVAL_S:
                backlog_sampled_at = time.monotonic()
                try:
                    await self.measure_backlog()
                except Exception:
                    log.warning("could not count the outbox backlog", extra={"schema": self.outbox.schema})
            try:
                while await self.publish_batch() == self.batch_size:
                    pass
            except Exception:
                log.exception("outbox relay failed; retrying", extra={"schema": self.outbox.schema})
                await asyncio.sleep(self.poll_interval_s)
            if self._stopping:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_interval_s)
            self._wake.clear()

    async def measure_backlog(self) -> int:
        async with self.engine.connect() as conn:
            count = (await conn.execute(sa.select(sa.func.count()).select_from(self.outbox))).scalar_one()
        BACKLOG.labels(self.outbox.schema).set(count)
        return int(count)

    async def publish_batch(self) -> int:
        """Publish one batch; return how many rows it published.

        On asyncpg directly (stocksync_common.raw_connection): the relay runs a batch
        for about every webhook or consumer batch, and SQLAlchemy's cost per statement
        made it a quarter of a service's CPU. Lock, read and delete stay three
        statements: the rows are read in a statement after the lock is held, so they
        are what the previous holder left.
        """
        outbox = self.outbox
        async with raw_transaction(self.engine) as conn:
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1::bigint)", self._lock_key):
                return 0
            rows = await conn.fetch(
                f"SELECT id, {', '.join(OUTBOX_COLUMNS)} FROM {outbox.fullname} ORDER BY id LIMIT $1::int",
                self.batch_size,
            )
            if not rows:
                BACKLOG.labels(outbox.schema).set(0)
                self._resolve_waiters(None)
                return 0
            deliveries = [
                await self.producer.send(
                    row["topic"],
                    row["payload"],
                    key=row["key"],
                    headers=[
                        ("event_type", row["event_type"].encode()),
                        ("causation_id", row["causation_id"].encode()),
                    ],
                )
                for row in rows
            ]
            await asyncio.gather(*deliveries)
            await conn.execute(
                f"DELETE FROM {outbox.fullname} WHERE id = ANY($1::bigint[])", [row["id"] for row in rows]
            )
        for row in rows:
            RELAYED.labels(row["topic"]).inc()
        self._resolve_waiters(rows[-1]["id"])
        return len(rows)

    def _resolve_waiters(self, published_id: int | None) -> None:
        """Waiters whose rows are no longer in the outbox have been published."""
        if published_id is not None:
            self._published_up_to = max(self._published_up_to, published_id)
        remaining = []
        for target, future in self._waiters:
            if future.done():
                continue
            if published_id is None or target <= self._published_up_to:
                # With published_id None the outbox is empty: every earlier row is out.
                future.set_result(None)
            else:
                remaining.append((target, future))
        self._waiters = remaining
