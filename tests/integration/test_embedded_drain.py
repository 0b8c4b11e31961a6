"""The embedded stack's stop waits for each consumer group to catch up (its broker keeps
records in memory only); `consumer_lag` is what it waits on."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import OffsetAndMetadata
from sqlalchemy.ext.asyncio import create_async_engine

from stocksync_embedded.broker import EmbeddedBroker
from stocksync_embedded.stack import Stack, consumer_lag, free_port

from tests.conftest import free_ports
from tests.integration.test_ledger_faults import ledger_state, placed, produce

pytestmark = [pytest.mark.integration]


async def test_consumer_lag_counts_what_the_group_has_not_committed(kafka_bootstrap_servers: str) -> None:
    topic, group = f"drain-{uuid.uuid4().hex[:8]}", f"drain-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 2, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap_servers)
    await producer.start()
    try:
        for n in range(5):
            await producer.send_and_wait(topic, b"x", partition=n % 2)  # 3 on partition 0, 2 on 1
    finally:
        await producer.stop()

    assert await consumer_lag(kafka_bootstrap_servers, group, [topic]) == 5

    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap_servers, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, 0), TopicPartition(topic, 1)])
        await consumer.commit(
            {TopicPartition(topic, 0): OffsetAndMetadata(2, ""), TopicPartition(topic, 1): OffsetAndMetadata(2, "")}
        )
    finally:
        await consumer.stop()

    assert await consumer_lag(kafka_bootstrap_servers, group, [topic]) == 1


@pytest.mark.slow
async def test_stopping_the_embedded_stack_lets_the_ledger_apply_what_was_already_published(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Without the drain, the ledger would be stopped before it fetched these lines, and the
    in-memory broker would take them with it."""
    home, ports = tmp_path_factory.mktemp("drain"), free_ports()
    stack = Stack(home, ports, database_url="", kafka_bootstrap_servers="")
    merchant_id, connection_id = uuid.uuid4(), uuid.uuid4()
    lines = [placed(merchant_id, connection_id, n, f"DRAIN-{n % 7}") for n in range(3000)]
    try:
        await asyncio.to_thread(stack.start_infrastructure, False)
        await asyncio.to_thread(stack.migrate)
        await asyncio.to_thread(lambda: stack.start_service("stock-ledger").wait_ready())
        assert stack.kafka_bootstrap_servers
        await produce(stack.kafka_bootstrap_servers, lines)
    finally:
        await asyncio.to_thread(stack.stop)

    again = Stack(home, ports, database_url="", kafka_bootstrap_servers="")
    try:
        await asyncio.to_thread(again.start_infrastructure, False)
        assert again.database_url
        engine = create_async_engine(again.database_url)
        try:
            state = await ledger_state(engine, merchant_id)
        finally:
            await engine.dispose()
    finally:
        await asyncio.to_thread(again.stop)
    assert sum(reserved for reserved, _ in state.values()) == len(lines)


def test_the_embedded_broker_runs_in_its_own_session_so_a_terminal_ctrl_c_spares_it(tmp_path: Path) -> None:
    """A Ctrl-C reaches the terminal's process group; the stack, not the signal, stops the
    broker, after the services have drained what it holds."""
    broker = EmbeddedBroker(free_port(), tmp_path / "broker.log")
    broker.start()
    try:
        assert broker._process is not None
        assert os.getsid(broker._process.pid) != os.getsid(0)
    finally:
        broker.stop()
