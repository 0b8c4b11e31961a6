"""A Shopify connection stored by the publisher's own use case, for the publisher's
integration tests: its SKUs listed at the default location, one inventory item each."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from channel_publisher.service_layer.connections import create_connection


async def shopify_connection(
    engine: AsyncEngine,
    merchant_id: uuid.UUID,
    name: str,
    skus: list[str],
    settings: dict[str, Any] | None = None,
) -> uuid.UUID:
    return await create_connection(
        engine,
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
