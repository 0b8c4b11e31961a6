"""Coalescing queue: the newest channel quantity per (connection, SKU) waits to be sent.

A newer version replaces an older one still pending; a version not newer than the one
the channel already accepted is dropped on arrival and again just before sending.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncEngine

from stocksync_common.contracts import ChannelQuantityChanged, utcnow
from stocksync_common.db import claim_events
from stocksync_common.topics import CHANNEL_QUANTITY

from channel_publisher.adapters.tables import inbox, last_sent, pending_pushes


async def enqueue_channel_quantities(engine: AsyncEngine, changes: Sequence[ChannelQuantityChanged]) -> set[uuid.UUID]:
    """Record a consumer batch; return the connections that have new work."""
    newest: dict[tuple[uuid.UUID, str, str], ChannelQuantityChanged] = {}
    for change in changes:
        key = (change.connection_id, change.sku, change.location)
        if key not in newest or change.version > newest[key].version:
            newest[key] = change
    touched: set[uuid.UUID] = set()
    now = utcnow()
    async with engine.begin() as conn:
        new_ids = await claim_events(conn, inbox, CHANNEL_QUANTITY.name, (c.event_id for c in changes))
        for key in sorted(newest, key=lambda k: (str(k[0]), k[1], k[2])):
            change = newest[key]
            if change.event_id not in new_ids:
                continue
            sent_version = (
                await conn.execute(
                    sa.select(last_sent.c.version).where(
                        last_sent.c.connection_id == change.connection_id,
                        last_sent.c.sku == change.sku,
                        last_sent.c.location == change.location,
                    )
                )
            ).scalar_one_or_none()
            if sent_version is not None and sent_version >= change.version:
                continue
            values = {
                "merchant_id": change.merchant_id,
                "quantity": change.quantity,
                "version": change.version,
                "stock_version": change.stock_version,
                "rule_ids": list(change.rule_ids),
                "causation_id": change.causation_id,
                "origin_received_at": change.origin_received_at,
                "enqueued_at": now,
                "attempts": 0,
                "not_before": None,
            }
            stmt = pg.insert(pending_pushes).values(
                connection_id=change.connection_id, sku=change.sku, location=change.location, **values
            )
            await conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=[pending_pushes.c.connection_id, pending_pushes.c.sku, pending_pushes.c.location],
                    set_=values,
                    where=pending_pushes.c.version < stmt.excluded.version,
                )
            )
            touched.add(change.connection_id)
    return touched
