"""Stock per location and bundles against a model written from scratch.

Hypothesis draws a sequence of operations on one merchant with two warehouses and a
channel that sells from both (orders of plain SKUs, components and bundles, their
cancellations and redeliveries, snapshots per location, a bundle redefined), applies
them through the stock-ledger's use cases on the real PostgreSQL, feeds every
StockChanged the ledger wrote to the rule engine's batch path, and compares: each
component's levels per location, each bundle's available per location (min over
components of floor(available / quantity)), and the quantity the channel is shown (the
sum over its locations, never below 0), with the ledger's own reconciliation clean.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from stocksync_common.contracts import OrderLineMoved, OrderMovement, StockChanged, utcnow
from stocksync_common.topics import STOCK_CHANGED

from rule_engine.adapters.tables import channel_quantities
from rule_engine.service_layer.context import ConsumerContext
from rule_engine.service_layer.stock_changes import apply_stock_changes
from stock_ledger.adapters.tables import outbox as ledger_outbox
from stock_ledger.adapters.unit_of_work import unit_of_work_factory
from stock_ledger.service_layer.bundles import save_bundle
from stock_ledger.service_layer.connection_locations import apply_connection_changes
from stock_ledger.service_layer.order_lines import apply_order_lines
from stock_ledger.service_layer.reading import read_stock
from stock_ledger.service_layer.reconciliation import ledger_discrepancies
from tests.integration.ledger_helpers import connection_announced, counted, line_moved
from tests.integration.rule_engine_helpers import add_connection, rule_engine_units

pytestmark = pytest.mark.integration

LOCATIONS = ["wa", "wb"]  # the channel's priority order
COMPONENTS = ["C1", "C2"]
PLAIN = ["P"]
BUNDLES = {"K1": {"C1": 1, "C2": 2}, "K2": {"C1": 2}}


@dataclass
class Line:
    sku: str
    quantity: int
    location: str
    parts: dict[str, int]
    cancelled: bool = False


@dataclass
class Model:
    on_hand: dict[tuple[str, str], int] = field(default_factory=dict)
    reserved: dict[tuple[str, str], int] = field(default_factory=dict)
    bundles: dict[str, dict[str, int]] = field(default_factory=lambda: {k: dict(v) for k, v in BUNDLES.items()})
    lines: dict[str, Line] = field(default_factory=dict)

    def available(self, sku: str, location: str) -> int:
        if sku in self.bundles:
            return min(self.available(c, location) // q for c, q in self.bundles[sku].items())
        return self.on_hand.get((sku, location), 0) - self.reserved.get((sku, location), 0)

    def place(self, line_id: str, sku: str, quantity: int) -> None:
        parts = dict(self.bundles[sku]) if sku in self.bundles else {sku: 1}
        covering = [loc for loc in LOCATIONS if self.available(sku, loc) >= quantity]
        # None covers it: the most available, the first in priority on a tie.
        location = (
            covering[0]
            if covering
            else max(LOCATIONS, key=lambda loc: (self.available(sku, loc), -LOCATIONS.index(loc)))
        )
        for part, per_unit in parts.items():
            self.reserved[(part, location)] = self.reserved.get((part, location), 0) + quantity * per_unit
        self.lines[line_id] = Line(sku, quantity, location, parts)

    def cancel(self, line_id: str) -> None:
        line = self.lines[line_id]
        if line.cancelled:
            return
        line.cancelled = True
        for part, per_unit in line.parts.items():
            self.reserved[(part, line.location)] -= line.quantity * per_unit


operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("snapshot"), st.sampled_from(COMPONENTS + PLAIN), st.sampled_from(LOCATIONS), st.integers(0, 9)
        ),
        st.tuples(st.just("place"), st.sampled_from(COMPONENTS + PLAIN + list(BUNDLES)), st.integers(1, 3)),
        st.tuples(st.just("cancel"), st.integers(0, 20)),
        st.tuples(st.just("redeliver"), st.integers(0, 20)),
        st.tuples(
            st.just("redefine"),
            st.dictionaries(st.sampled_from(COMPONENTS), st.integers(1, 3), min_size=1),
        ),
    ),
    min_size=1,
    max_size=14,
)


def order_event(
    merchant_id: uuid.UUID, connection_id: uuid.UUID, line_id: str, line: Line, movement: OrderMovement
) -> OrderLineMoved:
    return line_moved(merchant_id, connection_id, movement, line.quantity, sku=line.sku, order=f"order-{line_id}")


async def check(engine: AsyncEngine, ops: list[tuple[Any, ...]]) -> None:
    merchant_id, connection_id = uuid.uuid4(), uuid.uuid4()
    units = unit_of_work_factory(engine)
    model = Model()
    await apply_connection_changes([connection_announced(merchant_id, connection_id, *LOCATIONS)], units())
    async with engine.begin() as conn:
        await add_connection(
            conn, merchant_id, connection_id, channel_type="generic", locations=LOCATIONS, per_location=False
        )
    for sku, definition in BUNDLES.items():
        await save_bundle(units(), merchant_id, sku, definition)
    placed: dict[str, OrderLineMoved] = {}
    for n, op in enumerate(ops):
        if op[0] == "snapshot":
            _, sku, location, on_hand = op
            await counted(engine, merchant_id, {(sku, location): on_hand}, as_of=utcnow())
            model.on_hand[(sku, location)] = on_hand
        elif op[0] == "place":
            _, sku, quantity = op
            line_id = str(n)
            model.place(line_id, sku, quantity)
            placed[line_id] = order_event(merchant_id, connection_id, line_id, model.lines[line_id], "placed")
            await apply_order_lines([placed[line_id]], units())
        elif op[0] in ("cancel", "redeliver") and placed:
            line_id = sorted(placed)[op[1] % len(placed)]
            if op[0] == "cancel":
                model.cancel(line_id)
                await apply_order_lines(
                    [order_event(merchant_id, connection_id, line_id, model.lines[line_id], "cancelled")], units()
                )
            else:  # the same movement again, under a new event id: applied once
                await apply_order_lines([placed[line_id].model_copy(update={"event_id": uuid.uuid4()})], units())
        elif op[0] == "redefine":
            await save_bundle(units(), merchant_id, "K1", op[1])
            model.bundles["K1"] = dict(op[1])

    async with engine.connect() as conn:
        for sku in COMPONENTS + PLAIN + list(BUNDLES):
            for location in LOCATIONS:
                row = await read_stock(conn, (merchant_id, sku, location))
                found = (row.on_hand - row.reserved) if row is not None else 0
                assert found == model.available(sku, location), (sku, location)
                if sku not in BUNDLES:
                    assert (row.reserved if row else 0) == model.reserved.get((sku, location), 0), (sku, location)
    assert await ledger_discrepancies(engine, merchant_id) == []

    # What the channel is shown: the rule engine fed every StockChanged the ledger wrote.
    async with engine.connect() as conn:
        payloads = (
            await conn.execute(
                sa.select(ledger_outbox.c.payload)
                .where(
                    ledger_outbox.c.topic == STOCK_CHANGED.name,
                    sa.func.convert_from(ledger_outbox.c.key, "UTF8").startswith(f"{merchant_id}:"),
                )
                .order_by(ledger_outbox.c.id)
            )
        ).scalars()
        events = [StockChanged.model_validate_json(p) for p in payloads]
    await apply_stock_changes(events, ConsumerContext(rule_engine_units(engine)))
    async with engine.connect() as conn:
        shown = dict(
            (
                await conn.execute(
                    sa.select(channel_quantities.c.sku, channel_quantities.c.quantity).where(
                        channel_quantities.c.connection_id == connection_id
                    )
                )
            ).all()
        )
    projected = {e.sku for e in events}
    expected = {sku: max(0, sum(model.available(sku, loc) for loc in LOCATIONS)) for sku in projected}
    assert shown == expected


@given(operations)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_ledger_bundles_and_published_quantities_follow_the_model(
    database_url: str, ops: list[tuple[Any, ...]]
) -> None:
    async def run() -> None:
        engine = create_async_engine(database_url, poolclass=NullPool)
        try:
            await check(engine, ops)
        finally:
            await engine.dispose()

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(run())
    finally:
        loop.close()
