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
from stocksync_common.uow import UnitOfWorkFactory
from stocksync_sandboxes import mirakl_orders
from stocksync_sandboxes.order_delivery import SandboxOrderLine

from order_ingest.adapters.delivery_store import ConnectionDirectory, delete_expired_deliveries
from order_ingest.adapters.tables import deliveries, inbox, order_polls, outbox
from order_ingest.config import IngestSettings
from order_ingest.domain.connections import InboundConnection
from order_ingest.domain.movements import LineReport, Notification
from order_ingest.service_layer.deliveries import (
    Accepted,
    Delivery,
    DeliveryGroups,
    Overloaded,
    ReplayRefused,
    accept_delivery,
    apply_connection_changes,
    replay_stored_delivery,
)
from order_ingest.service_layer.polling import due_connections, poll_connection
from tests.served_app import serve

pytestmark = pytest.mark.integration


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database_url, pool_size=10)
    yield engine
    await engine.dispose()


@pytest.fixture
def units(engine: AsyncEngine) -> UnitOfWorkFactory:
    return UnitOfWorkFactory(engine, inbox=inbox, outbox=outbox)


def a_connection(channel_type: str = "generic", **channel_api: str) -> InboundConnection:
    return InboundConnection(uuid.uuid4(), uuid.uuid4(), channel_type, ("secret",), {}, dict(channel_api))


async def announce(connection: InboundConnection, directory: ConnectionDirectory) -> None:
    """Project `connection` as its announcement on connections.v1 does: active, with its
    secrets, inbound settings and channel API."""
    await apply_connection_changes(
        [
            ConnectionChanged(
                merchant_id=connection.merchant_id,
                connection_id=connection.connection_id,
                channel_type=connection.channel_type,  # type: ignore[arg-type]
                name="n",
                active=True,
                webhook_secrets=tuple(connection.webhook_secrets),
                inbound=connection.inbound,
                channel_api=connection.channel_api,
                causation_id="test",
            )
        ],
        directory,
    )


async def test_the_same_delivery_arriving_concurrently_is_stored_and_emitted_once(units: UnitOfWorkFactory) -> None:
    connection = a_connection()
    order = f"ORD-{uuid.uuid4().hex[:8]}"
    notification = Notification("evt-1", "order.created", (LineReport(order, "1", "A", 2),))
    results = await asyncio.gather(
        *(accept_delivery(units, connection, notification, b"{}", {}, datetime.now(UTC)) for _ in range(8))
    )
    assert sorted(r.duplicate for r in results) == [False] + [True] * 7
    assert [len(r.movements) for r in results if not r.duplicate] == [1]


async def test_different_deliveries_about_one_order_racing_emit_each_movement_once(units: UnitOfWorkFactory) -> None:
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
                units,
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


async def test_deliveries_older_than_the_retention_are_deleted_and_younger_ones_kept(
    engine: AsyncEngine, units: UnitOfWorkFactory
) -> None:
    connection = a_connection()
    old = await accept_delivery(
        units, connection, Notification("old", "t", ()), b"{}", {}, datetime.now(UTC) - timedelta(days=40)
    )
    young = await accept_delivery(
        units, connection, Notification("young", "t", ()), b"{}", {}, datetime.now(UTC) - timedelta(days=2)
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


async def test_the_mirakl_poller_pages_through_or11_and_waits_out_a_429(
    engine: AsyncEngine, units: UnitOfWorkFactory
) -> None:
    shop = mirakl_orders.MiraklShop("shop-key", min_call_interval_s=60)
    for n in range(5):
        shop.put(f"P{n}-A", "SHIPPING", [SandboxOrderLine(sku=f"S{n}", quantity=1)])
    app = FastAPI()
    app.include_router(mirakl_orders.orders_router(shop))
    served = serve(app)
    try:
        connection = a_connection("mirakl", base_url=served.url, api_key="shop-key")
        await announce(connection, ConnectionDirectory(engine))
        due = {c.connection_id: since for c, since in await due_connections(engine, datetime.now(UTC))}
        assert connection.connection_id in due and due[connection.connection_id] is None
        async with httpx.AsyncClient() as http:
            first = await poll_connection(units, http, IngestSettings(mirakl_page_size=2), connection, None)
            assert (first.orders, first.events, first.error) == (5, 5, None)
            # Five orders in pages of two: one listing, three calls.
            assert [c["offset"] for c in shop.calls] == [0, 2, 4]
            polled_at = datetime.now(UTC)
            second = await poll_connection(units, http, IngestSettings(), connection, polled_at)
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


async def test_concurrent_webhooks_for_one_sku_share_transactions_and_emit_each_movement_once(
    engine: AsyncEngine,
) -> None:
    """Forty orders on one SKU at once, with a cancellation of five of them and a resend
    of five more in the same burst: they are stored in fewer transactions than deliveries,
    and every movement comes out once, in the order each line's deliveries arrived."""
    connection = a_connection()
    commits: list[int] = []
    groups = DeliveryGroups(
        UnitOfWorkFactory(engine, inbox=inbox, outbox=outbox, wake_relay=lambda: commits.append(1)),
        max_group=50,
        max_in_flight=1000,
    )
    prefix = uuid.uuid4().hex[:8]

    def delivery(event_id: str, report: LineReport) -> Delivery:
        return Delivery(connection, Notification(event_id, "orders/create", (report,)), b"{}", {}, datetime.now(UTC))

    burst = [delivery(f"create-{n}", LineReport(f"{prefix}-{n}", "1", "HOT", 1)) for n in range(40)]
    burst += [delivery(f"cancel-{n}", LineReport(f"{prefix}-{n}", "1", "HOT", 1, cancelled=1)) for n in range(5)]
    burst += [delivery(f"create-{n}", LineReport(f"{prefix}-{n}", "1", "HOT", 1)) for n in range(5, 10)]
    results = await asyncio.gather(*(groups.accept(d) for d in burst))

    assert [r.duplicate for r in results] == [False] * 45 + [True] * 5
    assert [[(m.movement, m.quantity) for m in r.movements] for r in results[:45]] == [[("placed", 1)]] * 40 + [
        [("cancelled", 1)]
    ] * 5
    assert len(commits) < 45  # grouped: the burst did not take a transaction each
    async with engine.connect() as conn:
        events = (
            await conn.execute(
                sa.text(
                    "SELECT id, convert_from(payload, 'UTF8')::jsonb AS event FROM order_ingest.outbox "
                    "WHERE convert_from(payload, 'UTF8')::jsonb->>'connection_id' = :c ORDER BY id"
                ),
                {"c": str(connection.connection_id)},
            )
        ).all()
    by_order: dict[str, list[str]] = {}
    for row in events:
        by_order.setdefault(row.event["external_order_id"], []).append(row.event["movement"])
    assert by_order == {f"{prefix}-{n}": ["placed", "cancelled"] if n < 5 else ["placed"] for n in range(40)}
    assert sorted(i for r in results for i in r.outbox_ids) == [row.id for row in events]


async def test_a_delivery_that_fails_inside_a_group_commit_fails_alone(
    engine: AsyncEngine, units: UnitOfWorkFactory
) -> None:
    """A delivery PostgreSQL refuses (a NUL in an order id) in a burst with good ones: the
    group's transaction fails, each delivery is stored on its own, and only the bad one
    gets an error; nothing of it is stored."""
    connection = a_connection()
    groups = DeliveryGroups(units, max_group=50, max_in_flight=1000)
    prefix = uuid.uuid4().hex[:8]
    reports = [LineReport(f"{prefix}-{n}", "1", "A", 1) for n in range(6)]
    reports[3] = LineReport(f"{prefix}-bad\x00", "1", "A", 1)
    results = await asyncio.gather(
        *(
            groups.accept(
                Delivery(connection, Notification(f"e{n}", "orders/create", (r,)), b"{}", {}, datetime.now(UTC))
            )
            for n, r in enumerate(reports)
        ),
        return_exceptions=True,
    )
    assert isinstance(results[3], Exception)
    good = [r for n, r in enumerate(results) if n != 3]
    assert all(isinstance(r, Accepted) and not r.duplicate and len(r.movements) == 1 for r in good)
    async with engine.connect() as conn:
        stored = (
            await conn.execute(
                sa.select(deliveries.c.channel_event_id).where(deliveries.c.connection_id == connection.connection_id)
            )
        ).scalars()
        assert sorted(stored) == ["e0", "e1", "e2", "e4", "e5"]


async def test_past_the_in_flight_bound_a_delivery_is_refused_at_once(units: UnitOfWorkFactory) -> None:
    groups = DeliveryGroups(units, max_in_flight=2)
    with groups.admit(), groups.admit():
        with pytest.raises(Overloaded):
            with groups.admit():
                pass
    with groups.admit():  # the bound is on work in flight, not a total
        assert groups.in_flight == 1


def _connection_reads(engine: AsyncEngine) -> list[str]:
    """Every SELECT on the connections projection `engine` sends, as it is sent."""
    reads: list[str] = []

    @sa.event.listens_for(engine.sync_engine, "before_cursor_execute")
    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "order_ingest.connections" in statement:
            reads.append(statement)

    return reads


async def test_webhooks_that_find_a_connection_expired_together_read_it_once(engine: AsyncEngine) -> None:
    connection = a_connection()
    directory = ConnectionDirectory(engine, ttl_s=60)
    await announce(connection, directory)
    reads = _connection_reads(engine)
    found = await asyncio.gather(*(directory.find(connection.connection_id) for _ in range(50)))
    assert {f.connection_id if f else None for f in found} == {connection.connection_id}
    assert len(reads) == 1
    # Within the TTL: no read at all.
    assert (await directory.find(connection.connection_id)) is not None and len(reads) == 1


async def test_a_read_in_flight_when_the_connection_changes_is_not_kept(engine: AsyncEngine) -> None:
    connection = a_connection()
    directory = ConnectionDirectory(engine, ttl_s=60)
    reads = _connection_reads(engine)
    before = asyncio.ensure_future(directory.find(connection.connection_id))  # not announced yet: unknown
    await asyncio.sleep(0)  # the read has begun
    await announce(connection, directory)  # invalidates this process's copies
    assert await before is None
    # The unknown answer read before the change was not kept: the next finder reads again.
    assert (await directory.find(connection.connection_id)) is not None
    assert len(reads) == 2


async def test_a_finder_that_goes_away_does_not_cancel_the_read_the_others_wait_for(engine: AsyncEngine) -> None:
    connection = a_connection()
    directory = ConnectionDirectory(engine, ttl_s=60)
    await announce(connection, directory)
    reads = _connection_reads(engine)
    leaving = asyncio.ensure_future(directory.find(connection.connection_id))
    staying = asyncio.ensure_future(directory.find(connection.connection_id))
    await asyncio.sleep(0)
    leaving.cancel()
    found = await staying
    assert found is not None and found.connection_id == connection.connection_id and len(reads) == 1


async def test_a_stored_delivery_that_cannot_be_replayed_says_why_and_changes_nothing(
    engine: AsyncEngine, units: UnitOfWorkFactory
) -> None:
    connection = a_connection()
    order = f"ORD-{uuid.uuid4().hex[:8]}"
    notification = Notification(f"evt-{order}", "order.created", (LineReport(order, "1", "A", 2),))
    # Stored with a body the generic parser refuses (it was accepted from its parsed form).
    stored = (await accept_delivery(units, connection, notification, b"{}", {}, datetime.now(UTC))).delivery_id
    assert stored is not None
    with pytest.raises(ReplayRefused) as unknown:
        await replay_stored_delivery(units, connection.merchant_id, uuid.uuid4())
    assert unknown.value.reason == "unknown_delivery"
    with pytest.raises(ReplayRefused) as others:
        await replay_stored_delivery(units, uuid.uuid4(), stored)  # another merchant's
    assert others.value.reason == "unknown_delivery"
    with pytest.raises(ReplayRefused) as inactive:
        await replay_stored_delivery(units, connection.merchant_id, stored)  # never announced
    assert inactive.value.reason == "inactive_connection"
    await announce(connection, ConnectionDirectory(engine))
    with pytest.raises(ReplayRefused) as malformed:
        await replay_stored_delivery(units, connection.merchant_id, stored)
    assert malformed.value.reason == "malformed"
    async with engine.connect() as conn:
        produced = await conn.scalar(sa.select(deliveries.c.events_produced).where(deliveries.c.delivery_id == stored))
    assert produced == 1  # the placement, once: no refusal wrote anything
