"""The push queue's store: every statement on the pending pushes, what the channel last
accepted, the push history, the unmapped SKUs and a connection's call health.

Hand-written SQL on asyncpg (stocksync_common.raw_connection): the consumer enqueues a
batch in one statement, a drain takes its rows in one and settles them in one, where
SQLAlchemy took seven. Rows travel as one array parameter per named column (`Columns`),
so a statement and its values are written from the same names.

Lock protocol of a drain (`draining`):
- The drain holds its connection's drain lock, a transaction-scoped advisory lock
  (`DRAIN_LOCK_CLASS`, the connection id's hash) taken by TAKE_SQL itself, from the take
  through the channel call to the settlement. So two publisher instances never send for
  one connection at once, and one SKU's quantities reach the channel in order. A lock
  not obtained takes no row: another instance is draining the connection.
- The pending rows themselves are not locked during the call: the consumer upserts newer
  quantities into them meanwhile (ENQUEUE_SQL, in key order, the rows' lock order)
  instead of waiting for the channel's answer. Settling deletes or postpones a row only
  at the version that was sent, so a newer version that arrived during the call stays
  pending and is sent next.
- Everything a call settles (`last_sent`, postponements, history, deletions, unmapped
  counts, the connection's health) is written in the drain's transaction: a crash
  mid-call rolls all of it back and the same absolute quantity is sent again, which is
  harmless.

"Paused unless resume_at has passed" and "a newer version wins" are the domain's rules
(domain/connection_health.py, domain/versions.py), stated here with their SQL fragments.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import asyncpg
import orjson
from sqlalchemy.ext.asyncio import AsyncEngine

from stocksync_common.contracts import ChannelQuantityChanged, utcnow
from stocksync_common.raw_connection import raw_connection, raw_transaction, uuid_array_literal
from stocksync_common.topics import CHANNEL_QUANTITY
from stocksync_common.tracing import trace_context_of

from channel_publisher.adapters.tables import (
    connections,
    inbox,
    last_sent,
    listings,
    pending_pushes,
    pushes,
    unmapped_skus,
)
from channel_publisher.domain.connection_health import ACCEPTS_PUSHES_SQL, ConnectionHealth, HealthChange
from channel_publisher.domain.settlement import HistoryEntry, PendingPush, Settlement
from channel_publisher.domain.versions import NEWER_VERSION_SQL, is_newer


@dataclass(frozen=True)
class Columns:
    """Rows passed to `unnest` as one array parameter per named column (asyncpg takes no
    table parameter): `unnest(first)` is the SQL, `arrays(rows)` the values, by name."""

    columns: tuple[tuple[str, str], ...]  # (name, PostgreSQL type)

    @classmethod
    def of(cls, **types: str) -> Columns:
        return cls(tuple(types.items()))

    @property
    def names(self) -> str:
        return ", ".join(name for name, _ in self.columns)

    def unnest(self, first: int) -> str:
        """`unnest($first::type[], ...)`; the next statement parameter is `first + len(columns)`."""
        return "unnest(" + ", ".join(f"${first + i}::{kind}[]" for i, (_, kind) in enumerate(self.columns)) + ")"

    def select(self, alias: str, **casts: str) -> str:
        """The columns of `unnest(...) AS alias(...)`, some cast (`rule_ids="uuid[]"`)."""
        return ", ".join(
            f"{alias}.{name}::{casts[name]}" if name in casts else f"{alias}.{name}" for name, _ in self.columns
        )

    def arrays(self, rows: Iterable[Mapping[str, Any]]) -> list[list[Any]]:
        rows = list(rows)
        return [[row[name] for row in rows] for name, _ in self.columns]


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

ACCEPTED = Columns.of(sku="text", location="text", version="bigint", quantity="bigint")
POSTPONED = Columns.of(sku="text", location="text", version="bigint", attempts="int", not_before="timestamptz")
_HISTORY_TYPES = {
    "merchant_id": "uuid",
    "connection_id": "uuid",
    "sku": "text",
    "location": "text",
    "quantity": "bigint",
    "version": "bigint",
    "stock_version": "bigint",
    "rule_ids": "text",  # uuid_array_literal, cast back below
    "causation_id": "text",
    "status": "text",
    "attempts": "int",
    "channel_response": "text",
    "origin_received_at": "timestamptz",
    "finished_at": "timestamptz",
    "sync_window_ms": "float8",
    "reason": "text",
}
HISTORY = Columns(tuple((f.name, _HISTORY_TYPES[f.name]) for f in fields(HistoryEntry)))
SETTLED = Columns.of(sku="text", location="text", version="bigint")
# SETTLE_SQL's parameters: the connection, when the call finished, then each set of rows.
_ACCEPTED_AT = 3
_POSTPONED_AT = _ACCEPTED_AT + len(ACCEPTED.columns)
_HISTORY_AT = _POSTPONED_AT + len(POSTPONED.columns)
_SETTLED_AT = _HISTORY_AT + len(HISTORY.columns)

# What a call settled: `last_sent` moves forward for what was accepted (a newer version
# wins), transient failures wait, the history is written, and every settled row leaves
# the queue. $1 the connection, $2 when the call finished.
SETTLE_SQL = f"""
WITH sent AS (
    INSERT INTO {last_sent.fullname} AS s (connection_id, sku, location, version, quantity, sent_at)
    SELECT $1::uuid, a.sku, a.location, a.version, a.quantity, $2::timestamptz
    FROM {ACCEPTED.unnest(_ACCEPTED_AT)} AS a({ACCEPTED.names})
    ON CONFLICT (connection_id, sku, location) DO UPDATE SET
        version = excluded.version, quantity = excluded.quantity, sent_at = excluded.sent_at
    WHERE {NEWER_VERSION_SQL.format(version="excluded.version", than="s.version")}
), postponed AS (
    UPDATE {pending_pushes.fullname} AS p SET attempts = r.attempts, not_before = r.not_before
    FROM {POSTPONED.unnest(_POSTPONED_AT)} AS r({POSTPONED.names})
    WHERE p.connection_id = $1::uuid AND p.sku = r.sku AND p.location = r.location AND p.version = r.version
), history AS (
    INSERT INTO {pushes.fullname} ({HISTORY.names})
    SELECT {HISTORY.select("h", rule_ids="uuid[]")}
    FROM {HISTORY.unnest(_HISTORY_AT)} WITH ORDINALITY AS h({HISTORY.names}, n)
    ORDER BY h.n
), settled AS (
    DELETE FROM {pending_pushes.fullname} AS p
    USING {SETTLED.unnest(_SETTLED_AT)} AS d({SETTLED.names})
    WHERE p.connection_id = $1::uuid AND p.sku = d.sku AND p.location = d.location AND p.version = d.version
)
SELECT 1
"""

# SKUs the connection does not list: counted per SKU, not a history row per change.
UNMAPPED = Columns.of(sku="text", location="text", quantity="bigint")
UNMAPPED_SQL = f"""
INSERT INTO {unmapped_skus.fullname} AS u
    (connection_id, sku, location, changes, first_seen_at, last_seen_at, last_quantity)
SELECT $1::uuid, a.sku, a.location, 1, $2::timestamptz, $2::timestamptz, a.quantity
FROM {UNMAPPED.unnest(3)} AS a({UNMAPPED.names})
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

QUEUED = Columns.of(
    event_id="uuid",
    connection_id="uuid",
    sku="text",
    location="text",
    merchant_id="uuid",
    quantity="bigint",
    version="bigint",
    stock_version="bigint",
    rule_ids="text",  # uuid_array_literal, cast back below
    causation_id="text",
    origin_received_at="timestamptz",
    trace_context="text",
    reason="text",
)

# One statement per consumer batch: claim the event ids ($1, of topic $2), keep the
# newest quantity per key whose event is new and newer than what the channel accepted,
# and upsert it into the queue (enqueued at $3); returns the connections with work.
ENQUEUE_SQL = f"""
WITH claimed AS (
    INSERT INTO {inbox.fullname} (event_id, topic)
    SELECT unnest($1::uuid[]), $2::text
    ON CONFLICT (event_id) DO NOTHING
    RETURNING event_id
), queued AS (
    SELECT c.*
    FROM {QUEUED.unnest(4)} WITH ORDINALITY AS c({QUEUED.names}, n)
    WHERE c.event_id IN (SELECT event_id FROM claimed)
      AND NOT EXISTS (
          SELECT FROM {last_sent.fullname} s
          WHERE s.connection_id = c.connection_id AND s.sku = c.sku AND s.location = c.location
            AND NOT {NEWER_VERSION_SQL.format(version="c.version", than="s.version")}
      )
), upserted AS (
    INSERT INTO {pending_pushes.fullname} AS p
        (connection_id, sku, location, merchant_id, quantity, version, stock_version, rule_ids, causation_id,
         origin_received_at, enqueued_at, attempts, not_before, trace_context, reason)
    SELECT connection_id, sku, location, merchant_id, quantity, version, stock_version, rule_ids::uuid[],
           causation_id, origin_received_at, $3::timestamptz, 0, NULL, trace_context, reason
    FROM queued
    ORDER BY n
    ON CONFLICT (connection_id, sku, location) DO UPDATE SET
        merchant_id = excluded.merchant_id, quantity = excluded.quantity, version = excluded.version,
        stock_version = excluded.stock_version, rule_ids = excluded.rule_ids, causation_id = excluded.causation_id,
        origin_received_at = excluded.origin_received_at, enqueued_at = excluded.enqueued_at,
        attempts = excluded.attempts, not_before = excluded.not_before, trace_context = excluded.trace_context,
        reason = excluded.reason
    -- A newer version replaces an older one; an older one arriving late does not.
    WHERE {NEWER_VERSION_SQL.format(version="excluded.version", than="p.version")}
)
SELECT DISTINCT connection_id FROM queued
"""


@dataclass(frozen=True)
class Backlog:
    """A connection's pending rows: how many, and whether any may be sent now."""

    connection_id: uuid.UUID
    pending: int
    due: bool


class PushStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def enqueue(self, changes: Sequence[ChannelQuantityChanged]) -> set[uuid.UUID]:
        """Record a consumer batch (coalesced: the newest quantity per key); return the
        connections that have new work."""
        if not changes:
            return set()
        newest: dict[tuple[uuid.UUID, str, str], ChannelQuantityChanged] = {}
        for change in changes:
            key = (change.connection_id, change.sku, change.location)
            if key not in newest or is_newer(change.version, newest[key].version):
                newest[key] = change
        # Upserted in key order: the lock order of the queue's rows.
        candidates = [newest[key] for key in sorted(newest, key=lambda k: (str(k[0]), k[1], k[2]))]
        queued = (
            {
                "event_id": c.event_id,
                "connection_id": c.connection_id,
                "sku": c.sku,
                "location": c.location,
                "merchant_id": c.merchant_id,
                "quantity": c.quantity,
                "version": c.version,
                "stock_version": c.stock_version,
                "rule_ids": uuid_array_literal(c.rule_ids),
                "causation_id": c.causation_id,
                "origin_received_at": c.origin_received_at,
                "trace_context": trace_context_of(c),
                "reason": "\n".join(c.reasons) if c.reasons else None,
            }
            for c in candidates
        )
        async with raw_connection(self.engine) as conn:
            rows = await conn.fetch(
                ENQUEUE_SQL,
                list(dict.fromkeys(c.event_id for c in changes)),
                CHANNEL_QUANTITY.name,
                utcnow(),
                *QUEUED.arrays(queued),
            )
        return {row["connection_id"] for row in rows}

    async def backlog(self, now: datetime) -> list[Backlog]:
        async with raw_connection(self.engine) as conn:
            rows = await conn.fetch(DUE_SQL, now)
        return [Backlog(row["connection_id"], row["pending"], row["due"]) for row in rows]

    @asynccontextmanager
    async def draining(self, connection_id: uuid.UUID) -> AsyncIterator[Drain]:
        """One drain of the connection, in one transaction (see the lock protocol above):
        committed when the block ends, rolled back if it raises."""
        async with raw_transaction(self.engine) as conn:
            yield Drain(conn, connection_id)


class Drain:
    """One drain's transaction; `take` obtains the drain lock, the rest needs it."""

    def __init__(self, conn: asyncpg.Connection, connection_id: uuid.UUID) -> None:
        self._conn = conn
        self.connection_id = connection_id

    async def take(self, now: datetime, limit: int) -> tuple[ConnectionHealth, list[PendingPush]] | None:
        """The connection's health and up to `limit` of its due rows (none while it is
        paused); None when another instance holds the drain lock or the connection is gone."""
        taken = await self._conn.fetch(TAKE_SQL, self.connection_id, now, limit)
        if not taken:
            return None
        health = ConnectionHealth(taken[0]["paused_at"], taken[0]["resume_at"], taken[0]["consecutive_failures"])
        return health, [_pending(record) for record in taken if record["sku"] is not None]

    async def settle(self, settlement: Settlement, finished: datetime) -> None:
        await self._conn.execute(
            SETTLE_SQL,
            self.connection_id,
            finished,
            *ACCEPTED.arrays(vars(push) for push in settlement.accepted),
            *POSTPONED.arrays(
                {
                    "sku": p.push.sku,
                    "location": p.push.location,
                    "version": p.push.version,
                    "attempts": p.attempts,
                    "not_before": p.not_before,
                }
                for p in settlement.postponed
            ),
            *HISTORY.arrays(vars(h) | {"rule_ids": uuid_array_literal(h.rule_ids)} for h in settlement.history),
            *SETTLED.arrays(vars(push) for push in settlement.settled),
        )
        if settlement.unmapped:
            await self._conn.execute(
                UNMAPPED_SQL, self.connection_id, finished, *UNMAPPED.arrays(vars(p) for p in settlement.unmapped)
            )

    async def reset_health(self) -> None:
        await self._conn.execute(HEALTH_RESET_SQL, self.connection_id)

    async def record_failure(self, change: HealthChange) -> None:
        """A call failed as a whole: the failures in a row, and the pause if it paused."""
        pause = (change.after.paused_at, change.pause_reason, change.after.resume_at) if change.paused else (None,) * 3
        await self._conn.execute(HEALTH_FAILED_SQL, self.connection_id, change.after.consecutive_failures, *pause)


def _pending(record: Mapping[str, Any]) -> PendingPush:
    external = record["external"]
    return PendingPush(
        connection_id=record["connection_id"],
        sku=record["sku"],
        location=record["location"],
        merchant_id=record["merchant_id"],
        quantity=record["quantity"],
        version=record["version"],
        stock_version=record["stock_version"],
        rule_ids=list(record["rule_ids"]),
        causation_id=record["causation_id"],
        origin_received_at=record["origin_received_at"],
        attempts=record["attempts"],
        resync=record["resync"],
        sent_version=record["sent_version"],
        external=None if external is None else orjson.loads(external),
        trace_context=record["trace_context"],
        reason=record["reason"],
    )
