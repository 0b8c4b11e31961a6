"""SIGTERM to a stock-ledger process while orders stream in: nothing lost, nothing twice.

The ledger consumes orders.v1 as the image runs it (`python -m stock_ledger serve`).
While a producer writes order lines, the process gets SIGTERM. A graceful shutdown
means: it exits on its own once its shutdown is complete; the batch in hand is applied and its offsets are
committed, so what the database applied is exactly what lies below the committed
offsets. A new process then applies the rest, and the
final stock equals the unique order lines, whatever was redelivered or sent twice.
"""

from __future__ import annotations

import asyncio
import random
import signal
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from stocksync_common.contracts import OrderLineMoved
from stocksync_common.kafka import encode_event
from stocksync_common.topics import ORDERS
from stocksync_embedded.stack import Stack

from tests.conftest import PrivateDatabase, own_infrastructure
from tests.integration.broker_reads import committed_offsets

pytestmark = [pytest.mark.integration, pytest.mark.slow]

GROUP = "stock-ledger"
LINES = 3000
SKUS = 40


@pytest.fixture
def sole_ledger(tmp_path_factory: pytest.TempPathFactory, private_database: PrivateDatabase) -> Iterator[Stack]:
    """A database and broker of the test's own, so its ledger is the only group member."""
    with own_infrastructure(tmp_path_factory.mktemp("graceful"), private_database) as stack:
        yield stack


def order_lines(merchant_id: uuid.UUID) -> list[OrderLineMoved]:
    connection_id = uuid.uuid4()
    rng = random.Random(7)
    return [
        OrderLineMoved(
            merchant_id=merchant_id,
            connection_id=connection_id,
            channel_type="shopify",
            external_order_id=f"order-{n}",
            line_id="1",
            sku=f"SKU-{n % SKUS}",
            movement="placed",
            quantity=rng.randint(1, 3),
            received_at=datetime.now(UTC),
            causation_id=f"test:order-{n}:1:placed",
        )
        for n in range(LINES)
    ]


async def produce(
    producer: AIOKafkaProducer, events: list[OrderLineMoved], sent: list[tuple[uuid.UUID, int, int]]
) -> None:
    """Send each event, every tenth one twice (a redelivery); record where each landed."""
    for n, event in enumerate(events):
        for _ in range(2 if n % 10 == 0 else 1):
            metadata = await (await producer.send(ORDERS.name, encode_event(event), key=ORDERS.key_of(event)))
            sent.append((event.event_id, metadata.partition, metadata.offset))


async def applied_event_ids(engine: AsyncEngine, ids: set[uuid.UUID]) -> set[uuid.UUID]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.text("SELECT event_id FROM stock_ledger.inbox WHERE topic = :topic AND event_id = ANY(:ids)"),
            {"topic": ORDERS.name, "ids": list(ids)},
        )
        return {row.event_id for row in rows}


async def wait_until(predicate: Callable[[], Awaitable[bool]], limit_s: float = 30.0) -> None:
    try:
        async with asyncio.timeout(limit_s):
            while not await predicate():  # noqa: ASYNC110 - polls PostgreSQL, which sends no event
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"condition not met within {limit_s}s") from None


async def test_sigterm_mid_stream_commits_the_batch_in_hand_and_a_restart_applies_each_line_once(
    sole_ledger: Stack,
) -> None:
    database_url, kafka_bootstrap_servers = sole_ledger.database_url, sole_ledger.kafka_bootstrap_servers
    assert database_url and kafka_bootstrap_servers
    merchant_id = uuid.uuid4()
    events = order_lines(merchant_id)
    all_ids = {event.event_id for event in events}
    engine = create_async_engine(database_url)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap_servers, acks="all", linger_ms=5)
    await producer.start()
    try:
        before = await committed_offsets(kafka_bootstrap_servers, GROUP, ORDERS)
        ledger = sole_ledger.start_service("stock-ledger")
        await asyncio.to_thread(ledger.wait_ready)
        sent: list[tuple[uuid.UUID, int, int]] = []
        streaming = asyncio.create_task(produce(producer, events, sent))

        async def some_applied() -> bool:
            return bool(await applied_event_ids(engine, all_ids))

        await wait_until(some_applied)
        exit_code = await asyncio.to_thread(ledger.stop)  # SIGTERM while the stream goes on
        await streaming

        # uvicorn re-raises the SIGTERM once its shutdown is complete; a process that
        # overran its grace period would have been killed (-SIGKILL) instead.
        assert exit_code == -signal.SIGTERM, f"the ledger did not stop gracefully; see {ledger.log_path}"
        assert "Application shutdown complete." in ledger.log_path.read_text()
        # The batch in hand was applied and committed: what the database applied is
        # exactly what lies below the committed offsets, no more, no less.
        committed = await committed_offsets(kafka_bootstrap_servers, GROUP, ORDERS)
        below_committed = {
            event_id
            for event_id, partition, offset in sent
            if before.get(partition, 0) <= offset < committed.get(partition, 0)
        }
        applied_at_stop = await applied_event_ids(engine, all_ids)
        assert applied_at_stop == below_committed
        # The consumer sends LeaveGroup on stop (aiokafka), but the embedded broker keeps
        # listing the member until its session times out, so membership is not asserted
        # here; the restart below must still take over every partition.
        print(f"applied before the stop: {len(applied_at_stop)} of {LINES} lines")

        restarted = sole_ledger.start_service("stock-ledger")
        await asyncio.to_thread(restarted.wait_ready)

        async def all_applied() -> bool:
            return await applied_event_ids(engine, all_ids) == all_ids

        await wait_until(all_applied)
        async with engine.connect() as conn:
            reserved: dict[str, int] = dict(
                (
                    await conn.execute(
                        sa.text("SELECT sku, reserved FROM stock_ledger.stock_items WHERE merchant_id = :m"),
                        {"m": merchant_id},
                    )
                ).all()
            )
            entries: dict[str, int] = dict(
                (
                    await conn.execute(
                        sa.text(
                            "SELECT sku, count(*) FROM stock_ledger.ledger_entries WHERE merchant_id = :m GROUP BY sku"
                        ),
                        {"m": merchant_id},
                    )
                ).all()
            )
        expected_reserved: Counter[str] = Counter()
        for event in events:
            expected_reserved[event.sku] += event.quantity
        assert reserved == dict(expected_reserved)
        assert entries == dict(Counter(event.sku for event in events))
        assert sum(entries.values()) == LINES
    finally:
        await producer.stop()
        await engine.dispose()
