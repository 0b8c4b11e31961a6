"""Use cases of the rule engine: project stock, products and connections, re-evaluate, emit changes.

Every trigger (a stock change, a product's attributes, a rule change, a schedule
boundary, a new connection) ends in `reevaluate`, which computes the channel quantities
of the SKUs and connections concerned and emits `channel.quantity.v1` only where a
quantity changed. It runs inside the transaction that recorded the trigger, so the
emitted events and the state agree.

Lock order, everywhere: rule rows (rule changes, the scheduler), then the stock rows of
the projection in (sku, location) order. A stock change locks only stock rows.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from stocksync_common.contracts import (
    ChannelQuantityChanged,
    ConnectionChanged,
    ProductAttributesChanged,
    StockChanged,
    utcnow,
)
from stocksync_common.db import claim_events
from stocksync_common.outbox import add_to_outbox
from stocksync_common.topics import CATALOGUE, CONNECTIONS, STOCK_CHANGED

from rule_engine.adapters.tables import channel_quantities, connections, inbox, outbox, products, rules, stock
from rule_engine.domain.rules import (
    NO_ATTRIBUTES,
    Action,
    AttributeFilter,
    Condition,
    Decision,
    Funnel,
    ProductAttributes,
    Rule,
    Schedule,
    WeeklyWindow,
)


def rule_from_row(row: Any) -> Rule:
    m = row._mapping
    product_filter = m["product_filter"] or {}
    return Rule(
        rule_id=m["rule_id"],
        position=m["position"],
        condition=Condition(**m["condition"]),
        action=Action(**m["action"]),
        connection_ids=frozenset(m["connection_ids"]),
        skus=frozenset(m["skus"]),
        enabled=m["enabled"],
        product_filter=AttributeFilter(**{k: frozenset(v) for k, v in product_filter.items()}),
        schedule=Schedule(
            starts_at=m["starts_at"],
            ends_at=m["ends_at"],
            weekly_windows=tuple(
                WeeklyWindow(frozenset(w["days"]), time.fromisoformat(w["start"]), time.fromisoformat(w["end"]))
                for w in m["weekly_windows"]
            ),
            time_zone=m["time_zone"],
        ),
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


@dataclass(frozen=True)
class Scope:
    """The SKUs and connections a re-evaluation covers; None means all of the merchant's."""

    skus: frozenset[str] | None = None
    connection_ids: frozenset[uuid.UUID] | None = None


EVERYTHING = Scope()


def scope_of_rule_change(before: Rule | None, after: Rule | None) -> Scope:
    """What a rule change can touch: the union of both versions' SKU lists and channels.

    An attribute filter is not narrowed here: a product matching it can be anywhere in
    the catalogue, and evaluating in memory is cheaper than a query per attribute.
    """
    versions = [r for r in (before, after) if r is not None]
    skus = None if any(not r.skus for r in versions) else frozenset().union(*(r.skus for r in versions))
    channels = (
        None
        if any(not r.connection_ids for r in versions)
        else frozenset().union(*(r.connection_ids for r in versions))
    )
    return Scope(skus, channels)


@dataclass(frozen=True)
class QuantityChange:
    """One channel quantity that differs from what was last published (None: never published)."""

    connection_id: uuid.UUID
    sku: str
    location: str
    available: int
    current: int | None
    current_version: int
    decision: Decision


@dataclass(frozen=True)
class Projection:
    """What the rule engine knows of a merchant's SKUs, loaded in three queries."""

    stock_rows: list[Any]
    products: dict[str, ProductAttributes]
    published: dict[tuple[uuid.UUID, str, str], tuple[int, int]]  # -> (quantity, version)
    targets: list[uuid.UUID]


async def load_projection(
    conn: AsyncConnection, merchant_id: uuid.UUID, scope: Scope, *, lock_stock: bool, with_attributes: bool = True
) -> Projection:
    """The stock, attributes (when a rule filters on them) and published quantities in `scope`."""
    targets = await active_connections(conn, merchant_id)
    if scope.connection_ids is not None:
        targets = [c for c in targets if c in scope.connection_ids]
    query = sa.select(stock).where(stock.c.merchant_id == merchant_id)
    product_query = sa.select(products.c.sku, products.c.brand, products.c.category, products.c.tags).where(
        products.c.merchant_id == merchant_id
    )
    published_query = sa.select(
        channel_quantities.c.connection_id,
        channel_quantities.c.sku,
        channel_quantities.c.location,
        channel_quantities.c.quantity,
        channel_quantities.c.version,
    ).where(channel_quantities.c.connection_id.in_(targets))
    if scope.skus is not None:
        names = sorted(scope.skus)
        query = query.where(stock.c.sku.in_(names))
        product_query = product_query.where(products.c.sku.in_(names))
        published_query = published_query.where(channel_quantities.c.sku.in_(names))
    if not targets:
        return Projection([], {}, {}, [])
    query = query.order_by(stock.c.sku, stock.c.location)
    if lock_stock:
        # A concurrent stock change of the same SKU waits for this re-evaluation.
        query = query.with_for_update()
    stock_rows = list((await conn.execute(query)).all())
    product_rows = (await conn.execute(product_query)).all() if with_attributes else []
    published_rows = (await conn.execute(published_query)).all()
    return Projection(
        stock_rows,
        {row.sku: ProductAttributes.of(row.brand, row.category, row.tags) for row in product_rows},
        {(row.connection_id, row.sku, row.location): (row.quantity, row.version) for row in published_rows},
        targets,
    )


def changed_quantities(funnel: Funnel, projection: Projection) -> list[QuantityChange]:
    """Channel quantities whose decision differs from the last published one. Pure."""
    changes: list[QuantityChange] = []
    published = projection.published
    for row in projection.stock_rows:
        product_rules = funnel.for_product(row.sku, projection.products.get(row.sku, NO_ATTRIBUTES))
        for connection_id in projection.targets:
            decision = funnel.decide_with(product_rules, connection_id, row.available)
            previous = published.get((connection_id, row.sku, row.location))
            if previous is not None and previous[0] == decision.quantity:
                continue
            changes.append(
                QuantityChange(
                    connection_id,
                    row.sku,
                    row.location,
                    row.available,
                    previous[0] if previous is not None else None,
                    previous[1] if previous is not None else 0,
                    decision,
                )
            )
    return changes


async def reevaluate(
    conn: AsyncConnection,
    merchant_id: uuid.UUID,
    scope: Scope = EVERYTHING,
    *,
    causation_id: str | None = None,
    at: datetime | None = None,
) -> list[ChannelQuantityChanged]:
    """Recompute the channel quantities in `scope` as of `at` (now); emit those that changed."""
    at = at or utcnow()
    funnel = Funnel(await load_rules(conn, merchant_id), at)
    projection = await load_projection(
        conn, merchant_id, scope, lock_stock=True, with_attributes=funnel.needs_attributes
    )
    if not projection.stock_rows:
        return []
    rows_by_key = {(row.sku, row.location): row for row in projection.stock_rows}
    emitted: list[ChannelQuantityChanged] = []
    upserts: list[dict[str, Any]] = []
    for change in changed_quantities(funnel, projection):
        row = rows_by_key[(change.sku, change.location)]
        version = change.current_version + 1
        emitted.append(
            ChannelQuantityChanged(
                merchant_id=merchant_id,
                connection_id=change.connection_id,
                sku=change.sku,
                location=change.location,
                quantity=change.decision.quantity,
                version=version,
                stock_version=row.version,
                available=row.available,
                rule_ids=change.decision.rule_ids,
                causation_id=causation_id or row.causation_id,
                origin_received_at=row.origin_received_at if causation_id is None else None,
            )
        )
        upserts.append(
            {
                "connection_id": change.connection_id,
                "sku": change.sku,
                "location": change.location,
                "merchant_id": merchant_id,
                "quantity": change.decision.quantity,
                "version": version,
                "stock_version": row.version,
                "rule_ids": list(change.decision.rule_ids),
            }
        )
    if upserts:
        stmt = pg.insert(channel_quantities)
        await conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[
                    channel_quantities.c.connection_id,
                    channel_quantities.c.sku,
                    channel_quantities.c.location,
                ],
                set_={c: stmt.excluded[c] for c in ("quantity", "version", "stock_version", "rule_ids")},
            ),
            upserts,
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
        moved: dict[uuid.UUID, set[str]] = defaultdict(set)
        rows = [
            {
                "merchant_id": change.merchant_id,
                "sku": change.sku,
                "location": change.location,
                "available": change.available,
                "version": change.version,
                "causation_id": change.causation_id,
                "origin_received_at": change.origin_received_at,
            }
            for key in sorted(newest, key=lambda k: (str(k[0]), k[1], k[2]))
            if (change := newest[key]).event_id in new_ids
        ]
        if rows:
            # One statement for the batch; rows in lock order, so two instances never deadlock.
            stmt = pg.insert(stock).values(rows)
            updated = await conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=[stock.c.merchant_id, stock.c.sku, stock.c.location],
                    set_={c: stmt.excluded[c] for c in ("available", "version", "causation_id", "origin_received_at")},
                    # A version not newer than the one applied is dropped.
                    where=stock.c.version < stmt.excluded.version,
                ).returning(stock.c.merchant_id, stock.c.sku)
            )
            for merchant_id, sku in updated:
                moved[merchant_id].add(sku)
        for merchant_id, skus in moved.items():
            emitted += len(await reevaluate(conn, merchant_id, Scope(skus=frozenset(skus))))
    return emitted


async def apply_product_attributes(engine: AsyncEngine, changes: Sequence[ProductAttributesChanged]) -> int:
    """Project catalogue attributes; a SKU whose attributes changed is re-evaluated at once."""
    newest: dict[tuple[uuid.UUID, str], ProductAttributesChanged] = {}
    for change in changes:
        key = (change.merchant_id, change.sku)
        if key not in newest or change.version > newest[key].version:
            newest[key] = change
    emitted = 0
    async with engine.begin() as conn:
        new_ids = await claim_events(conn, inbox, CATALOGUE.name, (c.event_id for c in changes))
        described: dict[uuid.UUID, set[str]] = defaultdict(set)
        for key in sorted(newest, key=lambda k: (str(k[0]), k[1])):
            change = newest[key]
            if change.event_id not in new_ids:
                continue
            values = {
                "brand": change.brand,
                "category": change.category,
                "tags": list(change.tags),
                "version": change.version,
            }
            stmt = pg.insert(products).values(merchant_id=change.merchant_id, sku=change.sku, **values)
            updated = await conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=[products.c.merchant_id, products.c.sku],
                    set_=values,
                    where=products.c.version < stmt.excluded.version,
                ).returning(products.c.sku)
            )
            if updated.first() is not None:
                described[change.merchant_id].add(change.sku)
        for merchant_id, skus in described.items():
            emitted += len(
                await reevaluate(
                    conn, merchant_id, Scope(skus=frozenset(skus)), causation_id=f"catalogue:{sorted(skus)[0]}"
                )
            )
    return emitted


async def apply_connection_changes(engine: AsyncEngine, changes: Sequence[ConnectionChanged]) -> int:
    emitted = 0
    async with engine.begin() as conn:
        new_ids = await claim_events(conn, inbox, CONNECTIONS.name, (c.event_id for c in changes))
        for change in changes:
            if change.event_id not in new_ids:
                continue
            values = {
                "merchant_id": change.merchant_id,
                "channel_type": change.channel_type,
                "name": change.name,
                "active": change.active,
                "updated_at": change.occurred_at,
            }
            stmt = pg.insert(connections).values(connection_id=change.connection_id, **values)
            await conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=[connections.c.connection_id],
                    set_=values,
                    where=connections.c.updated_at <= stmt.excluded.updated_at,
                )
            )
            if change.active:
                # A new channel gets the current quantity of every SKU at once.
                emitted += len(
                    await reevaluate(
                        conn,
                        change.merchant_id,
                        Scope(connection_ids=frozenset({change.connection_id})),
                        causation_id=f"connection:{change.connection_id}",
                    )
                )
    return emitted
