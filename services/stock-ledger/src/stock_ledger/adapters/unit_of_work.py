"""The stock-ledger's units of work outside its process (tests, benchmarks, tools): its
engine, inbox and outbox, and no relay to wake. The service's own are `runtime.units`."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from stocksync_common.uow import UnitOfWorkFactory

from stock_ledger.adapters.tables import inbox, outbox


def unit_of_work_factory(engine: AsyncEngine) -> UnitOfWorkFactory:
    return UnitOfWorkFactory(engine, inbox=inbox, outbox=outbox)
