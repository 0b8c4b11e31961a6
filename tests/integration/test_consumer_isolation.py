"""The batch consumer over the real broker and database: one bad event is set aside, an outage is waited out.

The topic is stock.oversells.v1, which no service consumes; each test uses its own
merchant and consumer group, and its handler only looks at that merchant's events.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import create_async_engine

from stocksync_common.contracts import OversellDetected
from stocksync_common.dead_letters import DeadLetter, DeadLetterStore
from stocksync_common.kafka import BatchConsumer, ConsumedEvent, encode_event
from stocksync_common.settings import ServiceSettings
from stocksync_common.topics import OVERSELLS
from stocksync_common.uow import UnitOfWorkFactory

from stock_ledger.adapters.tables import dead_letters, outbox

pytestmark = pytest.mark.integration


def oversells(merchant_id: uuid.UUID, count: int) -> list[OversellDetected]:
    # One SKU: one partition, in order.
    return [
        OversellDetected(
            causation_id="isolation-test", merchant_id=merchant_id, sku="X", version=n, available=-n, oversold=1
        )
        for n in range(1, count + 1)
    ]


async def produce(bootstrap_servers: str, events: list[OversellDetected], raw: dict[int, bytes] | None = None) -> None:
    """The events in order; `raw` replaces the event at an index with bytes that break the contract."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, acks="all")
    await producer.start()
    try:
        for index, event in enumerate(events):
            value = (raw or {}).get(index, encode_event(event))
            await producer.send_and_wait(OVERSELLS.name, value, key=OVERSELLS.key_of(event))
    finally:
        await producer.stop()


async def consume_until(
    settings: ServiceSettings,
    handler: Callable[[list[ConsumedEvent]], Awaitable[None]],
    sink: Callable[[list[DeadLetter]], Awaitable[None]],
    done: asyncio.Event,
    timeout: float = 90.0,
) -> None:
    consumer = BatchConsumer(
        settings,
        [OVERSELLS],
        f"isolation-test-{uuid.uuid4().hex[:8]}",
        handler,
        max_batch=50,
        retry_backoff_s=0.05,
        retry_backoff_max_s=0.2,
        dead_letters=sink,
    )
    await consumer.start()
    task = asyncio.create_task(consumer.run())
    try:
        await asyncio.wait_for(done.wait(), timeout)
    finally:
        consumer.request_stop()
        await asyncio.wait_for(task, 30)
        await consumer.stop()


def test_an_event_the_handler_cannot_apply_is_dead_lettered_and_the_rest_applied_in_order(
    database_url: str, kafka_bootstrap_servers: str
) -> None:
    merchant_id = uuid.uuid4()
    events = oversells(merchant_id, 20)
    poison_version, broken_index = 7, 13
    broken = encode_event(events[broken_index]).replace(b'"sku":"X"', b'"sku":"X\\u0000"')
    settings = ServiceSettings(database_url=database_url, kafka_bootstrap_servers=kafka_bootstrap_servers)
    applied: list[int] = []
    expected = [e.version for e in events if e.version not in (poison_version, broken_index + 1)]
    done = asyncio.Event()

    async def handler(batch: list[ConsumedEvent]) -> None:
        mine = [i.event for i in batch if i.event.merchant_id == merchant_id]
        if any(isinstance(e, OversellDetected) and e.version == poison_version for e in mine):
            raise ValueError("Integer exceeds 64-bit range")  # what a bad value did to the rule engine
        applied.extend(e.version for e in mine if isinstance(e, OversellDetected))
        if applied == expected:
            done.set()

    async def run() -> list[Any]:
        engine = create_async_engine(database_url)
        try:
            store = DeadLetterStore(UnitOfWorkFactory(engine, outbox=outbox), dead_letters)
            await produce(kafka_bootstrap_servers, events, {broken_index: broken})
            await consume_until(settings, handler, store.record, done)
            async with engine.connect() as conn:
                rows = (
                    await conn.execute(
                        sa.select(dead_letters)
                        .where(dead_letters.c.merchant_id == merchant_id)
                        .order_by(dead_letters.c.offset)
                    )
                ).all()
                published = (
                    await conn.execute(
                        sa.select(sa.func.count())
                        .select_from(outbox)
                        .where(outbox.c.topic == "stock.oversells.v1.dlq", outbox.c.key == str(merchant_id).encode())
                    )
                ).scalar_one()
            return [rows, published]
        finally:
            await engine.dispose()

    rows, published = asyncio.run(run())

    assert [(row.topic, row.event_id) for row in rows] == [
        ("stock.oversells.v1", events[poison_version - 1].event_id),
        ("stock.oversells.v1", None),  # broke its contract: no event, its record kept
    ]
    assert "Integer exceeds 64-bit range" in rows[0].error
    assert rows[0].value == encode_event(events[poison_version - 1])
    assert rows[1].value == broken and "control character" in rows[1].error
    assert rows[0].offset < rows[1].offset
    # Published to the dead-letter topic through the outbox (or already relayed by a running ledger).
    assert published in (0, 2)


def test_a_database_outage_is_retried_with_backoff_and_dead_letters_nothing(
    database_url: str, kafka_bootstrap_servers: str
) -> None:
    merchant_id = uuid.uuid4()
    events = oversells(merchant_id, 10)
    settings = ServiceSettings(database_url=database_url, kafka_bootstrap_servers=kafka_bootstrap_servers)
    # A PostgreSQL that refuses connections (nothing listens there) for the first attempts.
    unreachable = create_async_engine("postgresql+asyncpg://stocksync@127.0.0.1:9/stocksync")
    attempts: list[int] = []
    applied: list[int] = []
    recorded: list[DeadLetter] = []
    done = asyncio.Event()

    async def handler(batch: list[ConsumedEvent]) -> None:
        mine = [i.event for i in batch if i.event.merchant_id == merchant_id]
        if mine and len(attempts) < 4:
            attempts.append(len(mine))
            async with unreachable.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
        applied.extend(e.version for e in mine if isinstance(e, OversellDetected))
        if applied == [e.version for e in events]:
            done.set()

    async def record(letters: list[DeadLetter]) -> None:
        recorded.extend(letters)

    async def run() -> None:
        await produce(kafka_bootstrap_servers, events)
        try:
            await consume_until(settings, handler, record, done)
        finally:
            await unreachable.dispose()

    asyncio.run(run())

    assert len(attempts) == 4 and len(set(attempts)) == 1  # the whole batch each time: never narrowed down
    assert [letter for letter in recorded if letter.merchant == merchant_id] == []
