"""Stock per location in the ledger, against the real PostgreSQL: where an order line
reserves (docs/stock.md, the allocation rule), and where its later movements apply."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from stock_ledger.adapters.unit_of_work import unit_of_work_factory
from stock_ledger.service_layer.connection_locations import apply_connection_changes
from stock_ledger.service_layer.order_lines import apply_order_lines
from stock_ledger.service_layer.reading import read_stock
from stock_ledger.service_layer.reconciliation import ledger_discrepancies
from tests.integration import ledger_helpers
from tests.integration.ledger_helpers import connection_announced, counted, line_moved

pytestmark = pytest.mark.integration

engine = ledger_helpers.engine
merchant_id = ledger_helpers.merchant_id


async def stock_at(engine: AsyncEngine, merchant_id: uuid.UUID, *locations: str) -> dict[str, tuple[int, int]]:
    found = {}
    async with engine.connect() as conn:
        for location in locations:
            row = await read_stock(conn, (merchant_id, "A", location))
            found[location] = (row.on_hand, row.reserved) if row is not None else (0, 0)
    return found


async def test_a_line_reserves_at_the_first_location_that_covers_it_and_stays_there(
    engine: AsyncEngine, merchant_id: uuid.UUID
) -> None:
    units = unit_of_work_factory(engine)
    shop = uuid.uuid4()
    assert await apply_connection_changes([connection_announced(merchant_id, shop, "north", "south")], units()) == 1
    await counted(engine, merchant_id, {("A", "north"): 2, ("A", "south"): 5})

    await apply_order_lines([line_moved(merchant_id, shop, "placed", 2, line="1")], units())
    assert await stock_at(engine, merchant_id, "north", "south") == {"north": (2, 2), "south": (5, 0)}
    # North has nothing left: the next line goes to south, whole.
    changed = await apply_order_lines([line_moved(merchant_id, shop, "placed", 3, line="2")], units())
    assert [(e.location, e.available) for e in changed] == [("south", 2)]
    assert await stock_at(engine, merchant_id, "north", "south") == {"north": (2, 2), "south": (5, 3)}

    # The connection now lists south first: a known line's cancellation still releases
    # at north, where it reserved.
    await apply_connection_changes([connection_announced(merchant_id, shop, "south", "north")], units())
    await apply_order_lines([line_moved(merchant_id, shop, "cancelled", 2, line="1")], units())
    assert await stock_at(engine, merchant_id, "north", "south") == {"north": (2, 0), "south": (5, 3)}
    await apply_order_lines([line_moved(merchant_id, shop, "shipped", 3, line="2")], units())
    assert await stock_at(engine, merchant_id, "north", "south") == {"north": (2, 0), "south": (2, 0)}
    assert await ledger_discrepancies(engine, merchant_id) == []


async def test_a_line_no_location_covers_goes_where_the_shortfall_is_smallest_and_is_an_oversell_there(
    engine: AsyncEngine, merchant_id: uuid.UUID
) -> None:
    units = unit_of_work_factory(engine)
    shop = uuid.uuid4()
    await apply_connection_changes([connection_announced(merchant_id, shop, "north", "south")], units())
    await counted(engine, merchant_id, {("A", "north"): 1, ("A", "south"): 3})
    changed = await apply_order_lines([line_moved(merchant_id, shop, "placed", 4)], units())
    # Never split, never netted against the other location: south goes to -1 and says so.
    assert [(e.location, e.available) for e in changed] == [("south", -1)]
    assert await stock_at(engine, merchant_id, "north", "south") == {"north": (1, 0), "south": (3, 4)}


async def test_a_redelivered_placement_reserves_once_and_lines_in_one_batch_allocate_in_turn(
    engine: AsyncEngine, merchant_id: uuid.UUID
) -> None:
    units = unit_of_work_factory(engine)
    shop = uuid.uuid4()
    await apply_connection_changes([connection_announced(merchant_id, shop, "north", "south")], units())
    await counted(engine, merchant_id, {("A", "north"): 3, ("A", "south"): 3})
    first = line_moved(merchant_id, shop, "placed", 2, line="1")
    second = line_moved(merchant_id, shop, "placed", 2, line="2")
    again = first.model_copy(update={"event_id": uuid.uuid4()})  # the channel's redelivery
    await apply_order_lines([first, second, again], units())
    assert await stock_at(engine, merchant_id, "north", "south") == {"north": (3, 2), "south": (3, 2)}
    assert await apply_order_lines([again], units()) == []


async def test_a_connection_the_ledger_has_not_heard_of_sells_from_the_default_location(
    engine: AsyncEngine, merchant_id: uuid.UUID
) -> None:
    units = unit_of_work_factory(engine)
    await counted(engine, merchant_id, {("A", "default"): 5, ("A", "north"): 5})
    await apply_order_lines([line_moved(merchant_id, uuid.uuid4(), "placed", 1)], units())
    assert await stock_at(engine, merchant_id, "default", "north") == {"default": (5, 1), "north": (5, 0)}


async def test_an_older_announcement_of_a_connection_does_not_replace_a_newer_one(
    engine: AsyncEngine, merchant_id: uuid.UUID
) -> None:
    units = unit_of_work_factory(engine)
    shop = uuid.uuid4()
    newer = connection_announced(merchant_id, shop, "south")
    older = connection_announced(merchant_id, shop, "north", occurred_at=newer.occurred_at - timedelta(minutes=1))
    await apply_connection_changes([newer], units())
    await apply_connection_changes([older], units())
    await counted(engine, merchant_id, {("A", "north"): 5, ("A", "south"): 5})
    await apply_order_lines([line_moved(merchant_id, shop, "placed", 1)], units())
    assert await stock_at(engine, merchant_id, "north", "south") == {"north": (5, 0), "south": (5, 1)}
