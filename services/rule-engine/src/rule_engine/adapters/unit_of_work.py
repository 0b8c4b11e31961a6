"""The rule engine's units of work: its engine, inbox and outbox (stocksync_common.uow)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from stocksync_common.uow import UnitOfWorkFactory

from rule_engine.adapters.tables import inbox, outbox


def unit_of_work_factory(engine: AsyncEngine) -> UnitOfWorkFactory:
    """Units of work that wake no relay, for code run outside the service process (tests,
    benchmarks); the service's own are its runtime's (`runtime.units`)."""
    return UnitOfWorkFactory(engine, inbox=inbox, outbox=outbox)
