"""The outbox relay's lease: one holder at a time, handed over when the holder is gone.

The lease is a session advisory lock on a connection of the relay's own. These tests
end that session the ways production does (a terminated backend, as a PostgreSQL
restart or an operator would; a frozen holder whose session falls silent, as a network
cut would; a graceful stop) and check that another relay takes over, that the old one
publishes nothing once it has lost the lease, and that each key's rows reach the broker
in order (a row may come twice after a handover: the inboxes absorb the repeat).
Each test has a schema of its own on the session's PostgreSQL and broker, and events
on stock.oversells.v1, which no service consumes.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine

from stocksync_common.contracts import OversellDetected
from stocksync_common.db import make_engine
from stocksync_common.kafka import make_producer
from stocksync_common.outbox import OutboxRelay
from stocksync_common.uow import UnitOfWorkFactory

from tests.integration.crash_worker import Tables, settings
from tests.integration.test_batching_crashes import versions_on_topic

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def oversell(merchant_id: uuid.UUID, version: int) -> OversellDetected:
    return OversellDetected(
        causation_id=f"lease-test-{version}",
        merchant_id=merchant_id,
        sku="X",
        version=version,
        available=-version,
        oversold=1,
    )


async def write(engine: AsyncEngine, tables: Tables, events: list[OversellDetected]) -> None:
    async with UnitOfWorkFactory(engine, outbox=tables.outbox).begin() as uow:
        uow.add(events)


async def unpublished(engine: AsyncEngine, tables: Tables) -> int:
    async with engine.connect() as conn:
        query = sa.select(sa.func.count()).select_from(tables.outbox).where(tables.outbox.c.published_at.is_(None))
        return int((await conn.execute(query)).scalar_one())


async def all_published(engine: AsyncEngine, tables: Tables) -> bool:
    return await unpublished(engine, tables) == 0


async def until(condition: Callable[[], Awaitable[bool]], attempts: int = 600) -> None:
    """Wait (polling every 0.1 s, at most `attempts` times) until `condition()` is true;
    a hang guard, not a timing assertion."""
    for _ in range(attempts):
        if await condition():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"never true: {condition}")


async def holds_lease(relay: OutboxRelay) -> bool:
    return relay.holds_lease


async def lease_holder(engine: AsyncEngine, relay: OutboxRelay) -> int | None:
    """The backend pid holding the relay's lease (a session advisory lock on one bigint)."""
    async with engine.connect() as conn:
        pid = await conn.scalar(
            sa.text(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1 "
                "AND classid::bigint = CAST(:key AS bigint) >> 32 AND objid::bigint = CAST(:key AS bigint) & 4294967295"
            ),
            {"key": relay._lock_key},
        )
    return None if pid is None else int(pid)


def replayed_in_order(versions: list[int]) -> bool:
    """One key's versions as the broker holds them: increasing runs, where a run that
    starts lower than the previous one ended (a new holder publishing again what was not
    marked) replays every version up to that end. So no version older than one already
    published ever arrives after it, except as part of a complete, ordered replay."""
    runs: list[list[int]] = []
    for version in versions:
        if runs and version > runs[-1][-1]:
            runs[-1].append(version)
        else:
            runs.append([version])
    return all(set(range(run[0], previous[-1] + 1)) <= set(run) for previous, run in itertools.pairwise(runs))


class Relays:
    """Relays of one outbox, each with an engine and a producer of its own (as instances would)."""

    def __init__(self, database_url: str, bootstrap: str, tables: Tables) -> None:
        self.database_url, self.bootstrap, self.tables = database_url, bootstrap, tables
        self.started: list[tuple[OutboxRelay, asyncio.Task[None], AsyncEngine, AIOKafkaProducer]] = []

    async def start(self, **options: float) -> OutboxRelay:
        engine = make_engine(self.database_url, 3)
        producer = make_producer(settings(self.database_url, self.bootstrap))
        await producer.start()
        relay = OutboxRelay(engine, self.tables.outbox, producer, bootstrap_servers=self.bootstrap, **options)  # type: ignore[arg-type]
        self.started.append((relay, asyncio.create_task(relay.run()), engine, producer))
        return relay

    def task(self, relay: OutboxRelay) -> asyncio.Task[None]:
        return next(task for r, task, _, _ in self.started if r is relay)

    async def stop_all(self) -> None:
        for relay, task, engine, producer in self.started:
            relay.request_stop()
            await asyncio.wait_for(task, 60)
            await producer.stop()
            await engine.dispose()


def test_a_frozen_holder_loses_its_lease_to_another_relay_and_publishes_nothing_once_it_wakes(
    database_url: str, kafka_bootstrap_servers: str
) -> None:
    tables = Tables(f"relay_lease_{uuid.uuid4().hex[:8]}")
    merchant_id = uuid.uuid4()

    async def scenario() -> None:
        engine = make_engine(database_url, 3)
        await tables.create(engine)
        await write(engine, tables, [oversell(merchant_id, v) for v in range(1, 11)])
        relays = Relays(database_url, kafka_bootstrap_servers, tables)
        # A relay in a process of its own, with a lease timeout of 2 s (crash_worker.py).
        frozen = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.integration.crash_worker",
            "lease",
            tables.metadata.schema or "",
            database_url,
            kafka_bootstrap_servers,
            cwd=REPO,
        )
        try:
            probe = OutboxRelay(engine, tables.outbox, None, bootstrap_servers=kafka_bootstrap_servers)  # type: ignore[arg-type]
            await until(lambda: all_published(engine, tables))
            old_holder = await lease_holder(engine, probe)
            assert old_holder is not None

            os.kill(frozen.pid, signal.SIGSTOP)  # its session falls silent, as on a network cut
            await write(engine, tables, [oversell(merchant_id, v) for v in range(11, 21)])
            relay = await relays.start()
            await until(lambda: all_published(engine, tables))
            assert relay.holds_lease
            assert await lease_holder(engine, probe) == relay._lease.get_server_pid() != old_holder

            os.kill(frozen.pid, signal.SIGCONT)  # it wakes up believing it holds the lease
            for version in range(21, 31):
                await write(engine, tables, [oversell(merchant_id, version)])
                relay.wake()
                await asyncio.sleep(0.05)
            await until(lambda: all_published(engine, tables))
            assert frozen.returncode is None  # still running: it lost the lease, not its life
            assert await lease_holder(engine, probe) == relay._lease.get_server_pid()
        finally:
            os.kill(frozen.pid, signal.SIGCONT)
            frozen.kill()
            await frozen.wait()
            await relays.stop_all()
            await engine.dispose()
        # Every row once, in order: the frozen relay published nothing after it woke.
        assert await versions_on_topic(kafka_bootstrap_servers, merchant_id) == list(range(1, 31))

    asyncio.run(scenario())


def test_a_holder_whose_session_is_terminated_stops_and_the_lease_moves_with_each_key_in_order(
    database_url: str, kafka_bootstrap_servers: str
) -> None:
    tables = Tables(f"relay_lease_{uuid.uuid4().hex[:8]}")
    merchants = [uuid.uuid4() for _ in range(3)]
    rounds = 300

    async def scenario() -> dict[uuid.UUID, list[int]]:
        engine = make_engine(database_url, 3)
        await tables.create(engine)
        relays = Relays(database_url, kafka_bootstrap_servers, tables)
        first = await relays.start()
        await until(lambda: holds_lease(first))
        second = await relays.start()
        terminated: list[int] = []
        try:
            for version in range(1, rounds + 1):
                await write(engine, tables, [oversell(m, version) for m in merchants])
                first.wake()
                second.wake()
                if version % 75 == 0:
                    # The holder's session ends under it, mid-stream (as on a PostgreSQL restart).
                    holder = await lease_holder(engine, first)
                    if holder is not None:
                        async with engine.connect() as conn:
                            await conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": holder})
                        terminated.append(holder)
                await asyncio.sleep(0.005)
            await until(lambda: all_published(engine, tables))

            async def taken_again() -> bool:
                # The last round ends the holder's session: the lease is taken again (on a
                # new session) by exactly one relay, which knows it.
                holder = await lease_holder(engine, first)
                flags = [r.holds_lease for r in (first, second)]
                return holder is not None and holder not in terminated and flags.count(True) == 1

            await until(taken_again)
            assert len(terminated) == rounds // 75
        finally:
            await relays.stop_all()
            await engine.dispose()
        return {m: await versions_on_topic(kafka_bootstrap_servers, m) for m in merchants}

    published = asyncio.run(scenario())
    for versions in published.values():
        assert set(versions) == set(range(1, rounds + 1))
        assert replayed_in_order(versions)
        assert versions[-1] == rounds


def test_a_graceful_stop_publishes_what_was_committed_before_it_and_frees_the_lease_while_others_write(
    database_url: str, kafka_bootstrap_servers: str
) -> None:
    tables = Tables(f"relay_lease_{uuid.uuid4().hex[:8]}")
    merchant_id = uuid.uuid4()

    async def scenario() -> list[int]:
        engine = make_engine(database_url, 3)
        await tables.create(engine)
        relays = Relays(database_url, kafka_bootstrap_servers, tables)
        stopping = await relays.start()
        await until(lambda: holds_lease(stopping))
        writing = True
        version = 0

        async def keep_writing() -> None:
            # Another instance's commits: they wake the holder (NOTIFY) without pause.
            nonlocal version
            while writing:
                version += 1
                await write(engine, tables, [oversell(merchant_id, version)])
                stopping.wake()
                await asyncio.sleep(0.002)

        async def wrote_at_least(count: int) -> bool:
            return version >= count

        writer = asyncio.create_task(keep_writing())
        try:
            await until(lambda: wrote_at_least(100))
            async with engine.connect() as conn:
                committed = int(await conn.scalar(sa.select(sa.func.max(tables.outbox.c.id))))
            stopping.request_stop()
            await asyncio.wait_for(relays.task(stopping), 60)  # a hang guard: it must end under load
            assert not stopping.holds_lease
            async with engine.connect() as conn:
                left = await conn.scalar(
                    sa.select(sa.func.count())
                    .select_from(tables.outbox)
                    .where(tables.outbox.c.id <= committed, tables.outbox.c.published_at.is_(None))
                )
            assert left == 0  # it published everything committed before it was asked to stop
            successor = await relays.start()
            await until(lambda: holds_lease(successor))  # the lease is free: taken at once
            writing = False
            await writer
            successor.wake()
            await until(lambda: all_published(engine, tables))
        finally:
            writing = False
            await writer
            await relays.stop_all()
            await engine.dispose()
        return await versions_on_topic(kafka_bootstrap_servers, merchant_id)

    versions = asyncio.run(scenario())
    assert set(versions) == set(range(1, max(versions) + 1))
    assert replayed_in_order(versions)


class CountingRelay(OutboxRelay):
    """Counts the relay's reads of its outbox (each also marks what the broker acknowledged)."""

    reads = 0

    async def _on_lease(self, method: str, sql: str, *args: object) -> object:
        if sql == self._mark_and_read_sql:
            self.reads += 1
        return await super()._on_lease(method, sql, *args)


def test_a_commit_is_published_in_two_reads_of_the_outbox_the_second_marking_it(
    database_url: str, kafka_bootstrap_servers: str
) -> None:
    """A batch short of full took every row committed before its read: the relay waits for
    the broker (or the next commit) instead of reading again while the batch is in flight."""
    tables = Tables(f"relay_lease_{uuid.uuid4().hex[:8]}")
    merchant_id = uuid.uuid4()

    async def scenario() -> tuple[int, list[int]]:
        engine = make_engine(database_url, 3)
        await tables.create(engine)
        producer = make_producer(settings(database_url, kafka_bootstrap_servers))
        await producer.start()
        # No lease check or poll within the test (each is a read too): a loaded machine may
        # take longer than the default half second to have the batch acknowledged.
        relay = CountingRelay(
            engine,
            tables.outbox,
            producer,  # type: ignore[arg-type]
            bootstrap_servers=kafka_bootstrap_servers,
            poll_interval_s=60,
            lease_timeout_s=180,
        )
        task = asyncio.create_task(relay.run())
        try:
            await until(lambda: holds_lease(relay))
            await until(lambda: all_published(engine, tables))  # the broker check's first round, if any
            before = relay.reads
            await write(engine, tables, [oversell(merchant_id, v) for v in range(1, 6)])
            relay.wake()
            await until(lambda: all_published(engine, tables))
            reads = relay.reads - before
        finally:
            relay.request_stop()
            await asyncio.wait_for(task, 60)
            await producer.stop()
            await engine.dispose()
        return reads, await versions_on_topic(kafka_bootstrap_servers, merchant_id)

    reads, versions = asyncio.run(scenario())
    assert versions == [1, 2, 3, 4, 5]
    assert reads == 2
