"""The rule engine's units of work: its engine, inbox and outbox (stocksync_common.uow)."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from stocksync_common.uow import UnitOfWorkFactory

from rule_engine.adapters.tables import inbox, outbox


def unit_of_work_factory(engine: AsyncEngine, wake_relay: Callable[[], None] | None = None) -> UnitOfWorkFactory:
    return UnitOfWorkFactory(engine, inbox=inbox, outbox=outbox, wake_relay=wake_relay)
