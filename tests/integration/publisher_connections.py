"""For the publisher's integration tests: its units of work on a test's engine, and a
Shopify connection stored by its own use case, its SKUs listed at the default location,
one inventory item each."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from stocksync_common.uow import UnitOfWorkFactory

from channel_publisher.adapters.tables import inbox, outbox
from channel_publisher.service_layer.connections import create_connection


def publisher_units(engine: AsyncEngine, wake_relay: Callable[[], None] | None = None) -> UnitOfWorkFactory:
    """The publisher's units of work as its runtime makes them (`runtime.units`), on `engine`."""
    return UnitOfWorkFactory(engine, inbox=inbox, outbox=outbox, wake_relay=wake_relay)


async def shopify_connection(
    engine: AsyncEngine,
    merchant_id: uuid.UUID,
    name: str,
    skus: list[str],
    settings: dict[str, Any] | None = None,
) -> uuid.UUID:
    return await create_connection(
        publisher_units(engine),
        merchant_id=merchant_id,
        channel_type="shopify",
        name=name,
        base_url="http://127.0.0.1:9",
        credentials={"access_token": "token"},
        webhook_secrets=["secret"],
        settings=settings or {},
        inbound={},
        listing_rows=[
            {
                "sku": sku,
                "location": "default",
                "external": {
                    "inventory_item_id": f"gid://shopify/InventoryItem/{n}",
                    "location_id": "gid://shopify/Location/1",
                },
            }
            for n, sku in enumerate(skus, start=1)
        ],
    )
