"""For the stock-ledger's integration tests: an engine on the session's database and a
merchant of the test's own (fixtures: a test module takes them with
`engine = ledger_helpers.engine`), the events the ledger consumes, and a stock count."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from stocksync_common.contracts import ChannelType, ConnectionChanged, OrderLineMoved, OrderMovement, utcnow
from stocksync_common.db import make_engine

from stock_ledger.adapters.unit_of_work import unit_of_work_factory
from stock_ledger.service_layer.snapshots import ImportReport, SnapshotRow, import_snapshot


@pytest.fixture(scope="module")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database_url, pool_size=2)
    yield engine
    await engine.dispose()


@pytest.fixture
def merchant_id() -> uuid.UUID:
    """A merchant no other test writes for: its rows are the test's alone."""
    return uuid.uuid4()


def line_moved(
    merchant_id: uuid.UUID,
    connection_id: uuid.UUID,
    movement: OrderMovement,
    quantity: int,
    *,
    sku: str = "A",
    order: str | None = None,
    line: str = "1",
    channel_type: ChannelType = "generic",
    at: datetime | None = None,
    **extra: Any,
) -> OrderLineMoved:
    """A movement of an order line as order-ingest publishes it: order `o<line>` unless
    named, received now unless `at` says when, caused by the channel's line and movement."""
    order = order or f"o{line}"
    return OrderLineMoved(
        merchant_id=merchant_id,
        connection_id=connection_id,
        channel_type=channel_type,
        external_order_id=order,
        line_id=line,
        sku=sku,
        movement=movement,
        quantity=quantity,
        received_at=at or utcnow(),
        causation_id=f"{channel_type}:{order}:{line}:{movement}",
        **extra,
    )


def connection_announced(
    merchant_id: uuid.UUID, connection_id: uuid.UUID, *locations: str, **extra: Any
) -> ConnectionChanged:
    """An active connection of a generic channel selling from `locations`, first choice first."""
    return ConnectionChanged(
        merchant_id=merchant_id,
        connection_id=connection_id,
        channel_type="generic",
        name="shop",
        active=True,
        locations=locations,
        causation_id=f"connection:{connection_id}",
        **extra,
    )


async def counted(
    engine: AsyncEngine,
    merchant_id: uuid.UUID,
    on_hand: Mapping[tuple[str, str], int],
    as_of: datetime | None = None,
) -> ImportReport:
    """A stock count (a snapshot) of on_hand per (SKU, location), as of an hour ago unless `as_of` says when."""
    taken = as_of or utcnow() - timedelta(hours=1)

    async def rows() -> AsyncIterator[SnapshotRow]:
        for n, ((sku, location), units) in enumerate(on_hand.items()):
            yield SnapshotRow(n + 1, sku, location, units, taken)

    return await import_snapshot(unit_of_work_factory(engine), merchant_id, rows())
