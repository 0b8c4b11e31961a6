"""The transactional outbox and its relay.

A service writes derived events through its unit of work (stocksync_common.uow), in
the same transaction as the state change. The relay publishes rows in id order and
marks them published once the broker has acknowledged them. Per key, ids follow commit order because writers of one
key serialise on that key's row lock, so publishing in id order keeps each key in order.

One relay per service publishes at a time: it holds a lease, a session advisory lock on
a PostgreSQL connection of its own, for as long as it runs. The lease ends with that
session, so that another instance takes over promptly:
- the process dies (SIGKILL) or PostgreSQL restarts: the server ends the session at once;
- the holder falls silent (a network cut, a frozen process): the session's
  `idle_session_timeout` is `lease_timeout_s`, and the holder runs a statement on it at
  least every `min(poll_interval_s, lease_timeout_s / 3)` while it holds the lease, so
  only a holder that is gone lets it lapse;
- a graceful stop publishes what was committed before it, then closes the session.
A holder stops publishing the moment it cannot vouch for its lease: it hands rows to
the producer only while the session is open (asyncpg reports its termination) and its
last statement there succeeded less than `lease_timeout_s / 2` ago (every statement on
the lease has that timeout), so it has stopped sending before the server can give the
lease to another relay. After a failure it waits (at most `lease_timeout_s / 2`, still
holding the lease) for the batches it had in flight to settle before it lets go, so the
next holder's sends follow its own. What remains: a holder frozen for longer than
`lease_timeout_s` with records still buffered in its producer sends them when it wakes,
possibly after the new holder's; consumers drop a version that is not newer than what
they applied, so no quantity goes back. Holding it, the relay publishes continuously: woken
in process on commit (`wake`), it marks what the broker acknowledged and reads the next
rows in one statement, with no lock round trip, and reads the next rows while the
previous ones are in flight (at most `max_in_flight` batches; the producer keeps one
request in flight per partition, so a key's rows reach the broker in id order). A relay
without the lease (another instance holds it) tries to take it whenever it is woken and
every `poll_interval_s`, and otherwise NOTIFYs the holder, which LISTENs on its lease
connection: a commit in any instance is published at once. When a send fails, nothing
in flight is marked; everything unmarked is read and sent again (consumers' inboxes make
the repeats harmless).

The broker is a transport, never the only copy: published rows stay for
`retention_s`, and the relay records the cluster id of the broker it publishes to
(table `outbox_broker`). When it finds a different id (a new, empty broker: the
embedded in-memory broker restarted), it recreates the topics and republishes the
retained rows in id order before anything new; consumers' inboxes make the repeats
harmless. Rows past retention are pruned in bounded batches.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
import zlib
from collections.abc import Iterable
from typing import Any

import asyncpg
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import Counter, Gauge
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from stocksync_common.contracts import Event
from stocksync_common.kafka import encode_event, ensure_topics
from stocksync_common.raw_connection import raw_connection, raw_transaction
from stocksync_common.topics import topic_for
from stocksync_common.tracing import TRACEPARENT, trace_context_of

log = logging.getLogger(__name__)

MAX_ID = 2**63 - 1

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


# An outbox row's values, in the order of `OUTBOX_COLUMNS`.
OutboxRecord = tuple[str, bytes, bytes, str, str, str | None]


def outbox_row(event: Event) -> OutboxRecord:
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


def outbox_arrays(events: Iterable[Event], records: Iterable[OutboxRecord] = ()) -> tuple[list[Any], ...]:
    """The outbox rows of events, then of records already encoded, as one list per column:
    the parameters of `outbox_insert_sql`."""
    rows = [*(outbox_row(event) for event in events), *records]
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


def _headers(row: Any) -> list[tuple[str, bytes]]:
    headers = [("event_type", row["event_type"].encode()), ("causation_id", row["causation_id"].encode())]
    if row["trace_context"] is not None:
        headers.append((TRACEPARENT, row["trace_context"].encode()))
    return headers


class _Batch:
    """Rows handed to the producer, and the future of the broker's acknowledgements."""

    def __init__(self, rows: list[Any], delivered: asyncio.Future[Any]) -> None:
        self.ids = [row["id"] for row in rows]
        self.topics = collections.Counter(row["topic"] for row in rows)
        self.delivered = delivered

    def count(self) -> None:
        for topic, n in self.topics.items():
            RELAYED.labels(topic).inc(n)


class LeaseLost(Exception):
    """The relay can no longer vouch for its lease: it must not publish."""


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
        max_in_flight: int = 4,
        lease_timeout_s: float = 5.0,
    ) -> None:
        self.engine = engine
        self.outbox = outbox
        self.producer = producer
        self.bootstrap_servers = bootstrap_servers
        self.batch_size = batch_size
        self.poll_interval_s = poll_interval_s
        self.retention_s = retention_s
        self.broker_check_interval_s = broker_check_interval_s
        self.max_in_flight = max_in_flight
        self.lease_timeout_s = lease_timeout_s
        # A holder runs a statement on its lease at least this often (its heartbeat).
        self._lease_check_s = min(poll_interval_s, lease_timeout_s / 3)
        self._broker_table = f"{outbox.schema}.outbox_broker" if outbox.schema else "outbox_broker"
        self._lock_key = zlib.crc32(f"outbox:{outbox.schema}".encode())
        self._channel = f"stocksync_outbox_{outbox.schema or 'public'}"
        columns = ", ".join(OUTBOX_COLUMNS)
        # Marks the acknowledged rows ($1) and reads the next unpublished ones, skipping
        # those in flight or just marked ($2: the statement's snapshot predates its update),
        # up to id $4 (a stopping relay publishes only what was committed before it stopped).
        self._mark_and_read_sql = (
            f"WITH done AS (UPDATE {outbox.fullname} SET published_at = now() WHERE id = ANY($1::bigint[])) "
            f"SELECT id, {columns} FROM {outbox.fullname} "
            "WHERE published_at IS NULL AND id <> ALL($2::bigint[]) AND id <= $4::bigint ORDER BY id LIMIT $3::int"
        )
        self._admin: AIOKafkaAdminClient | None = None
        # The cluster id this relay last confirmed it publishes to; None forces a check.
        self._cluster_id: str | None = None
        self._broker_checked_at = float("-inf")
        self._pruned_at = float("-inf")
        self._backlog_sampled_at = float("-inf")
        self._wake = asyncio.Event()
        # Set by `wake` only (not by a notification): what a relay without the lease passes on.
        self._woken_here = False
        self._stopping = False
        # The lease connection (SQLAlchemy's, for invalidation) and its asyncpg driver.
        self._lease_conn: AsyncConnection | None = None
        self._lease: Any = None
        # When the last statement on the lease succeeded (time.monotonic()).
        self._lease_confirmed_at = float("-inf")

    def wake(self) -> None:
        self._woken_here = True
        self._wake.set()

    def request_stop(self) -> None:
        self._stopping = True
        self._wake.set()

    @property
    def holds_lease(self) -> bool:
        return self._lease is not None

    async def run(self) -> None:
        try:
            while True:
                try:
                    await self._housekeeping()
                    if await self._take_lease():
                        await self._publish_continuously()
                    elif self._woken_here:
                        await self._notify_holder()
                except LeaseLost as exc:
                    log.warning("outbox relay lost its lease: %s", exc, extra={"schema": self.outbox.schema})
                    await self._release_lease()
                except Exception:
                    # The broker may be a new one when it answers again: check before publishing.
                    self._cluster_id = None
                    log.exception("outbox relay failed; retrying", extra={"schema": self.outbox.schema})
                    await self._release_lease()
                    if not self._stopping:
                        await asyncio.sleep(self.poll_interval_s)
                if self._stopping:
                    return
                await self._wait(self._lease_check_s if self.holds_lease else None)
        finally:
            # Also when cancelled (a shutdown past its timeout): the lease goes with the session.
            await self._release_lease()
            await self._close_admin()

    async def _wait(self, timeout_s: float | None = None) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self.poll_interval_s if timeout_s is None else timeout_s)
        self._wake.clear()

    async def _housekeeping(self) -> None:
        """The backlog gauge and pruning, on their periods (the backlog is counted even while
        publishing fails, which is when it matters)."""
        if time.monotonic() - self._backlog_sampled_at >= BACKLOG_SAMPLE_INTERVAL_S:
            self._backlog_sampled_at = time.monotonic()
            try:
                await self.measure_backlog()
            except Exception:
                log.warning("could not count the outbox backlog", extra={"schema": self.outbox.schema})
        if time.monotonic() - self._pruned_at >= PRUNE_INTERVAL_S:
            self._pruned_at = time.monotonic()
            await self.prune()

    async def measure_backlog(self) -> int:
        async with self.engine.connect() as conn:
            count = (
                await conn.execute(
                    sa.select(sa.func.count()).select_from(self.outbox).where(self.outbox.c.published_at.is_(None))
                )
            ).scalar_one()
        BACKLOG.labels(self.outbox.schema).set(count)
        return int(count)

    async def _take_lease(self) -> bool:
        """Hold the lease, or say another relay does."""
        if self._lease is not None:
            return True
        timeout = self.lease_timeout_s / 2
        conn = await self.engine.connect()
        try:
            driver: Any = (await conn.get_raw_connection()).driver_connection
            got = await driver.fetchval("SELECT pg_try_advisory_lock($1::bigint)", self._lock_key, timeout=timeout)
            if got:
                # The server ends the session, and so the lease, once the holder has been
                # silent this long (or its TCP peer unreachable: ignored over a Unix socket).
                ms = max(1, int(self.lease_timeout_s * 1000))
                await driver.execute(f"SET idle_session_timeout = {ms}; SET tcp_user_timeout = {ms}", timeout=timeout)
                await driver.add_listener(self._channel, self._notified)
        except BaseException:
            await conn.invalidate()
            await conn.close()
            raise
        if not got:
            await conn.close()
            return False
        driver.add_termination_listener(self._lease_terminated)
        self._lease_conn, self._lease = conn, driver
        self._lease_confirmed_at = time.monotonic()
        return True

    async def _release_lease(self) -> None:
        """Close the lease connection: the lock and the LISTEN go with it."""
        conn, self._lease_conn, self._lease = self._lease_conn, None, None
        self._lease_confirmed_at = float("-inf")
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.invalidate()
            with contextlib.suppress(Exception):
                await conn.close()

    def _lease_terminated(self, connection: Any) -> None:
        """asyncpg: the lease's session ended (server restart, terminated backend, network)."""
        if connection is self._lease:
            self._lease_confirmed_at = float("-inf")
            self._wake.set()

    def _vouch_for_lease(self) -> Any:
        """The lease connection, if this relay may still publish under it; else `LeaseLost`."""
        lease = self._lease
        if lease is None or lease.is_closed():
            raise LeaseLost("the lease's session has ended")
        if time.monotonic() - self._lease_confirmed_at >= self.lease_timeout_s / 2:
            raise LeaseLost("no statement on the lease succeeded within half the lease timeout")
        return lease

    async def _on_lease(self, method: str, sql: str, *args: Any) -> Any:
        """Run a statement on the lease (asyncpg's `fetch`, `fetchval` or `execute`); a
        success confirms the lease, a failure or a timeout ends it."""
        lease = self._lease
        if lease is None or lease.is_closed():
            raise LeaseLost("the lease's session has ended")
        try:
            result = await getattr(lease, method)(sql, *args, timeout=self.lease_timeout_s / 2)
        except (OSError, TimeoutError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError) as exc:
            raise LeaseLost(f"{type(exc).__name__}: {exc}") from exc
        self._lease_confirmed_at = time.monotonic()
        return result

    def _notified(self, connection: Any, pid: int, channel: str, payload: str) -> None:
        self._wake.set()

    async def _notify_holder(self) -> None:
        self._woken_here = False
        async with raw_connection(self.engine) as conn:
            await conn.execute(f"NOTIFY {self._channel}")

    async def _publish_continuously(self) -> None:
        """Under the lease: publish until nothing is left, then return to wait.

        Each round marks the rows the broker acknowledged and reads the next ones (one
        statement), then hands them to the producer without waiting for the broker, up
        to `max_in_flight` batches ahead; batches are marked in the order they were sent.
        While it waits for the broker, the relay confirms its lease every `_lease_check_s`.
        Once stopping, it reads no row committed after it was asked to stop.
        """
        in_flight: collections.deque[_Batch] = collections.deque()
        acked: list[_Batch] = []
        up_to = MAX_ID
        try:
            while True:
                while in_flight and in_flight[0].delivered.done():
                    batch = in_flight.popleft()
                    batch.delivered.result()  # raises if the broker refused any row of the batch
                    acked.append(batch)
                if self._stopping and up_to == MAX_ID:
                    up_to = int(
                        await self._on_lease("fetchval", f"SELECT coalesce(max(id), 0) FROM {self.outbox.fullname}")
                    )
                if self._broker_check_due():
                    # A new broker gets the retained rows before anything new: settle first.
                    while in_flight:
                        await self._await_vouching(in_flight[0].delivered)
                        acked.append(in_flight.popleft())
                    cluster_id = await self._current_cluster_id()
                    if cluster_id is not None:
                        await self._republish_if_new_broker(cluster_id)
                if len(in_flight) >= self.max_in_flight:
                    await self._await_vouching(in_flight[0].delivered)  # read no further ahead
                    continue
                self._wake.clear()
                self._woken_here = False
                done = [i for batch in acked for i in batch.ids]
                sending = [i for batch in in_flight for i in batch.ids]
                rows = await self._on_lease(
                    "fetch", self._mark_and_read_sql, done, done + sending, self.batch_size, up_to
                )
                for batch in acked:
                    batch.count()
                acked = []
                if rows:
                    self._vouch_for_lease()
                    in_flight.append(_Batch(rows, await self._enqueue(rows)))
                    if len(rows) >= self.batch_size:
                        continue  # a full batch: more may be waiting, read on at once
                if in_flight:
                    # Nothing more to read for now (a batch short of full took every row
                    # committed before the read): wait for the oldest batch or a commit
                    # (at most `_lease_check_s`: the next read vouches for the lease).
                    woken = asyncio.ensure_future(self._wake.wait())
                    await asyncio.wait(
                        [in_flight[0].delivered, woken],
                        timeout=self._lease_check_s,
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                    woken.cancel()
                else:
                    BACKLOG.labels(self.outbox.schema).set(0)
                    return
        finally:
            if in_flight:
                # Not marked: read and sent again by whoever holds the lease next. Let them
                # settle before the lease can go, so that the next holder's sends follow them.
                pending = [batch.delivered for batch in in_flight]
                for delivered in pending:
                    # Retrieve the outcome so that none is left unobserved.
                    delivered.add_done_callback(lambda f: f.cancelled() or f.exception())
                if self._lease is not None and not self._lease.is_closed():
                    await asyncio.wait(pending, timeout=self.lease_timeout_s / 2)

    async def _await_vouching(self, delivered: asyncio.Future[Any]) -> Any:
        """The broker's answer to a batch; meanwhile a statement on the lease every
        `_lease_check_s`, so that a slow broker does not let the lease lapse."""
        while True:
            await asyncio.wait([delivered], timeout=self._lease_check_s)
            if delivered.done():
                return delivered.result()
            await self._on_lease("execute", "SELECT 1")

    async def publish_batch(self) -> int:
        """Publish one batch and wait for the broker; return how many rows it published
        (0 when another relay holds the lease). For tools and tests: it takes the lease
        for the call only; `run` publishes continuously."""
        held = self.holds_lease
        if not await self._take_lease():
            return 0
        try:
            cluster_id = await self._current_cluster_id()
            if cluster_id is not None:
                await self._republish_if_new_broker(cluster_id)
            rows = await self._on_lease("fetch", self._mark_and_read_sql, [], [], self.batch_size, MAX_ID)
            if not rows:
                BACKLOG.labels(self.outbox.schema).set(0)
                return 0
            self._vouch_for_lease()
            batch = _Batch(rows, await self._enqueue(rows))
            await self._await_vouching(batch.delivered)
            await self._on_lease(
                "execute",
                f"UPDATE {self.outbox.fullname} SET published_at = now() WHERE id = ANY($1::bigint[])",
                batch.ids,
            )
            batch.count()
            return len(rows)
        finally:
            if not held:
                await self._release_lease()

    def _broker_check_due(self) -> bool:
        return self._cluster_id is None or time.monotonic() - self._broker_checked_at >= self.broker_check_interval_s

    async def _enqueue(self, rows: list[Any]) -> asyncio.Future[Any]:
        """Hand rows to the producer in order; the future resolves once the broker has
        acknowledged all of them (or fails with the first refusal)."""
        deliveries = [
            await self.producer.send(
                row["topic"],
                row["payload"],
                key=row["key"],
                headers=_headers(row),
            )
            for row in rows
        ]
        return asyncio.gather(*deliveries)

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

    async def _republish_if_new_broker(self, cluster_id: str) -> None:
        """Under the lease: if the broker is not the one the outbox last published to,
        give it the retained rows again, in id order, before anything new."""
        if cluster_id == self._cluster_id:
            return
        known = await self._on_lease("fetchval", f"SELECT cluster_id FROM {self._broker_table} WHERE id = 1")
        if known is not None and known != cluster_id:
            await ensure_topics(self.bootstrap_servers)
            count = await self._republish_retained()
            log.warning(
                "new broker: republished the retained outbox rows",
                extra={"schema": self.outbox.schema, "rows": count, "cluster_id": cluster_id},
            )
        await self._on_lease(
            "execute",
            f"INSERT INTO {self._broker_table} (id, cluster_id) VALUES (1, $1::text) "
            "ON CONFLICT (id) DO UPDATE SET cluster_id = EXCLUDED.cluster_id, seen_at = now()",
            cluster_id,
        )
        self._cluster_id = cluster_id

    async def _republish_retained(self) -> int:
        after, count = 0, 0
        while True:
            rows = await self._on_lease(
                "fetch",
                f"SELECT id, {', '.join(OUTBOX_COLUMNS)} FROM {self.outbox.fullname} "
                "WHERE published_at IS NOT NULL AND id > $1::bigint ORDER BY id LIMIT $2::int",
                after,
                self.batch_size,
            )
            if not rows:
                return count
            self._vouch_for_lease()
            await self._await_vouching(await self._enqueue(rows))
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
