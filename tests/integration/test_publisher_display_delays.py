"""A connection's display delay, measured against the real database, with channels that
show what they accepted only when the test says so (a marketplace's display lag).

A probe reads the pushed quantity back until the channel shows it; the sample is the time
from the order's receipt; a newer push ends a probe without a sample; a channel that
cannot be read is sampled at acceptance; the delay is announced on connection.delays.v1
once enough samples exist, and each push keeps the adaptive buffer's reason.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from stocksync_common.contracts import ChannelQuantityChanged, ConnectionDelayMeasured, utcnow
from stocksync_common.db import make_engine

from channel_publisher.adapters.push_store import PushStore
from channel_publisher.adapters.tables import display_delays, display_probes, outbox, pushes
from channel_publisher.config import PublisherSettings
from channel_publisher.domain.pushes import BatchResult, ChannelAdapter, ItemOutcome, PushItem
from channel_publisher.service_layer.connection_adapters import ConnectionAdapter
from channel_publisher.service_layer.connections import load_connection
from channel_publisher.service_layer.display_delays import measure_display_delays, read_display_delay
from channel_publisher.service_layer.drainer import Drainer
from channel_publisher.service_layer.drift import check_drift
from tests.conftest import PrivateDatabase
from tests.integration.publisher_connections import publisher_units, shopify_connection

pytestmark = pytest.mark.integration

SKU = "SKU-DISPLAY-1"
REASON = "adaptive buffer hid 2: the SKU sells 18.00 units/h, ..."


class LaggingChannel:
    """Accepts every push; shows a quantity on reads only once the test calls `display()`."""

    channel_type = "shopify"
    batch_limit = 250

    def __init__(self) -> None:
        self.accepted: int | None = None
        self.shown: int | None = None
        self.reads = 0

    def ready_in(self) -> float:
        return 0.0

    async def push(self, items: list[PushItem]) -> BatchResult:
        self.accepted = items[-1].quantity
        return BatchResult({i: ItemOutcome("accepted", "ok") for i in range(len(items))})

    def display(self) -> None:
        self.shown = self.accepted

    async def read_quantities(self, items: list[PushItem]) -> dict[int, int | None]:
        self.reads += 1
        return {0: self.shown}


class UnreadableChannel:
    channel_type = "amazon"
    batch_limit = 1

    def ready_in(self) -> float:
        return 0.0

    async def push(self, items: list[PushItem]) -> BatchResult:
        return BatchResult({i: ItemOutcome("accepted", "ok") for i in range(len(items))})


@pytest.fixture
def database_url(private_database: PrivateDatabase) -> Iterator[str]:
    """A database of each test's own: the e2e stack's publisher, running on the
    session's database in the same worker, would claim these tests' pending read-back
    probes."""
    with private_database() as url:
        yield url


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database_url)
    yield engine
    await engine.dispose()


class ChannelsUnderTest:
    """The adapter source of these tests: each connection calls the channel the test gave it."""

    def __init__(self) -> None:
        self.by_connection: dict[uuid.UUID, ConnectionAdapter] = {}

    async def adapter_for(self, connection_id: uuid.UUID) -> ConnectionAdapter | None:
        return self.by_connection.get(connection_id)


async def connected(
    engine: AsyncEngine, channels: ChannelsUnderTest, channel: ChannelAdapter
) -> tuple[uuid.UUID, uuid.UUID]:
    merchant_id = uuid.uuid4()
    connection_id = await shopify_connection(engine, merchant_id, "lagging", [SKU])
    async with engine.connect() as conn:
        connection = await load_connection(conn, connection_id)
    assert connection is not None
    channels.by_connection[connection_id] = ConnectionAdapter(connection, channel)
    return merchant_id, connection_id


async def pushed(
    engine: AsyncEngine,
    drainer: Drainer,
    merchant_id: uuid.UUID,
    connection_id: uuid.UUID,
    quantity: int,
    version: int,
) -> None:
    change = ChannelQuantityChanged(
        merchant_id=merchant_id,
        causation_id=f"order:{version}",
        connection_id=connection_id,
        sku=SKU,
        quantity=quantity,
        version=version,
        stock_version=version,
        available=quantity + 2,
        reasons=(REASON,),
        origin_received_at=utcnow() - timedelta(seconds=5),
    )
    await PushStore(engine).enqueue([change])
    assert await asyncio.wait_for(drainer.publish_due_pushes(connection_id), 10) == 1


async def read_due_now(engine: AsyncEngine, connection_id: uuid.UUID) -> None:
    """The probe reads at the next tick rather than a second later."""
    async with engine.begin() as conn:
        await conn.execute(
            sa.update(display_probes)
            .values(next_read_at=utcnow())
            .where(display_probes.c.connection_id == connection_id)
        )


async def samples(engine: AsyncEngine, connection_id: uuid.UUID) -> list[tuple[str, float]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(display_delays.c.how, display_delays.c.delay_s)
            .where(display_delays.c.connection_id == connection_id)
            .order_by(display_delays.c.sample_id)
        )
        return [(how, delay) for how, delay in rows.all()]


async def announced(engine: AsyncEngine, connection_id: uuid.UUID) -> list[ConnectionDelayMeasured]:
    async with engine.connect() as conn:
        payloads = (
            await conn.execute(
                sa.select(outbox.c.payload).where(outbox.c.topic == "connection.delays.v1").order_by(outbox.c.id)
            )
        ).scalars()
        events = [ConnectionDelayMeasured.model_validate_json(p) for p in payloads]
    return [e for e in events if e.connection_id == connection_id]


async def test_a_probe_measures_from_the_orders_receipt_to_the_channel_showing_it(engine: AsyncEngine) -> None:
    settings = PublisherSettings(display_delay_min_samples=2, display_delay_announce_interval_s=0)
    woken: list[bool] = []
    units = publisher_units(engine, lambda: woken.append(True))
    channels = ChannelsUnderTest()
    drainer = Drainer(PushStore(engine), channels, settings)
    channel = LaggingChannel()
    merchant_id, connection_id = await connected(engine, channels, channel)
    await pushed(engine, drainer, merchant_id, connection_id, 7, 1)
    async with engine.connect() as conn:
        reason = (
            await conn.execute(sa.select(pushes.c.reason).where(pushes.c.connection_id == connection_id))
        ).scalar_one()
    assert reason == REASON

    # Accepted, not shown yet: the probe reads and waits.
    await measure_display_delays(units, settings, channels)
    assert (channel.reads, await samples(engine, connection_id)) == (1, [])
    channel.display()
    await read_due_now(engine, connection_id)
    await measure_display_delays(units, settings, channels)
    [(how, first)] = await samples(engine, connection_id)
    assert how == "read_back" and 5.0 <= first < 60.0
    assert await announced(engine, connection_id) == []  # one sample: still the default
    assert woken == []  # nothing announced: the relay is not woken

    # A push that a newer one overtakes before it shows ends its probe without a sample.
    await pushed(engine, drainer, merchant_id, connection_id, 6, 2)
    await measure_display_delays(units, settings, channels)
    await pushed(engine, drainer, merchant_id, connection_id, 5, 3)
    await read_due_now(engine, connection_id)
    await measure_display_delays(units, settings, channels)
    assert len(await samples(engine, connection_id)) == 1
    async with engine.connect() as conn:
        assert (
            await conn.execute(
                sa.select(sa.func.count())
                .select_from(display_probes)
                .where(display_probes.c.connection_id == connection_id)
            )
        ).scalar_one() == 0
    # The next tick probes version 3, which the channel shows: the second sample announces.
    channel.display()
    await measure_display_delays(units, settings, channels)
    assert [how for how, _ in await samples(engine, connection_id)] == ["read_back", "read_back"]
    [event] = await announced(engine, connection_id)
    assert (event.merchant_id, event.samples) == (merchant_id, 2)
    assert woken == [True]  # the announcement's commit woke the relay
    assert 5.0 <= event.p50_s <= event.p95_s < 60.0

    async with engine.connect() as conn:
        delay = await read_display_delay(conn, settings, connection_id)
    assert delay.measured and (delay.p50_s, delay.p95_s) == (event.p50_s, event.p95_s)
    # A drift check right after a push does not take the channel's lag for drift.
    channel.shown = 99
    assert await check_drift(engine, settings, channels, connection_id) == []
    channel.display()
    # Nothing new pushed: nothing read, nothing announced again.
    reads = channel.reads
    await measure_display_delays(units, settings, channels)
    assert channel.reads == reads and len(await announced(engine, connection_id)) == 1
    assert woken == [True]


async def test_a_channel_that_never_shows_it_records_a_censored_sample_and_an_unreadable_one_its_acceptance(
    engine: AsyncEngine,
) -> None:
    settings = PublisherSettings(display_probe_max_s=0.001)
    units = publisher_units(engine)
    channels = ChannelsUnderTest()
    drainer = Drainer(PushStore(engine), channels, settings)
    lagging = LaggingChannel()
    merchant_id, connection_id = await connected(engine, channels, lagging)
    await pushed(engine, drainer, merchant_id, connection_id, 4, 1)
    await measure_display_delays(units, settings, channels)  # opens the probe and reads: not shown, past the maximum
    [(how, delay)] = await samples(engine, connection_id)
    assert how == "censored" and delay >= 5.0

    merchant_id, unreadable = await connected(engine, channels, UnreadableChannel())
    await pushed(engine, drainer, merchant_id, unreadable, 4, 1)
    # Two publisher instances measure at once: the push is sampled once.
    await asyncio.gather(
        measure_display_delays(units, settings, channels), measure_display_delays(units, settings, channels)
    )
    [(how, delay)] = await samples(engine, unreadable)
    assert how == "accepted" and 5.0 <= delay < 60.0
    async with engine.connect() as conn:
        health = await read_display_delay(conn, settings, unreadable)
    assert (health.measured, health.p95_s, health.samples) == (False, settings.display_delay_default_s, 1)
