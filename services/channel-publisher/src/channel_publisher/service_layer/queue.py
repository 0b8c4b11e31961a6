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
    now = utcnow()
    async with engine.begin() as conn:
        new_ids = await claim_events(conn, inbox, CHANNEL_QUANTITY.name, (c.event_id for c in changes))
        fresh = [
            newest[key]
            for key in sorted(newest, key=lambda k: (str(k[0]), k[1], k[2]))
            if newest[key].event_id in new_ids
        ]
        if not fresh:
            return set()
        # One statement for the batch, not one per SKU: what the channels already accepted.
        sent = {
            (row.connection_id, row.sku, row.location): row.version
            for row in await conn.execute(
                sa.select(last_sent.c.connection_id, last_sent.c.sku, last_sent.c.location, last_sent.c.version).where(
                    sa.tuple_(last_sent.c.connection_id, last_sent.c.sku, last_sent.c.location).in_(
                        [(c.connection_id, c.sku, c.location) for c in fresh]
                    )
                )
            )
        }
        queued = [c for c in fresh if sent.get((c.connection_id, c.sku, c.location), 0) < c.version]
        rows = [
            {
                "connection_id": c.connection_id,
                "sku": c.sku,
                "location": c.location,
                "merchant_id": c.merchant_id,
                "quantity": c.quantity,
                "version": c.version,
                "stock_version": c.stock_version,
                "rule_ids": list(c.rule_ids),
                "causation_id": c.causation_id,
                "origin_received_at": c.origin_received_at,
                "enqueued_at": now,
                "attempts": 0,
                "not_before": None,
            }
            for c in queued
        ]
        if not rows:
            return set()
        stmt = pg.insert(pending_pushes).values(rows)
        updated = [col for col in rows[0] if col not in ("connection_id", "sku", "location")]
        await conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[pending_pushes.c.connection_id, pending_pushes.c.sku, pending_pushes.c.location],
                set_={col: stmt.excluded[col] for col in updated},
                # A newer version replaces an older one; an older one arriving late does not.
                where=pending_pushes.c.version < stmt.excluded.version,
            )
        )
    return {c.connection_id for c in queued}
