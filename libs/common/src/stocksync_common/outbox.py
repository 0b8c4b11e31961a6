"""The transactional outbox and its relay.

A service writes derived events with `add_to_outbox` in the same transaction as the
state change. The relay publishes rows in id order and marks them published once the
broker has acknowledged them. Per key, ids follow commit order because writers of one
key serialise on that key's row lock, so publishing in id order keeps each key in order.
Only one relay publishes at a time per service (a transaction-scoped advisory lock),
which keeps that order when several instances run.

The broker is a transport, never the only copy: published rows stay for
`retention_s`, and the relay records the cluster id of the broker it publishes to
(table `outbox_broker`). When it finds a different id (a new, empty broker: the
embedded in-memory broker restarted), it recreates the topics and republishes the
retained rows in id order before anything new; consumers' inboxes make the repeats
harmless. Rows past retention are pruned in bounded batches.
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
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import Counter, Gauge
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from stocksync_common.contracts import Event
from stocksync_common.kafka import encode_event, ensure_topics
from stocksync_common.raw_connection import raw_transaction
from stocksync_common.topics import topic_for
from stocksync_common.tracing import TRACEPARENT, trace_context_of

log = logging.getLogger(__name__)

RELAYED = Counter("stocksync_outbox_relayed_total", "Outbox events published", ["topic"])
BACKLOG = Gauge("stocksync_outbox_backlog", "Outbox rows waiting to be published", ["schema"])
REPUBLISHED = Counter(
    "stocksync_outbox_republished_total", "Retained outbox rows published again to a new broker", ["schema"]
)
PRUNED = Counter("stocksync_outbox_pruned_total", "Published outbox rows deleted past retention", ["schema"])
# Published rows past retention are deleted this many at a time, one statement each.
PRUNE_BATCH = 5_000
PRUNE_INTERVAL_S = 30.0
# The backlog is counted on this period even while publishing fails (broker down),
# which is when it matters; a count per batch would cost too much under load.
BACKLOG_SAMPLE_INTERVAL_S = 5.0


# trace_context: the W3C traceparent the row carries to its record (stocksync_common.tracing), or NULL.
OUTBOX_COLUMNS = ("topic", "key", "payload", "event_type", "causation_id", "trace_context")


def outbox_row(event: Event) -> tuple[str, bytes, bytes, str, str, str | None]:
    """The values of an event's outbox row, in the order of `OUTBOX_COLUMNS`."""
    topic = topic_for(event)
    return (
        topic.name,
        topic.key_of(event),
        encode_event(event),
        type(event).__name__,
        event.causation_id,
        trace_context_of(event),
    )


def outbox_arrays(events: Iterable[Event]) -> tuple[list[Any], ...]:
    """The outbox rows of events as one list per column: the parameters of `outbox_insert_sql`."""
    rows = [outbox_row(event) for event in events]
    return tuple([row[i] for row in rows] for i in range(len(OUTBOX_COLUMNS)))


def outbox_insert_sql(outbox: sa.Table, first_parameter: int) -> str:
    """An INSERT of outbox rows from six array parameters ($n to $n+5, `outbox_arrays`),
    for asyncpg (stocksync_common.raw_connection); ids are given in array order and
    returned. Usable as a CTE beside the state change it announces."""
    n = first_parameter
    return (
        f"INSERT INTO {outbox.fullname} ({', '.join(OUTBOX_COLUMNS)}) "
        "SELECT o.topic, o.key, o.payload, o.event_type, o.causation_id, o.trace_context "
        f"FROM unnest(${n}::text[], ${n + 1}::bytea[], ${n + 2}::bytea[], ${n + 3}::text[], ${n + 4}::text[], "
        f"${n + 5}::text[]) "
        "WITH ORDINALITY AS o(topic, key, payload, event_type, causation_id, trace_context, n) "
        "ORDER BY o.n RETURNING id"
    )


async def add_to_outbox(conn: AsyncConnection, outbox: sa.Table, events: Iterable[Event]) -> list[int]:
    rows = [dict(zip(OUTBOX_COLUMNS, outbox_row(event), strict=True)) for event in events]
    if not rows:
        return []
    result = await conn.execute(sa.insert(outbox).returning(outbox.c.id), rows)
    return list(result.scalars().all())


def _headers(row: Any) -> list[tuple[str, bytes]]:
    headers = [("event_type", row["event_type"].encode()), ("causation_id", row["causation_id"].encode())]
    if row["trace_context"] is not None:
        headers.append((TRACEPARENT, row["trace_context"].encode()))
    return headers


class OutboxRelay:
    def __init__(
        self,
        engine: AsyncEngine,
        outbox: sa.Table,
        producer: AIOKafkaProducer,
        *,
        bootstrap_servers: str,
        batch_size: int = 500,
        poll_interval_s: float = 0.5,
        retention_s: float = 3600.0,
        broker_check_interval_s: float = 1.0,
    ) -> None:
        self.engine = engine
        self.outbox = outbox
        self.producer = producer
        self.bootstrap_servers = bootstrap_servers
        self.batch_size = batch_size
        self.poll_interval_s = poll_interval_s
        self.retention_s = retention_s
        self.broker_check_interval_s = broker_check_interval_s
        self._broker_table = f"{outbox.schema}.outbox_broker" if outbox.schema else "outbox_broker"
        self._lock_key = zlib.crc32(f"outbox:{outbox.schema}".encode())
        self._admin: AIOKafkaAdminClient | None = None
        # The cluster id this relay last confirmed it publishes to; None forces a check.
        self._cluster_id: str | None = None
        self._broker_checked_at = float("-inf")
        self._pruned_at = float("-inf")
        self._wake = asyncio.Event()
        self._stopping = False

    def wake(self) -> None:
        self._wake.set()

    def request_stop(self) -> None:
        self._stopping = True
        self._wake.set()

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
                if time.monotonic() - self._pruned_at >= PRUNE_INTERVAL_S:
                    self._pruned_at = time.monotonic()
                    await self.prune()
                while await self.publish_batch() == self.batch_size:
                    pass
            except Exception:
                # The broker may be a new one when it answers again: check before publishing.
                self._cluster_id = None
                log.exception("outbox relay failed; retrying", extra={"schema": self.outbox.schema})
                await asyncio.sleep(self.poll_interval_s)
            if self._stopping:
                await self._close_admin()
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_interval_s)
            self._wake.clear()

    async def measure_backlog(self) -> int:
        async with self.engine.connect() as conn:
            count = (
                await conn.execute(
                    sa.select(sa.func.count()).select_from(self.outbox).where(self.outbox.c.published_at.is_(None))
                )
            ).scalar_one()
        BACKLOG.labels(self.outbox.schema).set(count)
        return int(count)

    async def publish_batch(self) -> int:
        """Publish one batch; return how many rows it published.

        On asyncpg directly (stocksync_common.raw_connection): the relay runs a batch
        for about every webhook or consumer batch, and SQLAlchemy's cost per statement
        made it a quarter of a service's CPU. Lock, read and mark stay three
        statements: the rows are read in a statement after the lock is held, so they
        are what the previous holder left. Unpublished rows are read through a partial
        index, so the retained ones cost the hot path nothing.
        """
        outbox = self.outbox
        cluster_id = await self._current_cluster_id()
        async with raw_transaction(self.engine) as conn:
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1::bigint)", self._lock_key):
                return 0
            if cluster_id is not None:
                await self._republish_if_new_broker(conn, cluster_id)
            rows = await conn.fetch(
                f"SELECT id, {', '.join(OUTBOX_COLUMNS)} FROM {outbox.fullname} "
                "WHERE published_at IS NULL ORDER BY id LIMIT $1::int",
                self.batch_size,
            )
            if not rows:
                BACKLOG.labels(outbox.schema).set(0)
                return 0
            await self._send(rows)
            await conn.execute(
                f"UPDATE {outbox.fullname} SET published_at = now() WHERE id = ANY($1::bigint[])",
                [row["id"] for row in rows],
            )
        for row in rows:
            RELAYED.labels(row["topic"]).inc()
        return len(rows)

    async def _send(self, rows: list[Any]) -> None:
        deliveries = [
            await self.producer.send(
                row["topic"],
                row["payload"],
                key=row["key"],
                headers=_headers(row),
            )
            for row in rows
        ]
        await asyncio.gather(*deliveries)

    async def _current_cluster_id(self) -> str | None:
        """The broker's cluster id when a check is due (every `broker_check_interval_s`,
        and after any failure); None when no check is due."""
        if self._cluster_id is not None and time.monotonic() - self._broker_checked_at < self.broker_check_interval_s:
            return None
        if self._admin is None:
            self._admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap_servers, request_timeout_ms=5_000)
            await self._admin.start()
        try:
            cluster = await self._admin.describe_cluster()
        except Exception:
            await self._close_admin()
            raise
        self._broker_checked_at = time.monotonic()
        return str(cluster["cluster_id"])

    async def _republish_if_new_broker(self, conn: Any, cluster_id: str) -> None:
        """Under the relay lock: if the broker is not the one the outbox last published
        to, give it the retained rows again, in id order, before anything new."""
        if cluster_id == self._cluster_id:
            return
        known = await conn.fetchval(f"SELECT cluster_id FROM {self._broker_table} WHERE id = 1")
        if known is not None and known != cluster_id:
            await ensure_topics(self.bootstrap_servers)
            count = await self._republish_retained(conn)
            log.warning(
                "new broker: republished the retained outbox rows",
                extra={"schema": self.outbox.schema, "rows": count, "cluster_id": cluster_id},
            )
        await conn.execute(
            f"INSERT INTO {self._broker_table} (id, cluster_id) VALUES (1, $1::text) "
            "ON CONFLICT (id) DO UPDATE SET cluster_id = EXCLUDED.cluster_id, seen_at = now()",
            cluster_id,
        )
        self._cluster_id = cluster_id

    async def _republish_retained(self, conn: Any) -> int:
        after, count = 0, 0
        while True:
            rows = await conn.fetch(
                f"SELECT id, {', '.join(OUTBOX_COLUMNS)} FROM {self.outbox.fullname} "
                "WHERE published_at IS NOT NULL AND id > $1::bigint ORDER BY id LIMIT $2::int",
                after,
                self.batch_size,
            )
            if not rows:
                return count
            await self._send(rows)
            REPUBLISHED.labels(self.outbox.schema).inc(len(rows))
            after, count = rows[-1]["id"], count + len(rows)

    async def prune(self) -> int:
        """Delete published rows past retention, `PRUNE_BATCH` at a time."""
        total = 0
        while True:
            async with raw_transaction(self.engine) as conn:
                deleted = await conn.fetchval(
                    f"WITH gone AS (DELETE FROM {self.outbox.fullname} WHERE id IN ("
                    f"SELECT id FROM {self.outbox.fullname} WHERE published_at IS NOT NULL "
                    "AND published_at < now() - make_interval(secs => $1::float8) LIMIT $2::int"
                    ") RETURNING 1) SELECT count(*) FROM gone",
                    self.retention_s,
                    PRUNE_BATCH,
                )
            total += int(deleted)
            PRUNED.labels(self.outbox.schema).inc(int(deleted))
            if deleted < PRUNE_BATCH:
                return total

    async def _close_admin(self) -> None:
        if self._admin is not None:
            with contextlib.suppress(Exception):
                await self._admin.close()
            self._admin = None
