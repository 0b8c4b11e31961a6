"""The publisher's drain against the real database, with a channel that answers on cue.

The channel call is the slow part of a push; these tests hold one open and check what
may and may not wait for it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from stocksync_common.contracts import ChannelQuantityChanged
from stocksync_common.db import make_engine

from channel_publisher.adapters.channels.registry import ADAPTERS, AdapterFactory
from channel_publisher.adapters.push_store import PushStore
from channel_publisher.adapters.tables import connections, last_sent, pending_pushes, pushes
from channel_publisher.config import PublisherSettings
from channel_publisher.domain.pushes import BatchResult, ItemOutcome, PushItem, TransientChannelError
from channel_publisher.service_layer.connection_adapters import ConnectionAdapters
from channel_publisher.service_layer.connections import create_connection
from channel_publisher.service_layer.drainer import Drainer
from tests.conftest import PrivateDatabase
from tests.integration.publisher_connections import publisher_units, shopify_connection

SKU = "SKU-DRAIN-1"


class HeldChannel:
    """Accepts every item, but only when the test lets the call return."""

    channel_type = "shopify"
    batch_limit = 250

    def __init__(self) -> None:
        self.calls: list[list[tuple[str, int]]] = []
        self.in_call = asyncio.Event()
        self.release = asyncio.Event()

    def ready_in(self) -> float:
        return 0.0

    async def push(self, items: list[PushItem]) -> BatchResult:
        self.calls.append([(item.sku, item.quantity) for item in items])
        self.in_call.set()
        await self.release.wait()
        self.release.clear()
        self.in_call.clear()
        return BatchResult({i: ItemOutcome("accepted", "applied") for i in range(len(items))})


@pytest.fixture(scope="module")
def own_database_url(private_database: PrivateDatabase) -> Iterator[str]:
    """Not the session's database: the e2e stack's publisher, running on that one in the
    same worker, drains every connection's pending pushes there, these tests' too."""
    with private_database() as url:
        yield url


@pytest.fixture
async def engine(own_database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(own_database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
def adapters() -> dict[str, AdapterFactory]:
    """The channel types' adapters the drainer builds; a test puts its own channel in."""
    return dict(ADAPTERS)


@pytest.fixture
async def drainer(engine: AsyncEngine, adapters: dict[str, AdapterFactory]) -> AsyncIterator[Drainer]:
    connection_adapters = ConnectionAdapters(engine, PublisherSettings(), adapters)
    yield Drainer(PushStore(engine), connection_adapters, PublisherSettings())
    await connection_adapters.aclose()


def _quantity(connection_id: uuid.UUID, quantity: int, version: int) -> ChannelQuantityChanged:
    return ChannelQuantityChanged(
        merchant_id=uuid.uuid4(),
        causation_id=str(uuid.uuid4()),
        connection_id=connection_id,
        sku=SKU,
        quantity=quantity,
        version=version,
        stock_version=version,
        available=quantity,
    )


async def test_a_newer_quantity_is_queued_during_a_call_and_sent_after_it_in_order(
    engine: AsyncEngine, adapters: dict[str, AdapterFactory], drainer: Drainer
) -> None:
    channel = HeldChannel()
    adapters["shopify"] = lambda *_: channel
    connection_id = await shopify_connection(engine, uuid.uuid4(), "held", [SKU])
    await PushStore(engine).enqueue([_quantity(connection_id, 7, 1)])
    draining = asyncio.create_task(drainer.publish_due_pushes(connection_id))
    await asyncio.wait_for(channel.in_call.wait(), 10)

    # The consumer records the newer quantity while the channel has not answered yet.
    await asyncio.wait_for(PushStore(engine).enqueue([_quantity(connection_id, 5, 2)]), 5)
    # A second drain of the same connection (another instance) sends nothing meanwhile.
    assert await asyncio.wait_for(drainer.publish_due_pushes(connection_id), 5) == 0
    assert channel.calls == [[(SKU, 7)]]

    channel.release.set()
    assert await asyncio.wait_for(draining, 10) == 1
    async with engine.connect() as conn:
        pending = (
            (
                await conn.execute(
                    sa.select(pending_pushes.c.version).where(pending_pushes.c.connection_id == connection_id)
                )
            )
            .scalars()
            .all()
        )
        sent = (
            (await conn.execute(sa.select(last_sent.c.version).where(last_sent.c.connection_id == connection_id)))
            .scalars()
            .all()
        )
    assert pending == [2]  # version 1 settled, version 2 still to send
    assert sent == [1]

    channel.release.set()
    assert await asyncio.wait_for(drainer.publish_due_pushes(connection_id), 10) == 1
    assert channel.calls == [[(SKU, 7)], [(SKU, 5)]]


async def test_a_connection_stored_with_credentials_of_an_old_shape_keeps_its_quantities_and_counts_a_failure(
    engine: AsyncEngine, drainer: Drainer
) -> None:
    """An Amazon connection saved with a fixed access token, before LWA credentials: its
    adapter cannot be built, which is the connection's problem, never the SKU's."""
    connection_id = await create_connection(
        publisher_units(engine),
        merchant_id=uuid.uuid4(),
        channel_type="amazon",
        name="old shape",
        base_url="http://127.0.0.1:9",
        credentials={"seller_id": "S", "marketplace_ids": ["M"], "access_token": "Atza|fixed"},
        webhook_secrets=[],
        settings={},
        inbound={},
        listing_rows=[{"sku": SKU, "location": "default", "external": {"product_type": "PRODUCT"}}],
    )
    await PushStore(engine).enqueue([_quantity(connection_id, 3, 1)])
    assert await asyncio.wait_for(drainer.publish_due_pushes(connection_id), 10) == 0
    async with engine.connect() as conn:
        pending = (
            (
                await conn.execute(
                    sa.select(pending_pushes.c.quantity).where(pending_pushes.c.connection_id == connection_id)
                )
            )
            .scalars()
            .all()
        )
        failures = (
            await conn.execute(
                sa.select(connections.c.consecutive_failures).where(connections.c.connection_id == connection_id)
            )
        ).scalar_one()
        history = (
            await conn.execute(
                sa.select(sa.func.count()).select_from(pushes).where(pushes.c.connection_id == connection_id)
            )
        ).scalar_one()
    assert (pending, failures, history) == ([3], 1, 0)


class FailingChannel:
    """Fails every call as a whole (HTTP 503) until `healthy`; then accepts every item."""

    channel_type = "shopify"
    batch_limit = 250

    def __init__(self) -> None:
        self.calls = 0
        self.healthy = False

    def ready_in(self) -> float:
        return 0.0

    async def push(self, items: list[PushItem]) -> BatchResult:
        self.calls += 1
        if not self.healthy:
            raise TransientChannelError("HTTP 503")
        return BatchResult({i: ItemOutcome("accepted", "applied") for i in range(len(items))})


async def _health(engine: AsyncEngine, connection_id: uuid.UUID) -> tuple[int, bool, list[int]]:
    """(failures in a row, paused, quantities waiting), with every wait for a retry over."""
    async with engine.begin() as conn:
        await conn.execute(
            sa.update(pending_pushes).where(pending_pushes.c.connection_id == connection_id).values(not_before=None)
        )
        row = (
            await conn.execute(
                sa.select(connections.c.consecutive_failures, connections.c.paused_at).where(
                    connections.c.connection_id == connection_id
                )
            )
        ).one()
        waiting = (
            await conn.execute(
                sa.select(pending_pushes.c.quantity).where(pending_pushes.c.connection_id == connection_id)
            )
        ).scalars()
        return row.consecutive_failures, row.paused_at is not None, list(waiting)


async def test_a_connection_failing_as_a_whole_is_paused_sends_nothing_until_resume_at_then_resumes(
    engine: AsyncEngine, adapters: dict[str, AdapterFactory], drainer: Drainer
) -> None:
    channel = FailingChannel()
    adapters["shopify"] = lambda *_: channel
    connection_id = await shopify_connection(
        engine, uuid.uuid4(), "failing", [SKU], {"pause_after_failures": 2, "pause_duration_s": 300}
    )
    await PushStore(engine).enqueue([_quantity(connection_id, 3, 1)])

    await drainer.publish_due_pushes(connection_id)
    assert await _health(engine, connection_id) == (1, False, [3])
    await drainer.publish_due_pushes(connection_id)
    assert await _health(engine, connection_id) == (2, True, [3])

    # Paused: the quantity keeps waiting and the channel is not called.
    assert await drainer.publish_due_pushes(connection_id) == 0
    assert channel.calls == 2
    assert await _health(engine, connection_id) == (2, True, [3])

    # Once resume_at has passed, the next call goes through and clears the pause.
    channel.healthy = True
    async with engine.begin() as conn:
        await conn.execute(
            sa.update(connections)
            .where(connections.c.connection_id == connection_id)
            .values(resume_at=sa.func.now() - sa.text("interval '1 second'"))
        )
    await drainer.publish_due_pushes(connection_id)
    assert channel.calls == 3
    assert await _health(engine, connection_id) == (0, False, [])
    async with engine.connect() as conn:
        sent = (
            await conn.execute(sa.select(last_sent.c.version).where(last_sent.c.connection_id == connection_id))
        ).scalar_one()
    assert sent == 1


class ThrottlingChannel:
    """Accepts the first SKU of every call; asks to come back in `retry_after` s for the others."""

    channel_type = "shopify"
    batch_limit = 250

    def __init__(self, retry_after: float) -> None:
        self.retry_after = retry_after
        self.calls: list[list[str]] = []

    def ready_in(self) -> float:
        return 0.0

    async def push(self, items: list[PushItem]) -> BatchResult:
        self.calls.append([item.sku for item in items])
        return BatchResult(
            {
                i: ItemOutcome("accepted", "applied") if i == 0 else ItemOutcome("retry", "HTTP 429", self.retry_after)
                for i in range(len(items))
            }
        )


async def test_an_item_throttled_with_retry_after_waits_that_long_alone_and_the_connection_stays_healthy(
    engine: AsyncEngine, adapters: dict[str, AdapterFactory], drainer: Drainer
) -> None:
    channel = ThrottlingChannel(retry_after=30.0)
    adapters["shopify"] = lambda *_: channel
    skus = ["SKU-THROTTLE-A", "SKU-THROTTLE-B"]
    connection_id = await shopify_connection(engine, uuid.uuid4(), "throttling", skus, {"pause_after_failures": 1})
    changes = [_quantity(connection_id, 4, 1).model_copy(update={"sku": sku}) for sku in skus]
    await PushStore(engine).enqueue(changes)

    before = datetime.now(UTC)
    assert await drainer.publish_due_pushes(connection_id) == 1  # the accepted one settled
    assert len(channel.calls) == 1 and sorted(channel.calls[0]) == skus
    async with engine.connect() as conn:
        waiting = (
            await conn.execute(
                sa.select(pending_pushes.c.sku, pending_pushes.c.attempts, pending_pushes.c.not_before).where(
                    pending_pushes.c.connection_id == connection_id
                )
            )
        ).all()
        sent = (
            await conn.execute(sa.select(last_sent.c.sku).where(last_sent.c.connection_id == connection_id))
        ).scalars()
        history = (
            await conn.execute(
                sa.select(pushes.c.sku, pushes.c.status, pushes.c.attempts)
                .where(pushes.c.connection_id == connection_id)
                .order_by(pushes.c.sku)
            )
        ).all()
        failures = (
            await conn.execute(
                sa.select(connections.c.consecutive_failures).where(connections.c.connection_id == connection_id)
            )
        ).scalar_one()
    accepted_sku, throttled_sku = channel.calls[0]
    assert list(sent) == [accepted_sku]
    assert [(row.sku, row.attempts) for row in waiting] == [(throttled_sku, 1)]
    assert waiting[0].not_before >= before + timedelta(seconds=30)  # never sooner than Retry-After
    assert sorted((row.sku, row.status, row.attempts) for row in history) == sorted(
        [(accepted_sku, "accepted", 1), (throttled_sku, "retrying", 1)]
    )
    # One item throttled is not the call failing as a whole: no failure counted, no pause
    # (although this connection pauses at the first failure).
    assert failures == 0

    # Until Retry-After has passed the throttled item is not taken, and the channel not called.
    assert await drainer.publish_due_pushes(connection_id) == 0
    assert len(channel.calls) == 1
