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

from channel_publisher.service_layer.connections import merchant_connections
from tests.integration.publisher_connections import shopify_connection


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database_url)
    yield engine
    await engine.dispose()


async def test_a_merchants_connections_come_in_creation_order_with_their_listings_in_one_statement(
    engine: AsyncEngine,
) -> None:
    merchant_id, other_merchant = uuid.uuid4(), uuid.uuid4()
    first = await shopify_connection(engine, merchant_id, "first", ["A", "B"])
    second = await shopify_connection(engine, merchant_id, "second", [])
    third = await shopify_connection(engine, merchant_id, "third", ["C"])
    foreign = await shopify_connection(engine, other_merchant, "foreign", ["A", "B", "C"])

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
