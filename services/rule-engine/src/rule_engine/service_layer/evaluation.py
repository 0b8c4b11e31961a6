"""Use cases of the rule engine: project stock and connections, re-evaluate, emit changes.

Every trigger (a stock change, a rule change, a new connection) ends in `reevaluate`,
which computes the channel quantities of the SKUs and connections concerned and emits
`channel.quantity.v1` only where a quantity changed. It runs inside the transaction
that recorded the trigger, so the emitted events and the state agree.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from stocksync_common.contracts import ChannelQuantityChanged, ConnectionChanged, StockChanged
from stocksync_common.db import claim_events
from stocksync_common.outbox import add_to_outbox
from stocksync_common.topics import CONNECTIONS, STOCK_CHANGED

from rule_engine.adapters.tables import channel_quantities, connections, inbox, outbox, rules, stock
from rule_engine.domain.rules import Action, Condition, Rule, channel_quantity


def rule_from_row(row: Any) -> Rule:
    return Rule(
        rule_id=row.rule_id,
        position=row.position,
        condition=Condition(**row.condition),
        action=Action(**row.action),
        connection_ids=frozenset(row.connection_ids),
        skus=frozenset(row.skus),
        enabled=row.enabled,
    )


async def load_rules(conn: AsyncConnection, merchant_id: uuid.UUID) -> list[Rule]:
    rows = (await conn.execute(sa.select(rules).where(rules.c.merchant_id == merchant_id))).all()
    return [rule_from_row(row) for row in rows]


async def active_connections(conn: AsyncConnection, merchant_id: uuid.UUID) -> list[uuid.UUID]:
    rows = await conn.execute(
        sa.select(connections.c.connection_id).where(
            connections.c.merchant_id == merchant_id, connections.c.active.is_(True)
        )
    )
    return list(rows.scalars().all())


async def reevaluate(
    conn: AsyncConnection,
    merchant_id: uuid.UUID,
    *,
    skus: Sequence[tuple[str, str]] | None = None,
    connection_ids: Sequence[uuid.UUID] | None = None,
    causation_id: str | None = None,
) -> list[ChannelQuantityChanged]:
    """Recompute channel quantities of these SKUs (all if None) on these connections."""
    rule_list = await load_rules(conn, merchant_id)
    targets = list(connection_ids) if connection_ids is not None else await active_connections(conn, merchant_id)
    if not targets:
        return []
    query = sa.select(stock).where(stock.c.merchant_id == merchant_id)
    if skus is not None:
        if not skus:
            return []
        query = query.where(sa.tuple_(stock.c.sku, stock.c.location).in_(list(skus)))
    # Lock the projection rows so that a concurrent stock change of the same SKU waits.
    stock_rows = (await conn.execute(query.order_by(stock.c.sku, stock.c.location).with_for_update())).all()
    if not stock_rows:
        return []
    sku_keys = [(row.sku, row.location) for row in stock_rows]
    current: dict[tuple[uuid.UUID, str, str], Any] = {
        (row.connection_id, row.sku, row.location): row
        for row in (
            await conn.execute(
                sa.select(channel_quantities).where(
                    channel_quantities.c.connection_id.in_(targets),
                    sa.tuple_(channel_quantities.c.sku, channel_quantities.c.location).in_(sku_keys),
                )
            )
        ).all()
    }
    emitted: list[ChannelQuantityChanged] = []
    upserts: list[dict[str, Any]] = []
    for row in stock_rows:
        for connection_id in targets:
            decision = channel_quantity(rule_list, connection_id, row.sku, row.available)
            previous = current.get((connection_id, row.sku, row.location))
            if previous is not None and previous.quantity == decision.quantity:
                continue
            version = (previous.version if previous is not None else 0) + 1
            event = ChannelQuantityChanged(
                merchant_id=merchant_id,
                connection_id=connection_id,
                sku=row.sku,
                location=row.location,
                quantity=decision.quantity,
                version=version,
                stock_version=row.version,
                available=row.available,
                rule_ids=decision.rule_ids,
                causation_id=causation_id or row.causation_id,
                origin_received_at=row.origin_received_at if causation_id is None else None,
            )
            emitted.append(event)
            upserts.append({
                "connection_id": connection_id, "sku": row.sku, "location": row.location,
                "merchant_id": merchant_id, "quantity": decision.quantity, "version": version,
                "stock_version": row.version, "rule_ids": list(decision.rule_ids),
            })
    if upserts:
        stmt = pg.insert(channel_quantities).values(upserts)
        await conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[channel_quantities.c.connection_id, channel_quantities.c.sku,
                                channel_quantities.c.location],
                set_={c: stmt.excluded[c] for c in ("quantity", "version", "stock_version", "rule_ids")},
            )
        )
        await add_to_outbox(conn, outbox, emitted)
    return emitted


async def apply_stock_changes(engine: AsyncEngine, changes: Iterable[StockChanged]) -> int:
    """Project a consumer batch of stock changes; one transaction for the batch."""
    changes = list(changes)
    newest: dict[tuple[uuid.UUID, str, str], StockChanged] = {}
    for change in changes:
        key = (change.merchant_id, change.sku, change.location)
        if key not in newest or change.version > newest[key].version:
            newest[key] = change
    emitted = 0
    async with engine.begin() as conn:
        new_ids = await claim_events(conn, inbox, STOCK_CHANGED.name, (c.event_id for c in changes))
        moved: dict[uuid.UUID, list[tuple[str, str]]] = defaultdict(list)
        for key in sorted(newest, key=lambda k: (str(k[0]), k[1], k[2])):
            change = newest[key]
            if change.event_id not in new_ids:
                continue
            stmt = pg.insert(stock).values(
                merchant_id=change.merchant_id, sku=change.sku, location=change.location,
                available=change.available, version=change.version, causation_id=change.causation_id,
                origin_received_at=change.origin_received_at,
            )
            updated = await conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=[stock.c.merchant_id, stock.c.sku, stock.c.location],
                    set_={c: stmt.excluded[c] for c in ("available", "version", "causation_id",
                                                         "origin_received_at")},
                    # A version not newer than the one applied is dropped.
                    where=stock.c.version < stmt.excluded.version,
                ).returning(stock.c.sku)
            )
            if updated.first() is not None:
                moved[change.merchant_id].append((change.sku, change.location))
        for merchant_id, skus in moved.items():
            emitted += len(await reevaluate(conn, merchant_id, skus=skus))
    return emitted


async def apply_connection_changes(engine: AsyncEngine, changes: Sequence[ConnectionChanged]) -> int:
    emitted = 0
    async with engine.begin() as conn:
        new_ids = await claim_events(conn, inbox, CONNECTIONS.name, (c.event_id for c in changes))
        for change in changes:
            if change.event_id not in new_ids:
                continue
            values = {
                "merchant_id": change.merchant_id, "channel_type": change.channel_type,
                "name": change.name, "active": change.active, "updated_at": change.occurred_at,
            }
            stmt = pg.insert(connections).values(connection_id=change.connection_id, **values)
            await conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=[connections.c.connection_id], set_=values,
                    where=connections.c.updated_at <= stmt.excluded.updated_at,
                )
            )
            if change.active:
                # A new channel gets the current quantity of every SKU at once.
                emitted += len(await reevaluate(
                    conn, change.merchant_id, connection_ids=[change.connection_id],
                    causation_id=f"connection:{change.connection_id}",
                ))
    return emitted
