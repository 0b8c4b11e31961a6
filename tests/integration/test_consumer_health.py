"""Consumer lag read from the broker, and liveness that notices a dead consumer, on the
real broker and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client import REGISTRY

from stocksync_common.kafka import BatchConsumer, ConsumedEvent
from stocksync_common.runtime import Runtime, create_service_app
from stocksync_common.settings import ServiceSettings
from stocksync_common.topics import STOCK_CHANGED

pytestmark = pytest.mark.integration


def settings(database_url: str, kafka_bootstrap_servers: str) -> ServiceSettings:
    return ServiceSettings(
        database_url=database_url, kafka_bootstrap_servers=kafka_bootstrap_servers, consumer_lag_interval_s=1
    )


def gauge(group: str, tp: TopicPartition) -> float | None:
    return REGISTRY.get_sample_value(
        "stocksync_consumer_lag", {"group": group, "topic": tp.topic, "partition": str(tp.partition)}
    )


async def never_called(batch: list[ConsumedEvent]) -> None:
    raise AssertionError("the consumer is not run in this test")


async def ignore(batch: list[ConsumedEvent]) -> None:
    return None


async def produce(bootstrap: str, partition: int, count: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for _ in range(count):
            await producer.send_and_wait(STOCK_CHANGED.name, b"{}", key=b"k", partition=partition)
    finally:
        await producer.stop()


async def log_bounds(bootstrap: str, tps: list[TopicPartition]) -> tuple[dict[TopicPartition, int], ...]:
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await reader.start()
    try:
        return await reader.beginning_offsets(tps), await reader.end_offsets(tps)
    finally:
        await reader.stop()


async def assigned(consumer: BatchConsumer, timeout: float = 60.0) -> set[TopicPartition]:
    inner = consumer._consumer
    deadline = asyncio.get_running_loop().time() + timeout
    while not inner.assignment():
        # A fetch drives the group join; nothing is committed.
        await inner.getmany(timeout_ms=200, max_records=1)
        assert asyncio.get_running_loop().time() < deadline, "no partition assigned"
    return set(inner.assignment())


async def test_lag_is_the_committed_offset_against_the_log_end_per_partition_and_goes_on_revocation(
    database_url: str, kafka_bootstrap_servers: str
) -> None:
    group = f"lag-{uuid.uuid4()}"
    await produce(kafka_bootstrap_servers, partition=0, count=5)
    consumer = BatchConsumer(settings(database_url, kafka_bootstrap_servers), [STOCK_CHANGED], group, never_called)
    await consumer.start()
    try:
        tps = await assigned(consumer)
        assert len(tps) == STOCK_CHANGED.partitions
        beginning, end = await log_bounds(kafka_bootstrap_servers, sorted(tps))

        # Nothing committed: everything retained is ahead of the group.
        lags = await consumer.lag.measure()
        assert lags == {tp: end[tp] - beginning[tp] for tp in tps}
        first = TopicPartition(STOCK_CHANGED.name, 0)
        assert lags[first] >= 5
        assert gauge(group, first) == lags[first]

        # Committed two short of the end: exactly two behind, as the broker says.
        await consumer._consumer.commit({first: end[first] - 2})
        assert (await consumer.lag.measure())[first] == 2
        assert gauge(group, first) == 2

        # Records arrive while nothing is consumed: the timer's measure sees them.
        await produce(kafka_bootstrap_servers, partition=0, count=3)
        assert (await consumer.lag.measure())[first] == 5

        await consumer.lag.on_partitions_revoked({first})
        assert gauge(group, first) is None
    finally:
        await consumer.stop()
        consumer.lag.forget()
    assert all(gauge(group, tp) is None for tp in tps)


async def test_liveness_fails_when_a_consumer_task_has_died(database_url: str, kafka_bootstrap_servers: str) -> None:
    runtime = Runtime("test-service", settings(database_url, kafka_bootstrap_servers), outbox=None)
    runtime.add_consumer([STOCK_CHANGED], f"live-{uuid.uuid4()}", ignore)
    app = create_service_app(title="t", description="t", runtime=runtime)
    await runtime.start()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            alive = await client.get("/healthz")
            assert alive.status_code == 200
            assert alive.json() == {"status": "alive", "service": "test-service"}

            (task,) = runtime._consumer_tasks
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

            dead = await client.get("/healthz")
            assert dead.status_code == 503
            assert dead.json()["dead"] == [task.get_name()]
    finally:
        await runtime.stop()
    assert runtime.dead_tasks() == []  # a stopping process is not dead
