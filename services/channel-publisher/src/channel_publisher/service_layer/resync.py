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

from sqlalchemy.ext.asyncio import AsyncEngine

from stocksync_common.contracts import utcnow

from channel_publisher.adapters import connection_store, push_store


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
        if not await connection_store.is_owned(conn, merchant_id, connection_id, lock=True):
            return None
        row = await push_store.queue_resync(conn, merchant_id, connection_id, f"resync:{resync_id}", utcnow())
    return Resync(resync_id, row.queued, row.already_pending, row.listed - row.queued - row.already_pending)
