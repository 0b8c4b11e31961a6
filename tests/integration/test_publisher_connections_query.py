"""The merchant's connections as the API lists them (channel_publisher.service_layer.
connections.merchant_connections): in creation order, each with its listings counted, in
one statement however many connections there are."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from stocksync_common.db import make_engine

from channel_publisher.service_layer.connections import create_connection, merchant_connections


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database_url)
    yield engine
    await engine.dispose()


async def _connection(engine: AsyncEngine, merchant_id: uuid.UUID, name: str, skus: list[str]) -> uuid.UUID:
    return await create_connection(
        engine,
        merchant_id=merchant_id,
        channel_type="shopify",
        name=name,
        base_url="http://127.0.0.1:9",
        credentials={"access_token": "token"},
        webhook_secrets=["secret"],
        settings={},
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
            for n, sku in enumerate(skus)
        ],
    )


async def test_a_merchants_connections_come_in_creation_order_with_their_listings_in_one_statement(
    engine: AsyncEngine,
) -> None:
    merchant_id, other_merchant = uuid.uuid4(), uuid.uuid4()
    first = await _connection(engine, merchant_id, "first", ["A", "B"])
    second = await _connection(engine, merchant_id, "second", [])
    third = await _connection(engine, merchant_id, "third", ["C"])
    foreign = await _connection(engine, other_merchant, "foreign", ["A", "B", "C"])

    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    sa.event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        rows = await merchant_connections(engine, merchant_id)
    finally:
        sa.event.remove(engine.sync_engine, "before_cursor_execute", count)
    assert [(row.connection_id, row.name, row.listing_count) for row in rows] == [
        (first, "first", 2),
        (second, "second", 0),
        (third, "third", 1),
    ]
    assert len(statements) == 1

    # One connection by id, only the merchant's own.
    only = await merchant_connections(engine, merchant_id, third)
    assert [(row.connection_id, row.listing_count) for row in only] == [(third, 1)]
    assert list(await merchant_connections(engine, merchant_id, foreign)) == []
    assert [row.listing_count for row in await merchant_connections(engine, other_merchant)] == [3]
