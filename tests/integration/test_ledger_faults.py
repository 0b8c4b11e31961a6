"""Ledger processes under faults: a crash between commits, several instances at once.

Each test runs `python -m stock_ledger serve` processes as the image runs them, against
a PostgreSQL and a broker of its own, and feeds orders.v1 directly, so that the test
controls every member of the consumer group. (On the session's broker, the session's
ledger would have to be stopped and restarted; the embedded broker keeps members that
were stopped in the middle of a rebalance, and the restarted ledger's join then waited
longer than a minute.)
"""

from __future__ import annotations

import asyncio
import itertools
import random
import sys
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from stocksync_common.contracts import OrderLineMoved, StockChanged
from stocksync_common.kafka import encode_event
from stocksync_common.topics import ORDERS, STOCK_CHANGED
from stocksync_embedded.stack import ManagedProcess, Stack, free_port

from tests.conftest import PrivateDatabase, own_infrastructure
from tests.integration.broker_reads import committed_offsets, events_on_topic
from tests.integration.ledger_helpers import line_moved

pytestmark = [pytest.mark.integration, pytest.mark.slow]

GROUP = "stock-ledger"


@pytest.fixture
def own(tmp_path_factory: pytest.TempPathFactory, private_database: PrivateDatabase) -> Iterator[Stack]:
    with own_infrastructure(tmp_path_factory.mktemp("ledger-faults"), private_database) as stack:
        yield stack


@pytest.fixture
def database_url(own: Stack) -> str:
    assert own.database_url
    return own.database_url


@pytest.fixture
def kafka_bootstrap_servers(own: Stack) -> str:
    assert own.kafka_bootstrap_servers
    return own.kafka_bootstrap_servers


@pytest.fixture
def ledger_group(own: Stack) -> Iterator[Callable[..., ManagedProcess]]:
    """Start ledger processes of the real consumer group; only the test's are members."""
    started: list[ManagedProcess] = []

    def start(name: str, **env: str) -> ManagedProcess:
        port = free_port()
        process = ManagedProcess(
            name,
            [sys.executable, "-m", "stock_ledger", "serve"],
            {**own.service_env("stock-ledger"), "HTTP_PORT": str(port), **env},
            own.home / "logs" / f"{name}.log",
            f"http://127.0.0.1:{port}/readyz",
        )
        process.start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def placed(merchant_id: uuid.UUID, connection_id: uuid.UUID, n: int, sku: str) -> OrderLineMoved:
    return line_moved(merchant_id, connection_id, "placed", 1, sku=sku, order=f"order-{n}", channel_type="shopify")


async def produce(bootstrap_servers: str, events: list[OrderLineMoved]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, acks="all", linger_ms=5)
    await producer.start()
    try:
        sends = [await producer.send(ORDERS.name, encode_event(e), key=ORDERS.key_of(e)) for e in events]
        await asyncio.gather(*sends)
    finally:
        await producer.stop()


def with_duplicates(events: list[OrderLineMoved], rng: random.Random) -> list[OrderLineMoved]:
    """Every 7th event delivered twice in a row; every 11th sent again later under a new event id."""
    stream: list[OrderLineMoved] = []
    for n, event in enumerate(events):
        stream.append(event)
        if n % 7 == 0:
            stream.append(event)
        if n % 11 == 0:
            later = min(len(events) - 1, n + rng.randint(1, 50))
            stream.append(events[later].model_copy(update={"event_id": uuid.uuid4()}))
    return stream


async def ledger_state(engine: AsyncEngine, merchant_id: uuid.UUID) -> dict[str, tuple[int, int]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.text("SELECT sku, reserved, version FROM stock_ledger.stock_items WHERE merchant_id = :m"),
            {"m": merchant_id},
        )
        return {row.sku: (row.reserved, row.version) for row in rows}


async def ledger_entries_by_event(engine: AsyncEngine, merchant_id: uuid.UUID) -> dict[uuid.UUID, tuple[int, int]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.text("SELECT event_id, id, version FROM stock_ledger.ledger_entries WHERE merchant_id = :m"),
            {"m": merchant_id},
        )
        return {row.event_id: (row.id, row.version) for row in rows}


async def wait_until(predicate: Callable[[], Awaitable[bool]], limit_s: float = 90.0) -> None:
    try:
        async with asyncio.timeout(limit_s):
            while not await predicate():  # noqa: ASYNC110 - polls PostgreSQL, which sends no event
                await asyncio.sleep(0.2)
    except TimeoutError:
        raise AssertionError(f"condition not met within {limit_s}s") from None


async def test_ledger_killed_between_database_and_offset_commit_applies_redelivered_events_once(
    ledger_group: Callable[..., ManagedProcess], database_url: str, kafka_bootstrap_servers: str
) -> None:
    merchant_id, connection_id = uuid.uuid4(), uuid.uuid4()
    events = [placed(merchant_id, connection_id, n, "A") for n in range(200)]
    engine = create_async_engine(database_url)
    try:
        before = await committed_offsets(kafka_bootstrap_servers, GROUP, ORDERS)
        await produce(kafka_bootstrap_servers, with_duplicates(events, random.Random(3)))
        crashing = ledger_group("stock-ledger-crashing", FAULT_EXIT_AFTER_DB_COMMIT="true")
        assert crashing.process is not None
        exit_code = await asyncio.to_thread(crashing.process.wait, 90)
        assert exit_code == 70, f"the ledger did not exit at the fault; see {crashing.log_path}"

        # The database committed a batch whose offsets were not committed.
        applied_by_crashed = await ledger_entries_by_event(engine, merchant_id)
        state_after_crash = await ledger_state(engine, merchant_id)
        assert applied_by_crashed, "the crashed process committed nothing"
        assert await committed_offsets(kafka_bootstrap_servers, GROUP, ORDERS) == before

        ledger_group("stock-ledger-restarted")

        async def all_applied() -> bool:
            return len(await ledger_entries_by_event(engine, merchant_id)) >= len(events)

        await wait_until(all_applied)
        await wait_until(lambda: _offsets_moved(kafka_bootstrap_servers, before))
        after = await ledger_entries_by_event(engine, merchant_id)
        state = await ledger_state(engine, merchant_id)
    finally:
        await engine.dispose()
    assert len(after) == len(events)
    assert state["A"][0] == len(events)
    # What the crashed process applied was redelivered and changed nothing: same entries, same versions.
    assert {event_id: after[event_id] for event_id in applied_by_crashed} == applied_by_crashed
    assert state["A"][1] >= state_after_crash["A"][1]


async def _offsets_moved(bootstrap_servers: str, before: dict[int, int]) -> bool:
    return await committed_offsets(bootstrap_servers, GROUP, ORDERS) != before


async def read_stock_changed(bootstrap_servers: str, merchant_id: uuid.UUID) -> dict[str, list[int]]:
    """Every StockChanged version of the merchant, per SKU, in topic order."""
    versions: dict[str, list[int]] = defaultdict(list)
    for event in await events_on_topic(bootstrap_servers, STOCK_CHANGED):
        if isinstance(event, StockChanged) and event.merchant_id == merchant_id:
            versions[event.sku].append(event.version)
    return dict(versions)


async def test_two_instances_with_moving_partitions_reserve_each_unique_line_once_and_publish_versions_in_order(
    ledger_group: Callable[..., ManagedProcess], database_url: str, kafka_bootstrap_servers: str
) -> None:
    merchant_id, connection_id = uuid.uuid4(), uuid.uuid4()
    rng = random.Random(11)
    skus = ("HOT-1", "HOT-2", "HOT-3")
    events = [placed(merchant_id, connection_id, n, rng.choice(skus)) for n in range(1000)]
    stream = with_duplicates(events, rng)
    engine = create_async_engine(database_url)
    try:
        first, second = ledger_group("stock-ledger-1"), ledger_group("stock-ledger-2")
        await asyncio.gather(asyncio.to_thread(first.wait_ready), asyncio.to_thread(second.wait_ready))
        third_of_stream = len(stream) // 3
        await produce(kafka_bootstrap_servers, stream[:third_of_stream])
        # Partitions move: the second instance leaves mid-stream, a third joins.
        await asyncio.to_thread(second.stop)
        await produce(kafka_bootstrap_servers, stream[third_of_stream : 2 * third_of_stream])
        third = ledger_group("stock-ledger-3")
        await asyncio.to_thread(third.wait_ready)
        await produce(kafka_bootstrap_servers, stream[2 * third_of_stream :])

        expected = Counter(event.sku for event in events)

        async def all_applied() -> bool:
            state = await ledger_state(engine, merchant_id)
            return sum(reserved for reserved, _ in state.values()) >= len(events)

        await wait_until(all_applied)
        state = await ledger_state(engine, merchant_id)

        async def all_published() -> bool:
            published = await read_stock_changed(kafka_bootstrap_servers, merchant_id)
            return all(published.get(sku, [0])[-1] == state[sku][1] for sku in skus)

        await wait_until(all_published)
        published = await read_stock_changed(kafka_bootstrap_servers, merchant_id)
        entries = await ledger_entries_by_event(engine, merchant_id)
    finally:
        await engine.dispose()
    assert {sku: reserved for sku, (reserved, _) in state.items()} == dict(expected)
    assert len(entries) == len(events)
    for sku in skus:
        versions = published[sku]
        assert all(a < b for a, b in itertools.pairwise(versions)), f"{sku}: {versions}"
        assert versions[-1] == state[sku][1]
    print(f"\nStockChanged per SKU for 1,000 lines: {[len(published[s]) for s in skus]}")
