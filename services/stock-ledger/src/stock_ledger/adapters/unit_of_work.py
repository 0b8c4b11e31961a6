"""The stock-ledger's units of work: its engine, inbox and outbox (stocksync_common.uow)."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from stocksync_common.uow import UnitOfWork, UnitOfWorkFactory

from stock_ledger.adapters.tables import inbox, outbox


def unit_of_work_factory(engine: AsyncEngine, wake_relay: Callable[[], None] | None = None) -> UnitOfWorkFactory:
    return UnitOfWorkFactory(engine, inbox=inbox, outbox=outbox, wake_relay=wake_relay)


async def joining(conn: AsyncConnection) -> UnitOfWork:
    """A unit of work inside `conn`'s transaction, which the caller commits (import jobs)."""
    return await UnitOfWork.joining(conn, inbox=inbox, outbox=outbox)
