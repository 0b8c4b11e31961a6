"""Coalescing queue: the newest channel quantity per (connection, SKU) waits to be sent.

A newer version replaces an older one still pending; a version not newer than the one
the channel already accepted is dropped on arrival and again just before sending.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncEngine

from stocksync_common.contracts import ChannelQuantityChanged, utcnow
from stocksync_common.raw_connection import raw_connection, uuid_array_literal
from stocksync_common.topics import CHANNEL_QUANTITY
from stocksync_common.tracing import trace_context_of

from channel_publisher.adapters.tables import inbox, last_sent, pending_pushes
from channel_publisher.domain.versions import NEWER_VERSION_SQL, is_newer

# One statement per consumer batch on asyncpg (stocksync_common.raw_connection): claim
# the event ids, keep the newest quantity per key whose event is new and newer than what
# the channel accepted, and upsert it into the queue; returns the connections with work.
# "A newer version wins" is domain/versions.py's rule, NEWER_VERSION_SQL here.
ENQUEUE_SQL = f"""
WITH claimed AS (
    INSERT INTO {inbox.fullname} (event_id, topic)
    SELECT unnest($1::uuid[]), $2::text
    ON CONFLICT (event_id) DO NOTHING
    RETURNING event_id
), queued AS (
    SELECT c.*
    FROM unnest($3::uuid[], $4::uuid[], $5::text[], $6::text[], $7::uuid[], $8::bigint[], $9::bigint[],
                $10::bigint[], $11::text[], $12::text[], $13::timestamptz[], $15::text[], $16::text[])
        WITH ORDINALITY
        AS c(event_id, connection_id, sku, location, merchant_id, quantity, version, stock_version, rule_ids,
             causation_id, origin_received_at, trace_context, reason, n)
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
           causation_id, origin_received_at, $14::timestamptz, 0, NULL, trace_context, reason
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


async def enqueue_channel_quantities(engine: AsyncEngine, changes: Sequence[ChannelQuantityChanged]) -> set[uuid.UUID]:
    """Record a consumer batch; return the connections that have new work."""
    if not changes:
        return set()
    newest: dict[tuple[uuid.UUID, str, str], ChannelQuantityChanged] = {}
    for change in changes:
        key = (change.connection_id, change.sku, change.location)
        if key not in newest or is_newer(change.version, newest[key].version):
            newest[key] = change
    # Upserted in key order: the lock order of the queue's rows.
    candidates = [newest[key] for key in sorted(newest, key=lambda k: (str(k[0]), k[1], k[2]))]
    async with raw_connection(engine) as conn:
        rows = await conn.fetch(
            ENQUEUE_SQL,
            list(dict.fromkeys(c.event_id for c in changes)),
            CHANNEL_QUANTITY.name,
            [c.event_id for c in candidates],
            [c.connection_id for c in candidates],
            [c.sku for c in candidates],
            [c.location for c in candidates],
            [c.merchant_id for c in candidates],
            [c.quantity for c in candidates],
            [c.version for c in candidates],
            [c.stock_version for c in candidates],
            [uuid_array_literal(c.rule_ids) for c in candidates],
            [c.causation_id for c in candidates],
            [c.origin_received_at for c in candidates],
            utcnow(),
            [trace_context_of(c) for c in candidates],
            ["\n".join(c.reasons) if c.reasons else None for c in candidates],
        )
    return {row["connection_id"] for row in rows}
