"""Crashes inside the batched hops lose nothing and apply nothing twice.

A relay killed (SIGKILL) after the broker acknowledged a batch and before the rows were
marked published: the next relay publishes them again, in order, and the inbox absorbs
the repeats. A consumer killed after its database commit and before its offset commit:
the batch is delivered again and applied once. Each test has a schema of its own
(tests/integration/crash_worker.py) on the session's PostgreSQL and broker, and events
on stock.oversells.v1, which no service consumes.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from stocksync_common.contracts import OversellDetected
from stocksync_common.db import make_engine
from stocksync_common.kafka import BatchConsumer, make_producer
from stocksync_common.outbox import OutboxRelay
from stocksync_common.topics import OVERSELLS
from stocksync_common.uow import UnitOfWorkFactory

from tests.integration.broker_reads import events_on_topic
from tests.integration.crash_worker import Tables, apply_handler, settings

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def oversells(merchant_id: uuid.UUID, count: int) -> list[OversellDetected]:
    return [
        OversellDetected(
            causation_id="crash-test", merchant_id=merchant_id, sku="X", version=n, available=-n, oversold=1
        )
        for n in range(1, count + 1)
    ]


def crash(*args: str) -> None:
    """Run a crash worker until it kills itself."""
    worker = subprocess.run(
        [sys.executable, "-m", "tests.integration.crash_worker", *args], cwd=REPO, timeout=120, check=False
    )
    assert worker.returncode == -signal.SIGKILL


async def versions_on_topic(bootstrap: str, merchant_id: uuid.UUID) -> list[int]:
    """The versions of `merchant_id`'s events on stock.oversells.v1, in partition order."""
    return [
        event.version
        for event in await events_on_topic(bootstrap, OVERSELLS)
        if event.merchant_id == merchant_id and isinstance(event, OversellDetected)
    ]


def test_a_relay_killed_between_publishing_and_marking_has_its_rows_published_again_in_order(
    database_url: str, kafka_bootstrap_servers: str
) -> None:
    tables = Tables(f"relay_crash_{uuid.uuid4().hex[:8]}")
    merchant_id = uuid.uuid4()

    async def prepare() -> None:
        engine = make_engine(database_url, 2)
        try:
            await tables.create(engine)
            async with UnitOfWorkFactory(engine, outbox=tables.outbox).begin() as uow:
                uow.add(oversells(merchant_id, 10))
        finally:
            await engine.dispose()

    asyncio.run(prepare())
    crash("relay", tables.metadata.schema or "", database_url, kafka_bootstrap_servers)

    async def after() -> tuple[int, list[int]]:
        engine = make_engine(database_url, 2)
        producer = make_producer(settings(database_url, kafka_bootstrap_servers))
        await producer.start()
        relay = OutboxRelay(engine, tables.outbox, producer, bootstrap_servers=kafka_bootstrap_servers)
        try:
            unmarked = await count_unpublished(engine)
            task = asyncio.create_task(relay.run())
            for _ in range(300):
                if await count_unpublished(engine) == 0:
                    break
                await asyncio.sleep(0.1)
            relay.request_stop()
            await asyncio.wait_for(task, 30)
            assert await count_unpublished(engine) == 0
            return unmarked, await versions_on_topic(kafka_bootstrap_servers, merchant_id)
        finally:
            await producer.stop()
            await engine.dispose()

    async def count_unpublished(engine: AsyncEngine) -> int:
        async with engine.connect() as conn:
            return int(
                (
                    await conn.execute(
                        sa.select(sa.func.count())
                        .select_from(tables.outbox)
                        .where(tables.outbox.c.published_at.is_(None))
                    )
                ).scalar_one()
            )

    unmarked, versions = asyncio.run(after())
    assert unmarked == 10  # the broker had them all, the outbox did not know
    # Published twice (the inboxes absorb the repeat), each time in order.
    assert versions == list(range(1, 11)) * 2


def test_a_consumer_killed_between_its_database_commit_and_its_offset_commit_applies_the_batch_once(
    database_url: str, kafka_bootstrap_servers: str
) -> None:
    tables = Tables(f"consumer_crash_{uuid.uuid4().hex[:8]}")
    merchant_id = uuid.uuid4()
    group = f"crash-test-{uuid.uuid4().hex[:8]}"
    events = oversells(merchant_id, 10)

    async def prepare() -> None:
        engine = make_engine(database_url, 2)
        producer = make_producer(settings(database_url, kafka_bootstrap_servers))
        await producer.start()
        try:
            await tables.create(engine)
            for event in events:
                await producer.send(OVERSELLS.name, event.model_dump_json().encode(), key=OVERSELLS.key_of(event))
            await producer.flush()
        finally:
            await producer.stop()
            await engine.dispose()

    asyncio.run(prepare())
    crash("consumer", tables.metadata.schema or "", database_url, kafka_bootstrap_servers, group, str(merchant_id))

    async def resume() -> tuple[int, int, list[int]]:
        engine = make_engine(database_url, 2)
        applied_before = await applied_versions(engine)
        redelivered: list[int] = []

        def seen(mine: list[OversellDetected], new: set[uuid.UUID]) -> None:
            redelivered.extend(e.version for e in mine if e.event_id not in new)

        consumer = BatchConsumer(
            settings(database_url, kafka_bootstrap_servers),
            [OVERSELLS],
            group,
            apply_handler(engine, tables, merchant_id, seen),
        )
        await consumer.start()
        task = asyncio.create_task(consumer.run())
        try:
            for _ in range(600):
                if len(await applied_versions(engine)) == len(events) and redelivered:
                    break
                await asyncio.sleep(0.1)
        finally:
            consumer.request_stop()
            await asyncio.wait_for(task, 30)
            await consumer.stop()
        try:
            return len(applied_before), len(redelivered), await applied_versions(engine)
        finally:
            await engine.dispose()

    async def applied_versions(engine: AsyncEngine) -> list[int]:
        async with engine.connect() as conn:
            return list((await conn.execute(sa.select(tables.effects.c.version).order_by("version"))).scalars())

    applied_before, redelivered, applied = asyncio.run(resume())
    assert applied_before >= 1  # the killed consumer's transaction was committed
    assert redelivered == applied_before  # its offsets were not: the same events came again
    assert applied == list(range(1, 11))  # and each was applied once
