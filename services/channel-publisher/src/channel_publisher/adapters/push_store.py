"""The push queue's store: every statement on the pending pushes, what the channel last
accepted, the push history and the unmapped SKUs.

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
  counts, and the connection's health through the connection store's statements) is
  written in the drain's transaction: a crash mid-call rolls all of it back and the same
  absolute quantity is sent again, which is harmless.

"Paused unless resume_at has passed" and "a newer version wins" are the domain's rules
(domain/connection_health.py, domain/versions.py), stated here with their SQL fragments.

Off the hot path (the API's lists, the health report, a resync, a drift check's reads),
SQLAlchemy Core on the caller's connection, in its transaction: the functions at the end.
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
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from stocksync_common.bounds import INT64_MAX
from stocksync_common.contracts import ChannelQuantityChanged, utcnow
from stocksync_common.raw_connection import raw_connection, raw_transaction, uuid_array_literal
from stocksync_common.topics import CHANNEL_QUANTITY
from stocksync_common.tracing import trace_context_of

from channel_publisher.adapters import connection_store
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
        await connection_store.reset_health(self._conn, self.connection_id)

    async def record_failure(self, change: HealthChange) -> None:
        await connection_store.record_failure(self._conn, self.connection_id, change)


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


# Off the hot path: SQLAlchemy Core on the caller's connection.


def same_key(left: sa.FromClause, right: sa.FromClause) -> sa.ColumnElement[bool]:
    """The rows of two tables keyed by (connection_id, sku, location) are about the same
    SKU at the same location on the same channel: a pending push, a sent quantity, a
    pushed one, a listing, a display probe."""
    return sa.and_(*(left.c[name] == right.c[name] for name in ("connection_id", "sku", "location")))


async def make_due_now(conn: AsyncConnection, connection_id: uuid.UUID) -> None:
    """Every pending row of the connection may be sent at once (the merchant resumed it)."""
    await conn.execute(
        sa.update(pending_pushes).where(pending_pushes.c.connection_id == connection_id).values(not_before=None)
    )


async def pending_of(conn: AsyncConnection, connection_id: uuid.UUID, limit: int) -> Sequence[sa.RowMapping]:
    """The connection's waiting quantities (the newest per key), oldest first."""
    query = (
        sa.select(pending_pushes)
        .where(pending_pushes.c.connection_id == connection_id)
        .order_by(pending_pushes.c.enqueued_at, pending_pushes.c.sku)
        .limit(limit)
    )
    return (await conn.execute(query)).mappings().all()


async def unmapped_of(
    conn: AsyncConnection, connection_id: uuid.UUID, after_sku: str, limit: int
) -> Sequence[sa.RowMapping]:
    """The connection's SKUs without a listing, by SKU and location, after `after_sku`."""
    query = (
        sa.select(unmapped_skus)
        .where(unmapped_skus.c.connection_id == connection_id, unmapped_skus.c.sku > after_sku)
        .order_by(unmapped_skus.c.sku, unmapped_skus.c.location)
        .limit(limit)
    )
    return (await conn.execute(query)).mappings().all()


async def published_quantities(
    conn: AsyncConnection, merchant_id: uuid.UUID, skus: Iterable[str]
) -> Sequence[sa.Row[Any]]:
    """What each of the merchant's channels last accepted for these SKUs, with the rules of
    the accepted push that sent it, by SKU, connection and location."""
    decided_by = (
        sa.select(pushes.c.rule_ids)
        .where(same_key(pushes, last_sent), pushes.c.status == "accepted")
        .order_by(pushes.c.push_id.desc())
        .limit(1)
        .lateral()
    )
    query = (
        sa.select(last_sent, decided_by.c.rule_ids)
        .select_from(
            last_sent.join(connections, connections.c.connection_id == last_sent.c.connection_id).outerjoin(
                decided_by, sa.true()
            )
        )
        .where(connections.c.merchant_id == merchant_id, last_sent.c.sku.in_(sorted(set(skus))))
        .order_by(last_sent.c.sku, last_sent.c.connection_id, last_sent.c.location)
    )
    return (await conn.execute(query)).all()


# Per listed SKU: pending already, or queued now from what the channel last accepted
# (with the stock version and rules of the push that sent it), or no quantity yet.
RESYNC_SQL = sa.text(
    f"""
WITH listed AS (
    SELECT l.sku, l.location,
           EXISTS (SELECT FROM {pending_pushes.fullname} p
                   WHERE p.connection_id = l.connection_id AND p.sku = l.sku AND p.location = l.location) AS pending
    FROM {listings.fullname} l
    WHERE l.connection_id = :connection_id
), queued AS (
    INSERT INTO {pending_pushes.fullname}
        (connection_id, sku, location, merchant_id, quantity, version, stock_version, rule_ids, causation_id,
         origin_received_at, enqueued_at, attempts, not_before, resync, reason)
    SELECT s.connection_id, s.sku, s.location, :merchant_id, s.quantity, s.version,
           coalesce(h.stock_version, 0), coalesce(h.rule_ids, '{{}}'::uuid[]), :causation_id, NULL, :now, 0, NULL, true,
           h.reason
    FROM listed
    JOIN {last_sent.fullname} s ON s.connection_id = :connection_id AND s.sku = listed.sku
                                AND s.location = listed.location
    LEFT JOIN LATERAL (
        SELECT stock_version, rule_ids, reason FROM {pushes.fullname} h
        WHERE h.connection_id = s.connection_id AND h.sku = s.sku AND h.location = s.location
          AND h.version = s.version AND h.status = 'accepted'
        ORDER BY h.push_id DESC LIMIT 1
    ) h ON true
    WHERE NOT listed.pending
    ON CONFLICT (connection_id, sku, location) DO NOTHING
    RETURNING 1
)
SELECT (SELECT count(*) FROM queued) AS queued,
       (SELECT count(*) FROM listed WHERE pending) AS already_pending,
       (SELECT count(*) FROM listed) AS listed
"""
)


async def queue_resync(
    conn: AsyncConnection, merchant_id: uuid.UUID, connection_id: uuid.UUID, causation_id: str, now: datetime
) -> sa.Row[Any]:
    """Queue, marked `resync`, what the channel last accepted for each listed SKU that has
    nothing pending; counts `queued`, `already_pending` and `listed`."""
    params = {"connection_id": connection_id, "merchant_id": merchant_id, "causation_id": causation_id, "now": now}
    return (await conn.execute(RESYNC_SQL, params)).one()


@dataclass(frozen=True)
class RecentPushes:
    """A connection's pushes finished since a moment, and its queue now."""

    counts: dict[str, int]  # by status
    sync_window_ms: tuple[float | None, float | None, float | None]  # p50, p95, max of the accepted
    last_error: sa.Row[Any] | None  # the newest rejected or retrying push: sku, status, channel_response, finished_at
    pending: int
    oldest_pending_since: datetime | None
    unmapped_skus: int


async def recent_pushes(conn: AsyncConnection, connection_id: uuid.UUID, since: datetime) -> RecentPushes:
    recent = sa.and_(pushes.c.connection_id == connection_id, pushes.c.finished_at >= since)
    counts: dict[str, int] = dict(
        (await conn.execute(sa.select(pushes.c.status, sa.func.count()).where(recent).group_by(pushes.c.status))).all()
    )
    window = (
        await conn.execute(
            sa.select(
                sa.func.percentile_cont(0.5).within_group(pushes.c.sync_window_ms),
                sa.func.percentile_cont(0.95).within_group(pushes.c.sync_window_ms),
                sa.func.max(pushes.c.sync_window_ms),
            ).where(recent, pushes.c.status == "accepted", pushes.c.sync_window_ms.is_not(None))
        )
    ).one()
    # The newest of each error status from ix_pushes_connection_problems, then the newer
    # of the two: one `status IN (...)` made the planner walk the whole history backwards.
    newest = [
        sa.select(pushes.c.push_id, pushes.c.sku, pushes.c.status, pushes.c.channel_response, pushes.c.finished_at)
        .where(pushes.c.connection_id == connection_id, pushes.c.status == status)
        .order_by(pushes.c.push_id.desc())
        .limit(1)
        .subquery()
        .select()
        for status in ("rejected", "retrying")
    ]
    last_error = (await conn.execute(sa.union_all(*newest).order_by(sa.text("push_id DESC")).limit(1))).one_or_none()
    pending = (
        await conn.execute(
            sa.select(sa.func.count(), sa.func.min(pending_pushes.c.enqueued_at)).where(
                pending_pushes.c.connection_id == connection_id
            )
        )
    ).one()
    unmapped = (
        await conn.execute(
            sa.select(sa.func.count()).select_from(unmapped_skus).where(unmapped_skus.c.connection_id == connection_id)
        )
    ).scalar_one()
    return RecentPushes(counts, (window[0], window[1], window[2]), last_error, pending[0], pending[1], unmapped)


async def sent_and_listed(
    conn: AsyncConnection, connection_id: uuid.UUID, sent_before: datetime | None
) -> Sequence[sa.Row[Any]]:
    """What the channel last accepted for each listed SKU with nothing pending (sent at or
    before `sent_before`, if given), with the listing's `external`, by SKU."""
    query = (
        sa.select(last_sent, listings.c.external)
        .join(listings, same_key(listings, last_sent))
        .where(
            last_sent.c.connection_id == connection_id,
            sa.true() if sent_before is None else last_sent.c.sent_at <= sent_before,
            ~sa.exists().where(same_key(pending_pushes, last_sent)),
        )
        .order_by(last_sent.c.sku)
    )
    return (await conn.execute(query)).all()


async def still_last_sent(
    conn: AsyncConnection, connection_id: uuid.UUID, sku: str, location: str, version: int
) -> bool:
    """Whether `version` is still the last one the channel accepted for the key."""
    count = (
        await conn.execute(
            sa.select(sa.func.count())
            .select_from(last_sent)
            .where(
                last_sent.c.connection_id == connection_id,
                last_sent.c.sku == sku,
                last_sent.c.location == location,
                last_sent.c.version == version,
            )
        )
    ).scalar_one()
    return bool(count)


@dataclass(frozen=True)
class PushFilter:
    connection_id: uuid.UUID | None = None
    sku: str | None = None
    status: str | None = None
    since: datetime | None = None  # finished at or after
    until: datetime | None = None  # finished before
    after: int = 0  # push_id greater than
    before: int | None = None  # push_id smaller than


async def history(
    conn: AsyncConnection, merchant_id: uuid.UUID, where: PushFilter, *, newest_first: bool, limit: int
) -> Sequence[sa.Row[Any]]:
    """The merchant's pushes that `where` selects, in push_id order, at most `limit`."""
    query = sa.select(pushes).where(pushes.c.merchant_id == merchant_id)
    order_by: list[sa.ColumnElement[Any]] = [pushes.c.push_id]
    if where.connection_id is not None and where.sku is None and where.status in (None, "accepted"):
        # The connection's pushes straight from ix_pushes_connection. Bounded by row
        # comparisons rather than `connection_id = ...`: with an equality the planner may walk
        # the primary key newest first and drop every other connection's row on the way (all
        # of a busy channel's history, to find a quiet channel's last push: 150,000 rows read
        # for one, 20 to 45 ms instead of 0.3).
        key = sa.tuple_(pushes.c.connection_id, pushes.c.push_id)
        query = query.where(
            key > sa.tuple_(where.connection_id, where.after),
            key < sa.tuple_(where.connection_id, where.before or INT64_MAX),
        )
        order_by = [pushes.c.connection_id, pushes.c.push_id]
    else:
        query = query.where(pushes.c.push_id > where.after)
        if where.before is not None:
            query = query.where(pushes.c.push_id < where.before)
        if where.connection_id is not None:
            query = query.where(pushes.c.connection_id == where.connection_id)
    if where.sku is not None:
        query = query.where(pushes.c.sku == where.sku)
    if where.status is not None:
        query = query.where(pushes.c.status == where.status)
    if where.since is not None:
        query = query.where(pushes.c.finished_at >= where.since)
    if where.until is not None:
        query = query.where(pushes.c.finished_at < where.until)
    ordering = [column.desc() for column in order_by] if newest_first else order_by
    return (await conn.execute(query.order_by(*ordering).limit(limit))).all()
