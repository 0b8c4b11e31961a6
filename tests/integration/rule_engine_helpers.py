"""For the rule engine's integration tests: its units of work on a test's engine, its
connections and rules written as rows (inside a transaction the test holds), a stock
change to consume, and the channel quantities it wrote to its outbox."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from stocksync_common.contracts import ChannelQuantityChanged, StockChanged, utcnow
from stocksync_common.uow import UnitOfWorkFactory

from rule_engine.adapters.tables import connections, inbox, outbox, rules


def rule_engine_units(engine: AsyncEngine, wake_relay: Callable[[], None] | None = None) -> UnitOfWorkFactory:
    """The rule engine's units of work as its runtime makes them (`runtime.units`), on `engine`."""
    return UnitOfWorkFactory(engine, inbox=inbox, outbox=outbox, wake_relay=wake_relay)


async def add_connection(
    conn: AsyncConnection, merchant_id: uuid.UUID, connection_id: uuid.UUID, **values: Any
) -> None:
    """Project a connection: an active Shopify channel named after its id, selling from the
    default location, unless `values` (its columns) say otherwise."""
    await conn.execute(
        sa.insert(connections).values(
            {
                "connection_id": connection_id,
                "merchant_id": merchant_id,
                "channel_type": "shopify",
                "name": str(connection_id),
                "active": True,
                "updated_at": utcnow(),
                **values,
            }
        )
    )


async def add_rule(
    conn: AsyncConnection, merchant_id: uuid.UUID, position: int, *, rule_id: uuid.UUID | None = None, **values: Any
) -> uuid.UUID:
    """Write a rule's row as saving would, without re-evaluating: enabled, on every channel
    and SKU, unless `values` (its columns: condition and action at least) say otherwise."""
    rule_id = rule_id or uuid.uuid4()
    await conn.execute(
        sa.insert(rules).values(
            {
                "rule_id": rule_id,
                "merchant_id": merchant_id,
                "name": f"rule {position}",
                "position": position,
                "enabled": True,
                "connection_ids": [],
                "skus": [],
                **values,
            }
        )
    )
    return rule_id


def stock_changed(merchant_id: uuid.UUID, sku: str, version: int, available: int, **values: Any) -> StockChanged:
    """The ledger's stock.changed.v1 for `sku` at the default location, all of it available
    and caused by an order, unless `values` (its fields) say otherwise."""
    return StockChanged.model_validate(
        {
            "merchant_id": merchant_id,
            "sku": sku,
            "version": version,
            "on_hand": available,
            "reserved": 0,
            "available": available,
            "causation_id": f"order:{sku}:{version}",
            **values,
        }
    )


async def emitted_events(engine: AsyncEngine, merchant_id: uuid.UUID) -> list[ChannelQuantityChanged]:
    """The channel quantities written to the outbox for the merchant, oldest first."""
    async with engine.connect() as conn:
        payloads = (
            await conn.execute(
                sa.select(outbox.c.payload)
                .where(sa.func.convert_from(outbox.c.key, "UTF8").startswith(f"{merchant_id}:"))
                .order_by(outbox.c.id)
            )
        ).scalars()
        return [ChannelQuantityChanged.model_validate_json(p) for p in payloads]
