"""The unit of work (stocksync_common.uow): inbox claims and outbox events commit with the
change or not at all, and the relay is woken only after a commit that wrote events."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from stocksync_common.contracts import StockChanged
from stocksync_common.db import make_engine
from stocksync_common.outbox import outbox_arrays, outbox_insert_sql
from stocksync_common.topics import ORDERS
from stocksync_common.uow import UnitOfWork, UnitOfWorkFactory

from stock_ledger.adapters.tables import inbox, outbox

pytestmark = [pytest.mark.integration]


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database_url, pool_size=2)
    yield engine
    await engine.dispose()


def stock_changed(merchant_id: uuid.UUID, causation_id: str) -> StockChanged:
    return StockChanged(
        merchant_id=merchant_id,
        sku="UOW",
        location="default",
        version=1,
        on_hand=5,
        reserved=0,
        available=5,
        causation_id=causation_id,
        occurred_at=datetime.now(UTC),
    )


async def outbox_causations(engine: AsyncEngine, prefix: str) -> list[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(outbox.c.causation_id).where(outbox.c.causation_id.startswith(prefix)).order_by(outbox.c.id)
        )
        return list(rows.scalars())


async def claimed(engine: AsyncEngine, ids: list[uuid.UUID]) -> set[uuid.UUID]:
    async with engine.connect() as conn:
        return set((await conn.execute(sa.select(inbox.c.event_id).where(inbox.c.event_id.in_(ids)))).scalars())


async def test_a_commit_writes_the_claims_and_the_events_in_order_then_wakes_the_relay(engine: AsyncEngine) -> None:
    woken: list[int] = []
    uow_factory = UnitOfWorkFactory(engine, inbox=inbox, outbox=outbox, wake_relay=lambda: woken.append(1))
    merchant_id, prefix = uuid.uuid4(), f"uow-commit-{uuid.uuid4()}"
    seen, new = uuid.uuid4(), uuid.uuid4()

    async with uow_factory() as uow:
        assert await uow.claim(ORDERS.name, [seen]) == {seen}
        await uow.commit()
    assert woken == []  # nothing was added to the outbox: nothing to publish

    async with uow_factory() as uow:
        # A redelivered id is not new; the same id twice in one call counts once.
        assert await uow.claim(ORDERS.name, [seen, new, new]) == {new}
        uow.add([stock_changed(merchant_id, f"{prefix}:1")])
        uow.add([stock_changed(merchant_id, f"{prefix}:2")])
        assert woken == []
        await uow.commit()

    assert woken == [1]
    assert await outbox_causations(engine, prefix) == [f"{prefix}:1", f"{prefix}:2"]
    assert await claimed(engine, [seen, new]) == {seen, new}


async def test_a_block_left_without_commit_writes_nothing_and_wakes_nothing(engine: AsyncEngine) -> None:
    woken: list[int] = []
    uow_factory = UnitOfWorkFactory(engine, inbox=inbox, outbox=outbox, wake_relay=lambda: woken.append(1))
    merchant_id, prefix, event_id = uuid.uuid4(), f"uow-rollback-{uuid.uuid4()}", uuid.uuid4()

    async with uow_factory() as uow:
        await uow.claim(ORDERS.name, [event_id])
        uow.add([stock_changed(merchant_id, f"{prefix}:1")])
        await uow.flush()

    with pytest.raises(RuntimeError):
        async with uow_factory() as uow:
            await uow.claim(ORDERS.name, [event_id])
            uow.add([stock_changed(merchant_id, f"{prefix}:2")])
            raise RuntimeError("the use case failed")

    assert woken == []
    assert await outbox_causations(engine, prefix) == []
    assert await claimed(engine, [event_id]) == set()


async def test_events_written_by_the_stores_own_statement_count_as_written(engine: AsyncEngine) -> None:
    woken: list[int] = []
    uow_factory = UnitOfWorkFactory(engine, inbox=inbox, outbox=outbox, wake_relay=lambda: woken.append(1))
    merchant_id, prefix = uuid.uuid4(), f"uow-cte-{uuid.uuid4()}"

    async with uow_factory() as uow:
        uow.add([stock_changed(merchant_id, f"{prefix}:1")])
        events = uow.take_events()
        written = await uow.connection.fetchval(
            f"WITH events AS ({outbox_insert_sql(outbox, 1)}) SELECT count(*) FROM events", *outbox_arrays(events)
        )
        assert written == 1
        await uow.commit()  # nothing left to flush: the row is not written twice

    assert woken == [1]
    assert await outbox_causations(engine, prefix) == [f"{prefix}:1"]


async def test_a_joined_unit_of_work_writes_in_its_owners_transaction(engine: AsyncEngine) -> None:
    merchant_id, prefix, event_id = uuid.uuid4(), f"uow-joined-{uuid.uuid4()}", uuid.uuid4()
    with pytest.raises(RuntimeError):
        async with engine.begin() as conn:
            uow = await UnitOfWork.joining(conn, inbox=inbox, outbox=outbox)
            assert await uow.claim(ORDERS.name, [event_id]) == {event_id}
            uow.add([stock_changed(merchant_id, f"{prefix}:1")])
            await uow.commit()
            raise RuntimeError("the owner rolls back")
    assert await outbox_causations(engine, prefix) == []
    assert await claimed(engine, [event_id]) == set()

    async with engine.begin() as conn:
        uow = await UnitOfWork.joining(conn, inbox=inbox, outbox=outbox)
        uow.add([stock_changed(merchant_id, f"{prefix}:2")])
        await uow.commit()
    assert await outbox_causations(engine, prefix) == [f"{prefix}:2"]


async def test_begin_commits_sqlalchemy_statements_with_the_events_and_wakes_the_relay_after(
    engine: AsyncEngine,
) -> None:
    woken: list[bool] = []
    merchant_id, prefix = uuid.uuid4(), f"uow-begin-{uuid.uuid4()}"

    def wake() -> None:
        # Woken only once the transaction committed: the events are visible by then.
        woken.append(True)

    uow_factory = UnitOfWorkFactory(engine, inbox=inbox, outbox=outbox, wake_relay=wake)
    event_id = uuid.uuid4()
    async with uow_factory.begin() as uow:
        await uow.sqlalchemy.execute(sa.insert(inbox).values(event_id=event_id, topic=ORDERS.name))
        uow.add([stock_changed(merchant_id, f"{prefix}:1")])
        assert woken == []
    assert woken == [True]
    assert await outbox_causations(engine, prefix) == [f"{prefix}:1"]
    assert await claimed(engine, [event_id]) == {event_id}

    async with uow_factory.begin() as uow:
        await uow.sqlalchemy.execute(sa.select(1))
    assert woken == [True]  # no event: nothing to wake the relay for


async def test_begin_left_by_an_exception_writes_nothing_and_wakes_nothing(engine: AsyncEngine) -> None:
    woken: list[bool] = []
    merchant_id, prefix = uuid.uuid4(), f"uow-begin-failed-{uuid.uuid4()}"
    uow_factory = UnitOfWorkFactory(engine, inbox=inbox, outbox=outbox, wake_relay=lambda: woken.append(True))
    event_id = uuid.uuid4()

    with pytest.raises(RuntimeError):
        async with uow_factory.begin() as uow:
            await uow.sqlalchemy.execute(sa.insert(inbox).values(event_id=event_id, topic=ORDERS.name))
            uow.add([stock_changed(merchant_id, f"{prefix}:1")])
            await uow.flush()  # written in the transaction, then rolled back with it
            raise RuntimeError("the use case failed")
    assert woken == []
    assert await outbox_causations(engine, prefix) == []
    assert await claimed(engine, [event_id]) == set()
