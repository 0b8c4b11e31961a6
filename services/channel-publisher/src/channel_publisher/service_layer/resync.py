"""Resync a connection: send every listed SKU's current quantity to the channel again.

For an operator after the channel lost or changed what it was sent (a restore on the
marketplace's side, a hand edit that drift found). The current quantity of a SKU on a
channel is the newest one the rule-engine decided for it, which the publisher holds: a
pending push (newer than anything sent; it will be sent anyway) or else the last quantity
the channel accepted (`last_sent`). A resync queues the latter once more, marked
`resync` so that the drain sends it although the channel already accepted that version;
a newer quantity arriving meanwhile replaces it, as any pending push.

Idempotent: a SKU already waiting (by an earlier resync or a newer quantity) is not
queued twice, so repeating the call before the drain has sent everything queues nothing
more. One transaction; the drain lock is not needed because rows are only inserted
where none is pending.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from stocksync_common.contracts import utcnow

from channel_publisher.adapters.tables import connections, last_sent, listings, pending_pushes, pushes

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


@dataclass(frozen=True)
class Resync:
    resync_id: uuid.UUID
    queued: int
    already_pending: int
    without_quantity: int


async def resync_connection(engine: AsyncEngine, merchant_id: uuid.UUID, connection_id: uuid.UUID) -> Resync | None:
    """Queue every listed SKU's current quantity; None when the merchant has no such connection."""
    resync_id = uuid.uuid4()
    async with engine.begin() as conn:
        owned = (
            await conn.execute(
                sa.select(connections.c.connection_id)
                .where(connections.c.connection_id == connection_id, connections.c.merchant_id == merchant_id)
                .with_for_update()
            )
        ).one_or_none()
        if owned is None:
            return None
        row = (
            await conn.execute(
                RESYNC_SQL,
                {
                    "connection_id": connection_id,
                    "merchant_id": merchant_id,
                    "causation_id": f"resync:{resync_id}",
                    "now": utcnow(),
                },
            )
        ).one()
    return Resync(resync_id, row.queued, row.already_pending, row.listed - row.queued - row.already_pending)
