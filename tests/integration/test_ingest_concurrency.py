"""order-ingest's use cases against the real PostgreSQL: concurrency, replay, retention,
and the Mirakl poller against the sandbox's OR11 over HTTP."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from stocksync_common.contracts import ConnectionChanged
from stocksync_common.db import make_engine
from stocksync_sandboxes import mirakl_orders
from stocksync_sandboxes.order_delivery import SandboxOrderLine

from order_ingest.adapters.tables import deliveries, order_polls
from order_ingest.config import IngestSettings
from order_ingest.domain.connections import InboundConnection
from order_ingest.domain.movements import LineReport, Notification
from order_ingest.service_layer.ingest import accept_delivery, apply_connection_changes, delete_expired_deliveries
from order_ingest.service_layer.polling import due_connections, poll_connection
from tests.e2e.test_ingest_channels import serve

pytestmark = pytest.mark.integration


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database_url, pool_size=10)
    yield engine
    await engine.dispose()


def a_connection(channel_type: str = "generic", **channel_api: str) -> InboundConnection:
    return InboundConnection(uuid.uuid4(), uuid.uuid4(), channel_type, ("secret",), {}, dict(channel_api))


async def test_the_same_delivery_arriving_concurrently_is_stored_and_emitted_once(engine: AsyncEngine) -> None:
    connection = a_connection()
    order = f"ORD-{uuid.uuid4().hex[:8]}"
    notification = Notification("evt-1", "order.created", (LineReport(order, "1", "A", 2),))
    results = await asyncio.gather(
        *(accept_delivery(engine, connection, notification, b"{}", {}, datetime.now(UTC)) for _ in range(8))
    )
    assert sorted(r.duplicate for r in results) == [False] + [True] * 7
    assert [len(r.movements) for r in results if not r.duplicate] == [1]


async def test_different_deliveries_about_one_order_racing_emit_each_movement_once(engine: AsyncEngine) -> None:
    """Eight channel events (new ids) with overlapping states of one order, at once: the
    order lines' row locks serialise them, so the totals are emitted once."""
    connection = a_connection()
    order = f"ORD-{uuid.uuid4().hex[:8]}"
    states = [
        LineReport(order, "1", "A", 3, shipped=1),
        LineReport(order, "1", "A", 3, shipped=1, cancelled=2),
        LineReport(order, "1", "A", 3),
        LineReport(order, "2", "B", 1),
    ]
    results = await asyncio.gather(
        *(
            accept_delivery(
                engine,
                connection,
                Notification(f"evt-{n}", "order.updated", (states[n % 4], states[3])),
                b"{}",
                {},
                datetime.now(UTC),
            )
            for n in range(8)
        )
    )
    emitted: dict[tuple[str, str], int] = {}
    for result in results:
        for m in result.movements:
            emitted[(m.line_id, m.movement)] = emitted.get((m.line_id, m.movement), 0) + m.quantity
    assert emitted == {("1", "placed"): 3, ("1", "shipped"): 1, ("1", "cancelled"): 2, ("2", "placed"): 1}


async def test_deliveries_older_than_the_retention_are_deleted_and_younger_ones_kept(engine: AsyncEngine) -> None:
    connection = a_connection()
    old = await accept_delivery(
        engine, connection, Notification("old", "t", ()), b"{}", {}, datetime.now(UTC) - timedelta(days=40)
    )
    young = await accept_delivery(
        engine, connection, Notification("young", "t", ()), b"{}", {}, datetime.now(UTC) - timedelta(days=2)
    )
    assert await delete_expired_deliveries(engine, timedelta(days=30)) >= 1
    async with engine.connect() as conn:
        kept = set(
            (
                await conn.execute(
                    sa.select(deliveries.c.delivery_id).where(deliveries.c.connection_id == connection.connection_id)
                )
            )
            .scalars()
            .all()
        )
    assert kept == {young.delivery_id} and old.delivery_id not in kept


async def test_the_mirakl_poller_pages_through_or11_and_waits_out_a_429(engine: AsyncEngine) -> None:
    shop = mirakl_orders.MiraklShop("shop-key", min_call_interval_s=60)
    for n in range(5):
        shop.put(f"P{n}-A", "SHIPPING", [SandboxOrderLine(sku=f"S{n}", quantity=1)])
    app = FastAPI()
    app.include_router(mirakl_orders.orders_router(shop))
    served = serve(app)
    try:
        connection = a_connection("mirakl", base_url=served.url, api_key="shop-key")
        await apply_connection_changes(
            engine,
            [
                ConnectionChanged(
                    merchant_id=connection.merchant_id,
                    connection_id=connection.connection_id,
                    channel_type="mirakl",
                    name="m",
                    active=True,
                    inbound={"poll_interval_s": 60},
                    channel_api=connection.channel_api,
                    causation_id="test",
                )
            ],
        )
        due = {c.connection_id: since for c, since in await due_connections(engine, datetime.now(UTC))}
        assert connection.connection_id in due and due[connection.connection_id] is None
        async with httpx.AsyncClient() as http:
            first = await poll_connection(engine, http, IngestSettings(mirakl_page_size=2), connection, None)
            assert (first.orders, first.events, first.error) == (5, 5, None)
            # Five orders in pages of two: one listing, three calls.
            assert [c["offset"] for c in shop.calls] == [0, 2, 4]
            polled_at = datetime.now(UTC)
            second = await poll_connection(engine, http, IngestSettings(), connection, polled_at)
        assert second.orders == 0 and second.error is not None and "retry after" in second.error
        async with engine.connect() as conn:
            state = (
                await conn.execute(
                    sa.select(order_polls).where(order_polls.c.connection_id == connection.connection_id)
                )
            ).one()
        # Not before Mirakl's Retry-After (about a minute), and the cursor did not move.
        assert state.next_poll_at >= polled_at + timedelta(seconds=50)
        assert state.updated_since == polled_at
        assert connection.connection_id not in {
            c.connection_id for c, _ in await due_connections(engine, datetime.now(UTC))
        }
    finally:
        served.stop()
