"""Sending pending pushes: one drain task per connection with work.

A drain holds the connection's drain lock (a transaction-scoped advisory lock, so two
publisher instances never send for one connection at once, and one SKU's quantities
reach the channel in order), reads up to the channel's batch limit of due pending rows,
drops what is stale, calls the channel, and in the same transaction records the
history, moves `last_sent` forward and deletes what was sent. A crash mid-call rolls
all of it back: the same absolute quantity is sent again, which is harmless.

The pending rows themselves are not locked during the call: the consumer upserts newer
quantities into them meanwhile instead of waiting for the channel's answer (which held
up the whole consumer). Settling deletes or postpones a row only at the version that
was sent, so a newer version that arrived during the call stays pending and is sent
next. Transient failures set
`not_before` instead of sleeping while holding the rows; a connection that must wait
(rate limit, Retry-After, Mirakl's once a minute) takes no rows until it may call.

A connection whose calls keep failing as a whole is paused (an alert: log and gauge);
its quantities keep coalescing while paused. It tries again by itself after
`pause_duration_s`, or when the merchant resumes it.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from prometheus_client import Counter, Gauge, Histogram
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from stocksync_common.channel_hosts import channel_http_client
from stocksync_common.contracts import utcnow
from stocksync_common.logging import causation
from stocksync_common.periodic import Periodic
from stocksync_common.raw_connection import raw_connection, raw_transaction, uuid_array_literal
from stocksync_common.tracing import instrument_client, pushing

from channel_publisher.adapters.channels.access_tokens import AccessTokens, grant_for
from channel_publisher.adapters.channels.registry import ADAPTERS, AdapterFactory
from channel_publisher.adapters.tables import connections, last_sent, listings, pending_pushes, pushes, unmapped_skus
from channel_publisher.config import PublisherSettings
from channel_publisher.domain.backoff import retry_delay
from channel_publisher.domain.channels import CHANNELS
from channel_publisher.domain.connection_health import (
    ACCEPTS_PUSHES_SQL,
    ConnectionHealth,
    after_call,
    failed_as_a_whole,
)
from channel_publisher.domain.pushes import (
    BatchResult,
    ChannelAdapter,
    CredentialsError,
    ItemOutcome,
    PermanentChannelError,
    PushItem,
    TransientChannelError,
)
from channel_publisher.domain.versions import NEWER_VERSION_SQL, needs_sending
from channel_publisher.service_layer.connections import Connection, load_connection

log = logging.getLogger(__name__)

PUSHES = Counter("stocksync_pushes_total", "Pushed quantities by outcome", ["channel_type", "status"])
SYNC_WINDOW = Histogram(
    "stocksync_sync_window_seconds",
    "From the order reaching order-ingest to the channel accepting the new quantity",
    ["channel_type"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
PENDING = Gauge("stocksync_pending_pushes", "Quantities waiting to be sent", ["connection_id"])
PAUSED = Gauge(
    "stocksync_connection_paused", "1 while a connection is paused (alert on it)", ["connection_id", "channel_type"]
)
CHANNEL_CALLS = Counter("stocksync_channel_calls_total", "Channel calls by result", ["channel_type", "result"])
# Quantities put back to wait, apart from the pushes' outcomes: "throttled" when the
# channel said when to come back (429, a throttled answer with Retry-After), "failed"
# for the other transient failures (5xx, timeouts). Throttling is the channel's normal
# pacing, not an error: the error alerts leave it out.
PUSH_RETRIES = Counter(
    "stocksync_push_retries_total", "Quantities postponed for a retry, by cause", ["channel_type", "cause"]
)


# The hot path is hand-written SQL on asyncpg (stocksync_common.raw_connection): a drain
# takes its batch in one statement and settles it in one, where SQLAlchemy took seven.

# Per connection with pending rows: how many, and whether any is due (not waiting for a
# retry, connection not paused).
DUE_SQL = f"""
SELECT p.connection_id, count(*) AS pending,
       coalesce(bool_or(c.connection_id IS NOT NULL AND (p.not_before IS NULL OR p.not_before <= $1)
                        AND {ACCEPTS_PUSHES_SQL.format(now="$1")}), false) AS due
FROM {pending_pushes.fullname} p
LEFT JOIN {connections.fullname} c ON c.connection_id = p.connection_id
GROUP BY p.connection_id
"""

# Key space of the drain lock (pg_try_advisory_xact_lock(int, int)); the second key is
# the connection id's hash. A collision only makes two connections take turns.
DRAIN_LOCK_CLASS = 0x50554253  # "PUBS"

# The connection's drain lock, and if held: its pause state and (unless paused) up to a
# batch of its due rows, each with what the channel last accepted and its listing. No
# row at all when another instance holds the lock (or the connection is gone).
TAKE_SQL = f"""
WITH drain_lock AS MATERIALIZED (
    SELECT pg_try_advisory_xact_lock({DRAIN_LOCK_CLASS}, hashtext($1::uuid::text)) AS held
)
SELECT c.paused_at, c.resume_at, c.consecutive_failures,
       p.connection_id, p.sku, p.location, p.merchant_id, p.quantity, p.version, p.stock_version, p.rule_ids,
       p.causation_id, p.origin_received_at, p.attempts, p.resync, coalesce(s.version, 0) AS sent_version,
       l.external::text AS external, p.trace_context, p.reason
FROM drain_lock
JOIN {connections.fullname} c ON drain_lock.held
LEFT JOIN LATERAL (
    SELECT * FROM {pending_pushes.fullname} q
    WHERE q.connection_id = c.connection_id
      AND (q.not_before IS NULL OR q.not_before <= $2)
      AND {ACCEPTS_PUSHES_SQL.format(now="$2")}
    ORDER BY q.enqueued_at, q.sku
    LIMIT $3
) p ON true
LEFT JOIN {last_sent.fullname} s ON s.connection_id = p.connection_id AND s.sku = p.sku AND s.location = p.location
LEFT JOIN {listings.fullname} l ON l.connection_id = p.connection_id AND l.sku = p.sku AND l.location = p.location
WHERE c.connection_id = $1
ORDER BY p.enqueued_at, p.sku
"""

HISTORY_COLUMNS = (
    "merchant_id",
    "connection_id",
    "sku",
    "location",
    "quantity",
    "version",
    "stock_version",
    "rule_ids",
    "causation_id",
    "status",
    "attempts",
    "channel_response",
    "origin_received_at",
    "finished_at",
    "sync_window_ms",
    "reason",
)

# What a call settled: `last_sent` moves forward for what was accepted (a newer version
# wins, domain/versions.py), transient failures wait, the history is written, and every
# settled row leaves the queue.
SETTLE_SQL = f"""
WITH sent AS (
    INSERT INTO {last_sent.fullname} AS s (connection_id, sku, location, version, quantity, sent_at)
    SELECT $1::uuid, a.sku, a.location, a.version, a.quantity, $2::timestamptz
    FROM unnest($3::text[], $4::text[], $5::bigint[], $6::bigint[]) AS a(sku, location, version, quantity)
    ON CONFLICT (connection_id, sku, location) DO UPDATE SET
        version = excluded.version, quantity = excluded.quantity, sent_at = excluded.sent_at
    WHERE {NEWER_VERSION_SQL.format(version="excluded.version", than="s.version")}
), postponed AS (
    UPDATE {pending_pushes.fullname} AS p SET attempts = r.attempts, not_before = r.not_before
    FROM unnest($7::text[], $8::text[], $9::bigint[], $10::int[], $11::timestamptz[])
        AS r(sku, location, version, attempts, not_before)
    WHERE p.connection_id = $1::uuid AND p.sku = r.sku AND p.location = r.location AND p.version = r.version
), history AS (
    INSERT INTO {pushes.fullname} ({", ".join(HISTORY_COLUMNS)})
    SELECT h.merchant_id, h.connection_id, h.sku, h.location, h.quantity, h.version, h.stock_version,
           h.rule_ids::uuid[], h.causation_id, h.status, h.attempts, h.channel_response, h.origin_received_at,
           h.finished_at, h.sync_window_ms, h.reason
    FROM unnest($12::uuid[], $13::uuid[], $14::text[], $15::text[], $16::bigint[], $17::bigint[], $18::bigint[],
                $19::text[], $20::text[], $21::text[], $22::int[], $23::text[], $24::timestamptz[],
                $25::timestamptz[], $26::float8[], $27::text[]) WITH ORDINALITY
        AS h(merchant_id, connection_id, sku, location, quantity, version, stock_version, rule_ids, causation_id,
             status, attempts, channel_response, origin_received_at, finished_at, sync_window_ms, reason, n)
    ORDER BY h.n
), settled AS (
    DELETE FROM {pending_pushes.fullname} AS p
    USING unnest($28::text[], $29::text[], $30::bigint[]) AS d(sku, location, version)
    WHERE p.connection_id = $1::uuid AND p.sku = d.sku AND p.location = d.location AND p.version = d.version
)
SELECT 1
"""

# SKUs the connection does not list: counted per SKU, not a history row per change.
UNMAPPED_SQL = f"""
INSERT INTO {unmapped_skus.fullname} AS u
    (connection_id, sku, location, changes, first_seen_at, last_seen_at, last_quantity)
SELECT $1::uuid, a.sku, a.location, 1, $2::timestamptz, $2::timestamptz, a.quantity
FROM unnest($3::text[], $4::text[], $5::bigint[]) AS a(sku, location, quantity)
ON CONFLICT (connection_id, sku, location) DO UPDATE SET
    changes = u.changes + 1, last_seen_at = excluded.last_seen_at, last_quantity = excluded.last_quantity
"""

# A connection's health: a call that did not fail as a whole clears failures and pause.
HEALTH_RESET_SQL = f"""
UPDATE {connections.fullname} SET consecutive_failures = 0, paused_at = NULL, pause_reason = NULL, resume_at = NULL
WHERE connection_id = $1::uuid
"""

# A call that failed as a whole: failures in a row, and the pause when $3 to $5 are set.
HEALTH_FAILED_SQL = f"""
UPDATE {connections.fullname}
SET consecutive_failures = $2::int, paused_at = coalesce($3::timestamptz, paused_at),
    pause_reason = coalesce($4::text, pause_reason), resume_at = coalesce($5::timestamptz, resume_at)
WHERE connection_id = $1::uuid
"""


@dataclass(frozen=True)
class _Pending:
    """A pending row taken for sending, with what the channel has and the listing."""

    connection_id: uuid.UUID
    sku: str
    location: str
    merchant_id: uuid.UUID
    quantity: int
    version: int
    stock_version: int
    rule_ids: list[uuid.UUID]
    causation_id: str
    origin_received_at: datetime | None
    attempts: int
    resync: bool
    sent_version: int
    external: dict[str, Any] | None
    trace_context: str | None = None
    # Why an adaptive buffer hid what it hid (one line per such rule); None otherwise.
    reason: str | None = None

    @classmethod
    def of(cls, record: Any) -> _Pending:
        external = record["external"]
        return cls(
            record["connection_id"],
            record["sku"],
            record["location"],
            record["merchant_id"],
            record["quantity"],
            record["version"],
            record["stock_version"],
            list(record["rule_ids"]),
            record["causation_id"],
            record["origin_received_at"],
            record["attempts"],
            record["resync"],
            record["sent_version"],
            None if external is None else orjson.loads(external),
            record["trace_context"],
            record["reason"],
        )


def _history_values(entry: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(uuid_array_literal(entry[name]) if name == "rule_ids" else entry[name] for name in HISTORY_COLUMNS)


def _columns(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    """Rows as one list per column: the array parameters of an `unnest`."""
    return [[row[i] for row in rows] for i in range(width)]


class Publisher:
    def __init__(
        self, engine: AsyncEngine, settings: PublisherSettings, adapters: Mapping[str, AdapterFactory] = ADAPTERS
    ) -> None:
        self.engine = engine
        self.settings = settings
        # Injectable: a test gives fake adapters to exercise the publisher's policies.
        self.adapters = adapters
        self.http = channel_http_client(settings.private_channel_hosts_allowed, settings.channel_timeout_s)
        instrument_client(self.http)
        # Looks for connections with due pushes every poll interval, or when woken.
        self._scan = Periodic("push-scan", settings.push_poll_interval_s, self._start_due_drains)
        self._stopping = False
        self._drains: dict[uuid.UUID, asyncio.Task[None]] = {}
        # Connections given new work while their drain was running: it looks once more.
        self._kicked: set[uuid.UUID] = set()
        self._adapters: dict[uuid.UUID, tuple[Connection, ChannelAdapter]] = {}

    def wake(self) -> None:
        """Look for due connections now."""
        self._scan.wake()

    def drain_now(self, connection_ids: Iterable[uuid.UUID]) -> None:
        """These connections have new work: drain them now, without a scan for due ones."""
        for connection_id in connection_ids:
            self._start_drain(connection_id)

    def request_stop(self) -> None:
        self._stopping = True
        self._scan.request_stop()

    async def run(self) -> None:
        try:
            await self._scan.run()
        finally:
            # In-flight calls finish and commit before the process exits.
            if self._drains:
                await asyncio.wait(list(self._drains.values()), timeout=self.settings.graceful_shutdown_timeout_s)
            await self.http.aclose()

    @property
    def stopping(self) -> bool:
        return self._stopping

    async def _start_due_drains(self) -> None:
        async with raw_connection(self.engine) as conn:
            rows = await conn.fetch(DUE_SQL, utcnow())
        for row in rows:
            PENDING.labels(str(row["connection_id"])).set(row["pending"])
        for row in rows:
            if row["due"]:
                self._start_drain(row["connection_id"])

    def _start_drain(self, connection_id: uuid.UUID) -> None:
        if self._stopping:
            return
        task = self._drains.get(connection_id)
        if task is None or task.done():
            self._drains[connection_id] = asyncio.create_task(self._drain(connection_id))
        else:
            self._kicked.add(connection_id)

    async def _drain(self, connection_id: uuid.UUID) -> None:
        while not self._stopping:
            # Work enqueued after this batch's read is seen by the next one, not left
            # for the poll: the kick arrives while this task still runs.
            self._kicked.discard(connection_id)
            try:
                if await self.publish_due_pushes(connection_id) == 0 and connection_id not in self._kicked:
                    return
            except Exception:
                log.exception("push batch failed", extra={"connection_id": str(connection_id)})
                return

    async def adapter_for(
        self, conn: AsyncConnection, connection_id: uuid.UUID
    ) -> tuple[Connection, ChannelAdapter] | None:
        """The connection's adapter, kept for the life of the process so its pacing holds."""
        cached = self._adapters.get(connection_id)
        if cached is not None:
            return cached
        connection = await load_connection(conn, connection_id)
        if connection is None or connection.channel_type not in self.adapters:
            return None
        adapter: ChannelAdapter
        try:
            CHANNELS[connection.channel_type].credentials.model_validate(connection.credentials)
            grant = grant_for(connection.channel_type, connection.base_url, connection.credentials)
            tokens = AccessTokens(self.engine, self.http, connection_id, grant) if grant is not None else None
            adapter = self.adapters[connection.channel_type](
                self.http, connection.base_url, connection.credentials, connection.settings, tokens
            )
        except (ValidationError, KeyError, TypeError, ValueError) as exc:
            # Stored before the channel's credentials took their current shape (a fixed
            # access token where a refresh token is needed now): the connection's problem.
            adapter = UnusableConnection(connection.channel_type, f"{type(exc).__name__}: {exc}")
        self._adapters[connection_id] = (connection, adapter)
        return connection, adapter

    async def publish_due_pushes(self, connection_id: uuid.UUID) -> int:
        """Send one batch for one connection; return how many pending rows it settled."""
        found = self._adapters.get(connection_id)
        if found is None:
            async with self.engine.connect() as sa_conn:
                found = await self.adapter_for(sa_conn, connection_id)
            if found is None:
                return 0
        connection, adapter = found
        # Pacing first: a connection that must wait takes no rows (nor a statement).
        wait = adapter.ready_in()
        if wait > 0:
            self.wake_later(wait)
            return 0
        now = utcnow()
        async with raw_transaction(self.engine) as conn:
            taken = await conn.fetch(TAKE_SQL, connection_id, now, adapter.batch_limit)
            if not taken:
                return 0  # the connection is gone, or another instance is draining it
            state = ConnectionHealth(taken[0]["paused_at"], taken[0]["resume_at"], taken[0]["consecutive_failures"])
            if not state.accepts_pushes(now):
                return 0
            rows = [_Pending.of(record) for record in taken if record["sku"] is not None]
            if not rows:
                return 0
            to_send = []
            unmapped = []
            history: list[dict[str, Any]] = []
            for row in rows:
                if not needs_sending(row.version, row.sent_version, resync=row.resync):
                    continue  # stale: the channel already has this or something newer
                if row.external is None:
                    unmapped.append(row)
                    continue
                to_send.append(row)
            outcomes: dict[int, ItemOutcome] = {}
            call_failed = False
            credentials_error: str | None = None
            if to_send:
                items = [PushItem(r.sku, r.location, r.quantity, dict(r.external or {}), r.version) for r in to_send]
                with (
                    causation(to_send[0].causation_id if len(to_send) == 1 else None),
                    pushing(connection.channel_type, connection_id, to_send) as spans,
                ):
                    try:
                        outcomes = (await adapter.push(items)).outcomes
                    except TransientChannelError as exc:
                        outcomes = {i: ItemOutcome("retry", str(exc), exc.retry_after) for i in range(len(to_send))}
                    except PermanentChannelError as exc:
                        call_failed = True
                        outcomes = {i: ItemOutcome("rejected", str(exc)) for i in range(len(to_send))}
                    except CredentialsError as exc:
                        # The connection's problem: its quantities wait, no SKU is blamed.
                        credentials_error = f"credentials: {exc}"
                        outcomes = {i: ItemOutcome("retry", credentials_error) for i in range(len(to_send))}
                    if spans.spans:
                        for index, answer in outcomes.items():
                            spans.answered(index, answer.status, answer.channel_response)
            finished = utcnow()
            accepted, retrying = [], []
            for index, row in enumerate(to_send):
                outcome = outcomes.get(index, ItemOutcome("retry", "no answer for this item"))
                if outcome.status == "retry":
                    retrying.append((row, outcome))
                    continue
                history.append(_history(row, outcome.status, outcome.channel_response, finished))
                PUSHES.labels(connection.channel_type, outcome.status).inc()
                if outcome.status == "accepted":
                    accepted.append(row)
                    if row.origin_received_at is not None:
                        SYNC_WINDOW.labels(connection.channel_type).observe(
                            (finished - row.origin_received_at).total_seconds()
                        )
            postponed: list[tuple[_Pending, int, datetime]] = []
            if retrying:
                for _, outcome in retrying:
                    cause = "throttled" if outcome.retry_after is not None else "failed"
                    PUSH_RETRIES.labels(connection.channel_type, cause).inc()
                postponed, retry_history = self._postpone(retrying, finished)
                if credentials_error is None:
                    history.extend(retry_history)
            # Everything taken except what waits for a retry is settled: sent, rejected, unmapped or stale.
            retry_keys = {(r.sku, r.location) for r, _ in retrying}
            settled = [r for r in rows if (r.sku, r.location) not in retry_keys]
            await conn.execute(
                SETTLE_SQL,
                connection_id,
                finished,
                *_columns([(r.sku, r.location, r.version, r.quantity) for r in accepted], 4),
                *_columns(
                    [(r.sku, r.location, r.version, attempts, not_before) for r, attempts, not_before in postponed], 5
                ),
                *_columns([_history_values(h) for h in history], len(HISTORY_COLUMNS)),
                *_columns([(r.sku, r.location, r.version) for r in settled], 3),
            )
            if unmapped:
                await conn.execute(
                    UNMAPPED_SQL,
                    connection_id,
                    finished,
                    *_columns([(r.sku, r.location, r.quantity) for r in unmapped], 3),
                )
            if to_send:
                failed_whole = failed_as_a_whole(
                    sent=len(to_send), accepted=len(accepted), retrying=len(retrying), refused=call_failed
                )
                CHANNEL_CALLS.labels(connection.channel_type, "failed" if failed_whole else "ok").inc()
                await self._track_health(conn, connection, state, failed_whole, outcomes, finished)
            return len(settled)

    def _postpone(
        self, retrying: list[tuple[_Pending, ItemOutcome]], now: datetime
    ) -> tuple[list[tuple[_Pending, int, datetime]], list[dict[str, Any]]]:
        """Only the items that failed transiently wait (backoff with jitter, never before Retry-After)."""
        soonest = None
        postponed = []
        for row, outcome in retrying:
            delay = retry_delay(row.attempts + 1, outcome.retry_after)
            soonest = delay if soonest is None else min(soonest, delay)
            postponed.append((row, row.attempts + 1, now + timedelta(seconds=delay)))
        log.warning(
            "channel call failed for %d items; retrying later",
            len(retrying),
            extra={"error": retrying[0][1].channel_response},
        )
        self.wake_later(min(soonest or 0.0, 60.0))
        history = [
            _history(row, "retrying", outcome.channel_response, now, row.attempts + 1) for row, outcome in retrying
        ]
        return postponed, history

    async def _track_health(
        self,
        conn: Any,
        connection: Connection,
        state: ConnectionHealth,
        failed_whole: bool,
        outcomes: dict[int, ItemOutcome],
        now: datetime,
    ) -> None:
        """Count calls failing as a whole; pause the connection at the threshold, resume on
        success (domain/connection_health.py decides)."""
        limits = connection.settings
        change = after_call(
            state,
            failed_whole=failed_whole,
            now=now,
            pause_after_failures=int(limits.get("pause_after_failures", self.settings.pause_after_failures)),
            pause_duration_s=float(limits.get("pause_duration_s", self.settings.pause_duration_s)),
            last_error=next(iter(outcomes.values())).channel_response if outcomes else "channel calls failing",
        )
        if not failed_whole:
            if change.after != state:
                await conn.execute(HEALTH_RESET_SQL, connection.connection_id)
                if change.resumed:
                    log.warning("connection resumed by itself", extra={"connection_id": str(connection.connection_id)})
                PAUSED.labels(str(connection.connection_id), connection.channel_type).set(0)
            return
        pause: tuple[datetime | None, str | None, datetime | None] = (None, None, None)
        if change.paused:
            pause = (change.after.paused_at, change.pause_reason, change.after.resume_at)
            PAUSED.labels(str(connection.connection_id), connection.channel_type).set(1)
            log.error(
                "connection paused: its channel keeps failing",
                extra={
                    "connection_id": str(connection.connection_id),
                    "channel_type": connection.channel_type,
                    "failures": change.after.consecutive_failures,
                    "error": change.pause_reason,
                },
            )
        await conn.execute(HEALTH_FAILED_SQL, connection.connection_id, change.after.consecutive_failures, *pause)

    def wake_later(self, delay: float) -> None:
        asyncio.get_running_loop().call_later(delay, self._scan.wake)


class UnusableConnection:
    """A connection whose stored credentials or settings no longer build its adapter: every
    call is a credentials error (health, pause), its quantities wait for a new connection."""

    batch_limit = 100

    def __init__(self, channel_type: str, problem: str) -> None:
        self.channel_type = channel_type
        self.problem = problem[:1000]

    def ready_in(self) -> float:
        return 0.0

    async def push(self, items: list[PushItem]) -> BatchResult:
        raise CredentialsError(f"the connection's stored credentials cannot be used: {self.problem}")


def _history(row: Any, status: str, response: str, finished: Any = None, attempts: int | None = None) -> dict[str, Any]:
    finished = finished or utcnow()
    window = (
        (finished - row.origin_received_at).total_seconds() * 1000
        if status == "accepted" and row.origin_received_at is not None
        else None
    )
    return {
        "merchant_id": row.merchant_id,
        "connection_id": row.connection_id,
        "sku": row.sku,
        "location": row.location,
        "quantity": row.quantity,
        "version": row.version,
        "stock_version": row.stock_version,
        "rule_ids": list(row.rule_ids),
        "causation_id": row.causation_id,
        "status": status,
        "attempts": attempts if attempts is not None else row.attempts + 1,
        "channel_response": response[:2000],
        "origin_received_at": row.origin_received_at,
        "finished_at": finished,
        "sync_window_ms": window,
        "reason": getattr(row, "reason", None),
    }
