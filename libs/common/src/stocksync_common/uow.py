"""The unit of work: one transaction with the service's inbox and outbox in it.

A use case reads

    async with uow_factory() as uow:
        fresh = await uow.claim(ORDERS.name, event_ids)   # inbox: ids not seen before
        ...statements on uow.connection (the service's store module)...
        uow.add(events)                                   # outbox, in this transaction
        await uow.commit()

and nothing else. A use case whose statements are SQLAlchemy's (the APIs' less frequent
writes, background workers) reads

    async with uow_factory.begin() as uow:
        ...statements on uow.sqlalchemy (a SQLAlchemy AsyncConnection)...
        uow.add(events)

and commits by leaving the block. Either way the events added (and records already
encoded, `add_records`) are written to the outbox inside the transaction (one statement
at commit, in the order added, or as part of a store's own statement through
`take_events`), and after the commit the relay is woken so that they are published
without waiting for its poll. A block left without `commit()` (or by an exception)
rolls back, claims and events with it, and wakes nothing. Together that is the transactional outbox
and the idempotent inbox (docs/decisions/0002-outbox-and-inbox.md): an event is
published if and only if the change it announces committed, and a redelivered event is
applied once.

The connection is asyncpg's own, borrowed from the service's SQLAlchemy pool
(stocksync_common.raw_connection): the paths that run for every webhook or consumer
batch send hand-written SQL (docs/decisions/0001-raw-asyncpg-on-hot-paths.md).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from types import TracebackType
from typing import Any, Self

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from stocksync_common.contracts import Event
from stocksync_common.outbox import OutboxRecord, outbox_arrays, outbox_insert_sql
from stocksync_common.raw_connection import Connection, driver_connection


def inbox_claim_sql(inbox: sa.Table, ids_parameter: int, topic_parameter: int) -> str:
    """An INSERT claiming event ids ($ids_parameter, a uuid[]) for a topic in the inbox,
    returning the ids that were new; usable as a CTE of a store's statement."""
    return (
        f"INSERT INTO {inbox.fullname} (event_id, topic) "
        f"SELECT unnest(${ids_parameter}::uuid[]), ${topic_parameter}::text "
        "ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
    )


class UnitOfWork:
    """One transaction on an asyncpg connection; see the module docstring."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        inbox: sa.Table | None,
        outbox: sa.Table | None,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self._engine = engine
        self._inbox = inbox
        self._outbox = outbox
        self._on_commit = on_commit
        self._pending: list[Event] = []
        self._records: list[OutboxRecord] = []
        self._wrote_events = False
        self._pooled: AsyncConnection | None = None
        self._connection: Connection | None = None
        self._transaction: Any = None
        self._committed = False
        self._joined = False
        self._sqlalchemy: AsyncConnection | None = None

    @property
    def connection(self) -> Connection:
        assert self._connection is not None, "the unit of work is used outside its `async with` block"
        return self._connection

    @property
    def sqlalchemy(self) -> AsyncConnection:
        """The SQLAlchemy connection of a unit of work joined to its transaction (`joining`,
        `UnitOfWorkFactory.begin`), for statements written with SQLAlchemy."""
        assert self._sqlalchemy is not None, "this unit of work has no SQLAlchemy connection: use `connection`"
        return self._sqlalchemy

    @property
    def wrote_events(self) -> bool:
        """Whether events were written to the outbox in this unit of work."""
        return self._wrote_events

    @classmethod
    async def joining(
        cls, conn: AsyncConnection, *, inbox: sa.Table | None = None, outbox: sa.Table | None = None
    ) -> UnitOfWork:
        """A unit of work inside the transaction of a SQLAlchemy connection that the caller
        owns and commits (a use case whose other statements are SQLAlchemy's). `commit()`
        only writes the pending events; waking the relay is the owner's."""
        uow = cls(conn.engine, inbox=inbox, outbox=outbox)
        uow._sqlalchemy = conn
        uow._connection = await driver_connection(conn)
        uow._joined = True
        return uow

    async def __aenter__(self) -> Self:
        assert not self._joined, "a joined unit of work is not entered: its owner's transaction is"
        self._pending, self._records, self._wrote_events, self._committed = [], [], False, False
        pooled = await self._engine.connect()
        try:
            driver: Connection = (await pooled.get_raw_connection()).driver_connection
            transaction = driver.transaction()
            await transaction.start()
        except BaseException:
            await pooled.close()
            raise
        self._pooled, self._connection, self._transaction = pooled, driver, transaction
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        pooled, driver, transaction = self._pooled, self._connection, self._transaction
        self._pooled, self._connection, self._transaction = None, None, None
        assert pooled is not None and driver is not None
        try:
            if not self._committed:
                with contextlib.suppress(Exception):
                    await transaction.rollback()
        finally:
            # A connection that could not be rolled back cleanly (a query cancelled
            # mid-flight, a failed commit) is discarded, never pooled in a transaction.
            if driver.is_closed() or driver.is_in_transaction():
                await pooled.invalidate()
            await pooled.close()

    async def claim(self, topic: str, event_ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
        """Record event ids as applied; return those that were new (the rest are redeliveries)."""
        assert self._inbox is not None, "this service has no inbox"
        ids = list(dict.fromkeys(event_ids))
        if not ids:
            return set()
        rows = await self.connection.fetch(inbox_claim_sql(self._inbox, 1, 2), ids, topic)
        return {row["event_id"] for row in rows}

    def add(self, events: Iterable[Event]) -> None:
        """Events to publish if, and only if, this transaction commits."""
        assert self._outbox is not None, "this service has no outbox"
        self._pending.extend(events)

    def add_records(self, records: Iterable[OutboxRecord]) -> None:
        """Outbox rows already encoded (a dead letter's original bytes, put back on its
        topic, or the dead letter's own record) to publish if, and only if, this transaction
        commits; written after the events at `flush` or `commit`."""
        assert self._outbox is not None, "this service has no outbox"
        self._records.extend(records)

    def take_events(self) -> list[Event]:
        """The pending events, for a store that writes them to the outbox in its own
        statement (`outbox_insert_sql` as a CTE: one round trip less on a hot path).
        They count as written: the caller must write them in this unit of work."""
        events, self._pending = self._pending, []
        self._wrote_events = self._wrote_events or bool(events)
        return events

    async def flush(self) -> None:
        """Write the pending events to the outbox now (commit does it too)."""
        if not self._pending and not self._records:
            return
        assert self._outbox is not None
        records, self._records = self._records, []
        self._wrote_events = True
        await self.connection.execute(outbox_insert_sql(self._outbox, 1), *outbox_arrays(self.take_events(), records))

    async def commit(self) -> None:
        """Write the pending events, commit, and wake the relay if any event was written."""
        await self.flush()
        if self._joined:
            return
        assert self._transaction is not None, "the unit of work is used outside its `async with` block"
        await self._transaction.commit()
        self._committed = True
        if self._wrote_events and self._on_commit is not None:
            self._on_commit()


class UnitOfWorkFactory:
    """Makes the units of work of one service: its engine, inbox, outbox and relay."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        inbox: sa.Table | None = None,
        outbox: sa.Table | None = None,
        wake_relay: Callable[[], None] | None = None,
    ) -> None:
        self.engine = engine
        self.inbox = inbox
        self.outbox = outbox
        self.wake_relay = wake_relay

    def __call__(self) -> UnitOfWork:
        return UnitOfWork(self.engine, inbox=self.inbox, outbox=self.outbox, on_commit=self.wake_relay)

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[UnitOfWork]:
        """A unit of work in a SQLAlchemy transaction that it owns: `uow.sqlalchemy` runs
        the use case's statements, `uow.add(events)` queues its events. Leaving the block
        writes the events, commits, and wakes the relay if any event was written; an
        exception rolls all of it back and wakes nothing."""
        async with self.engine.begin() as conn:
            uow = await UnitOfWork.joining(conn, inbox=self.inbox, outbox=self.outbox)
            yield uow
            await uow.flush()
        if uow.wrote_events and self.wake_relay is not None:
            self.wake_relay()
