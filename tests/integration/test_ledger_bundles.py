"""Bundles in the ledger, against the real PostgreSQL: a bundle's available follows its
components per location, a bundle order reserves its components exactly once, and
every bundle row is a stock row whose versions only grow."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from stocksync_common.contracts import StockChanged, utcnow

from stock_ledger.adapters.tables import outbox
from stock_ledger.adapters.unit_of_work import unit_of_work_factory
from stock_ledger.domain.bundles import BundleRefused
from stock_ledger.service_layer.adjustments import Adjustment, AdjustmentRefused, adjust_stock
from stock_ledger.service_layer.bundles import BundleExists, BundleNotFound, list_bundles, read_bundle, save_bundle
from stock_ledger.service_layer.connection_locations import apply_connection_changes
from stock_ledger.service_layer.order_lines import apply_order_lines
from stock_ledger.service_layer.reading import read_stock
from stock_ledger.service_layer.reconciliation import ledger_discrepancies
from stock_ledger.service_layer.snapshots import SnapshotRow, import_snapshot
from tests.integration import ledger_helpers
from tests.integration.ledger_helpers import connection_announced, counted, line_moved

pytestmark = pytest.mark.integration

SHOP = uuid.UUID("00000000-0000-0000-0000-00000000b0b0")

engine = ledger_helpers.engine
merchant_id = ledger_helpers.merchant_id


async def available(engine: AsyncEngine, merchant_id: uuid.UUID, sku: str, location: str = "default") -> int:
    async with engine.connect() as conn:
        row = await read_stock(conn, (merchant_id, sku, location))
    return row.on_hand - row.reserved if row is not None else 0


async def stock_events(engine: AsyncEngine, merchant_id: uuid.UUID, sku: str) -> list[StockChanged]:
    async with engine.connect() as conn:
        payloads = (
            await conn.execute(
                sa.select(outbox.c.payload)
                .where(sa.func.convert_from(outbox.c.key, "UTF8") == f"{merchant_id}:{sku}")
                .order_by(outbox.c.id)
            )
        ).scalars()
        events = [StockChanged.model_validate_json(p) for p in payloads if b'"oversold"' not in bytes(p)]
    return [e for e in events if e.sku == sku]


async def test_a_bundle_makes_the_minimum_over_components_of_their_available_divided_by_its_quantity(
    engine: AsyncEngine, merchant_id: uuid.UUID
) -> None:
    units = unit_of_work_factory(engine)
    await counted(engine, merchant_id, {("BOARD", "default"): 7, ("SCREW", "default"): 30})
    saved = await save_bundle(units(), merchant_id, "KIT", {"BOARD": 2, "SCREW": 8})
    assert saved.created and saved.available == {"default": 3}  # min(7 // 2, 30 // 8)
    assert await available(engine, merchant_id, "KIT") == 3

    # A component moves: the bundle moves with it, in the same transaction.
    await apply_order_lines([line_moved(merchant_id, SHOP, "placed", 10, sku="SCREW")], units())
    assert await available(engine, merchant_id, "KIT") == 2  # 20 // 8
    versions = [e.version for e in await stock_events(engine, merchant_id, "KIT")]
    assert versions == sorted(set(versions)) and len(versions) == 2

    bundle, per_location = await read_bundle(units(), merchant_id, "KIT")
    assert bundle.components == {"BOARD": 2, "SCREW": 8} and per_location == {"default": 2}
    assert await ledger_discrepancies(engine, merchant_id) == []


async def test_a_bundle_order_reserves_its_components_once_and_its_cancellation_releases_what_it_reserved(
    engine: AsyncEngine, merchant_id: uuid.UUID
) -> None:
    units = unit_of_work_factory(engine)
    await counted(engine, merchant_id, {("BOARD", "default"): 7, ("SCREW", "default"): 30})
    await save_bundle(units(), merchant_id, "KIT", {"BOARD": 2, "SCREW": 8})
    await save_bundle(units(), merchant_id, "PAIR", {"BOARD": 2})

    placed = line_moved(merchant_id, SHOP, "placed", 2, sku="KIT")
    again = placed.model_copy(update={"event_id": uuid.uuid4()})  # the channel's redelivery
    await apply_order_lines([placed, again], units())
    assert await apply_order_lines([again], units()) == []
    assert await available(engine, merchant_id, "BOARD") == 3
    assert await available(engine, merchant_id, "SCREW") == 14
    assert await available(engine, merchant_id, "KIT") == 1
    # Every bundle containing a component that moved moves too.
    assert await available(engine, merchant_id, "PAIR") == 1

    # The definition changes; the placed line still releases what it reserved.
    await save_bundle(units(), merchant_id, "KIT", {"BOARD": 1})
    assert await available(engine, merchant_id, "KIT") == 3
    await apply_order_lines([line_moved(merchant_id, SHOP, "cancelled", 2, sku="KIT")], units())
    assert await available(engine, merchant_id, "BOARD") == 7
    assert await available(engine, merchant_id, "SCREW") == 30
    assert await available(engine, merchant_id, "KIT") == 7
    assert await ledger_discrepancies(engine, merchant_id) == []


async def test_a_bundle_is_available_per_location_and_an_order_reserves_all_its_components_at_one(
    engine: AsyncEngine, merchant_id: uuid.UUID
) -> None:
    units = unit_of_work_factory(engine)
    await apply_connection_changes([connection_announced(merchant_id, SHOP, "north", "south")], units())
    # North has boards but no screws: no kit can be made there.
    await counted(engine, merchant_id, {("BOARD", "north"): 5, ("BOARD", "south"): 1, ("SCREW", "south"): 8})
    saved = await save_bundle(units(), merchant_id, "KIT", {"BOARD": 1, "SCREW": 8})
    assert saved.available == {"north": 0, "south": 1}

    await apply_order_lines([line_moved(merchant_id, SHOP, "placed", 1, sku="KIT")], units())
    assert [await available(engine, merchant_id, "BOARD", loc) for loc in ("north", "south")] == [5, 0]
    assert await available(engine, merchant_id, "SCREW", "south") == 0
    assert [await available(engine, merchant_id, "KIT", loc) for loc in ("north", "south")] == [0, 0]
    assert await ledger_discrepancies(engine, merchant_id) == []


async def test_bundles_cannot_contain_bundles_nor_themselves_and_a_sku_with_stock_cannot_become_one(
    engine: AsyncEngine, merchant_id: uuid.UUID
) -> None:
    units = unit_of_work_factory(engine)
    await counted(engine, merchant_id, {("BOARD", "default"): 7, ("LOOSE", "default"): 1})
    await save_bundle(units(), merchant_id, "KIT", {"BOARD": 2})
    with pytest.raises(BundleRefused, match="cannot contain a bundle"):
        await save_bundle(units(), merchant_id, "BIG", {"KIT": 1})
    with pytest.raises(BundleRefused, match="cannot be a component"):
        await save_bundle(units(), merchant_id, "BOARD", {"SCREW": 1})
    with pytest.raises(BundleRefused, match="itself"):
        await save_bundle(units(), merchant_id, "SELF", {"SELF": 1})
    with pytest.raises(BundleRefused, match="stock of its own"):
        await save_bundle(units(), merchant_id, "LOOSE", {"BOARD": 1})
    with pytest.raises(BundleExists):
        await save_bundle(units(), merchant_id, "KIT", {"BOARD": 1}, create_only=True)
    with pytest.raises(AdjustmentRefused, match="bundle"):
        await adjust_stock(Adjustment(merchant_id, "KIT", "default", 5, "found", "me", uuid.uuid4()), units())

    # A count of a bundle is a refused row: its stock is its components'.
    async def rows() -> AsyncIterator[SnapshotRow]:
        yield SnapshotRow(1, "KIT", "default", 50, utcnow())
        yield SnapshotRow(2, "BOARD", "default", 9, utcnow())

    report = await import_snapshot(units, merchant_id, rows())
    assert (report.applied, report.rejected) == (1, 1) and "bundle" in report.errors[0].message
    assert await available(engine, merchant_id, "KIT") == 4
    assert await available(engine, merchant_id, "LOOSE") == 1  # nothing refused changed anything


async def test_a_deleted_bundle_shows_0_and_its_sku_keeps_growing_versions(
    engine: AsyncEngine, merchant_id: uuid.UUID
) -> None:
    units = unit_of_work_factory(engine)
    await counted(engine, merchant_id, {("BOARD", "default"): 7})
    await save_bundle(units(), merchant_id, "KIT", {"BOARD": 2})
    await save_bundle(units(), merchant_id, "KIT", None)
    assert await available(engine, merchant_id, "KIT") == 0
    with pytest.raises(BundleNotFound):
        await save_bundle(units(), merchant_id, "KIT", None)
    # Sold again as a plain SKU: its versions continue where the bundle's stopped.
    await counted(engine, merchant_id, {("KIT", "default"): 4})
    versions = [e.version for e in await stock_events(engine, merchant_id, "KIT")]
    assert versions == [1, 2, 3] and await available(engine, merchant_id, "KIT") == 4
    assert await ledger_discrepancies(engine, merchant_id) == []


async def test_bundles_list_in_byte_order_one_page_at_a_time(engine: AsyncEngine, merchant_id: uuid.UUID) -> None:
    units = unit_of_work_factory(engine)
    for sku in ("b-kit", "A-kit", "a-kit"):
        await save_bundle(units(), merchant_id, sku, {"PART": 1, "SCREW": 2})
    first = await list_bundles(units(), merchant_id, "", 2)
    assert [(b.sku, b.components) for b in first] == [
        ("A-kit", {"PART": 1, "SCREW": 2}),
        ("a-kit", {"PART": 1, "SCREW": 2}),
    ]
    assert [b.sku for b in await list_bundles(units(), merchant_id, first[-1].sku, 2)] == ["b-kit"]
