"""The outbox keeps published rows for its retention window and gives them to a new broker.

Over a PostgreSQL and an embedded broker of the test's own (it restarts the broker).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from stocksync_common.contracts import OrderLineMoved
from stocksync_common.db import make_engine
from stocksync_common.outbox import OutboxRelay
from stocksync_common.raw_connection import raw_connection
from stocksync_common.topics import ORDERS
from stocksync_common.uow import UnitOfWorkFactory
from stocksync_embedded.stack import Stack

from order_ingest.adapters.tables import outbox
from tests.conftest import PrivateDatabase, own_infrastructure
from tests.integration.broker_reads import events_on_topic

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def order_line(merchant_id: uuid.UUID, n: int) -> OrderLineMoved:
    return OrderLineMoved(
        merchant_id=merchant_id,
        connection_id=uuid.uuid4(),
        channel_type="shopify",
        external_order_id=f"retention-{n}",
        line_id="1",
        sku="RETAINED",
        movement="placed",
        quantity=1,
        received_at=datetime.now(UTC),
        causation_id=f"retention:{n}:1:placed",
    )


async def read_all(bootstrap_servers: str, merchant_id: uuid.UUID) -> list[str]:
    """The external order ids of `merchant_id`'s events on orders.v1, to the end of each
    partition, in partition order."""
    events = await events_on_topic(bootstrap_servers, ORDERS)
    assert all(isinstance(event, OrderLineMoved) for event in events)
    return [e.external_order_id for e in events if isinstance(e, OrderLineMoved) and e.merchant_id == merchant_id]


def test_a_new_empty_broker_gets_the_retained_rows_again_in_order_and_old_rows_are_pruned(
    tmp_path: Path, private_database: PrivateDatabase
) -> None:
    with own_infrastructure(tmp_path, private_database) as stack:
        asyncio.run(retained_rows_go_to_a_new_broker(stack))


async def retained_rows_go_to_a_new_broker(stack: Stack) -> None:
    assert stack.database_url and stack.kafka_bootstrap_servers and stack.broker is not None
    engine = make_engine(stack.database_url, 2)
    producer = AIOKafkaProducer(
        bootstrap_servers=stack.kafka_bootstrap_servers, enable_idempotence=False, request_timeout_ms=5_000
    )
    await producer.start()
    relay = OutboxRelay(
        engine,
        outbox,
        producer,
        bootstrap_servers=stack.kafka_bootstrap_servers,
        retention_s=3600,
        broker_check_interval_s=0.001,
    )
    merchant_id = uuid.uuid4()
    try:
        async with UnitOfWorkFactory(engine, outbox=outbox).begin() as uow:
            uow.add([order_line(merchant_id, n) for n in range(5)])
        assert await relay.publish_batch() == 5
        assert await relay.publish_batch() == 0
        async with raw_connection(engine) as conn:
            # Published, and kept for the retention window.
            assert await conn.fetchval("SELECT count(*) FROM order_ingest.outbox WHERE published_at IS NULL") == 0
            assert await conn.fetchval("SELECT count(*) FROM order_ingest.outbox") == 5
        assert await relay.measure_backlog() == 0
        assert await read_all(stack.kafka_bootstrap_servers, merchant_id) == [f"retention-{n}" for n in range(5)]

        # The same broker again: nothing is published twice.
        assert await relay.publish_batch() == 0
        assert await read_all(stack.kafka_bootstrap_servers, merchant_id) == [f"retention-{n}" for n in range(5)]

        # The embedded broker restarts: empty, no topics, a new cluster id.
        old_cluster = stack.broker.cluster_id
        stack.broker.stop()
        stack.broker.start()
        assert stack.broker.cluster_id != old_cluster
        async with UnitOfWorkFactory(engine, outbox=outbox).begin() as uow:
            uow.add([order_line(merchant_id, 5)])
        published = 0
        for _ in range(20):  # the producer reconnects to the new broker
            try:
                published = await relay.publish_batch()
                break
            except Exception:
                relay._cluster_id = None
        assert published == 1
        # The retained rows first, in id order, then the new one.
        assert await read_all(stack.kafka_bootstrap_servers, merchant_id) == [f"retention-{n}" for n in range(6)]

        # Past retention, published rows are pruned; unpublished ones never are.
        async with UnitOfWorkFactory(engine, outbox=outbox).begin() as uow:
            uow.add([order_line(merchant_id, 6)])
        relay.retention_s = 0
        assert await relay.prune() == 6
        async with raw_connection(engine) as conn:
            assert await conn.fetchval("SELECT count(*) FROM order_ingest.outbox") == 1
    finally:
        await producer.stop()
        await engine.dispose()
