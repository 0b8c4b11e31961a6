"""An idle consumer fetches less often, and its first records bring it back to full speed.

The fetch wait lives in aiokafka's fetcher (BatchConsumer sets it there, for want of a
public setter): this test also holds that to the aiokafka version in use.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

from stocksync_common.contracts import OversellDetected
from stocksync_common.kafka import BatchConsumer, ConsumedEvent, make_producer
from stocksync_common.settings import ServiceSettings
from stocksync_common.topics import OVERSELLS

pytestmark = pytest.mark.integration


async def test_a_consumer_idle_for_a_second_waits_longer_per_fetch_and_its_first_records_switch_it_back(
    database_url: str, kafka_bootstrap_servers: str
) -> None:
    settings = ServiceSettings(
        database_url=database_url,
        kafka_bootstrap_servers=kafka_bootstrap_servers,
        kafka_fetch_max_wait_ms=15,
        kafka_idle_fetch_max_wait_ms=120,
    )
    merchant_id = uuid.uuid4()
    applied: list[int] = []

    async def handle(batch: list[ConsumedEvent]) -> None:
        applied.extend(
            i.event.version
            for i in batch
            if i.event.merchant_id == merchant_id and isinstance(i.event, OversellDetected)
        )

    consumer = BatchConsumer(settings, [OVERSELLS], f"idle-fetch-{uuid.uuid4().hex[:8]}", handle)
    assert consumer.fetch_wait_ms == 15
    await consumer.start()
    task = asyncio.create_task(consumer.run())
    producer = make_producer(settings)
    await producer.start()
    try:
        for _ in range(300):  # a hang guard: the group's join, then a second without records
            if consumer.fetch_wait_ms == 120:
                break
            await asyncio.sleep(0.1)
        assert consumer.fetch_wait_ms == 120
        for version in (1, 2):
            event = OversellDetected(
                causation_id="idle-fetch", merchant_id=merchant_id, sku="X", version=version, available=-1, oversold=1
            )
            await producer.send_and_wait(OVERSELLS.name, event.model_dump_json().encode(), key=OVERSELLS.key_of(event))
        for _ in range(300):
            if len(applied) == 2:
                break
            await asyncio.sleep(0.05)
        assert applied == [1, 2]
        # Records came: the next fetches wait the busy wait again (until a quiet second).
        assert consumer.fetch_wait_ms == 15
    finally:
        consumer.request_stop()
        await asyncio.wait_for(task, 30)
        await consumer.stop()
        await producer.stop()
