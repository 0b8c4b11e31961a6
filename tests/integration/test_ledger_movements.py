"""The ledger's use cases against the real PostgreSQL: movements, snapshots, adjustments."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from stocksync_common.contracts import OrderLineMoved, OrderMovement, utcnow

from stock_ledger.adapters.snapshot_formats import read_csv, read_json_lines
from stock_ledger.adapters.tables import ledger_entries, outbox, oversells, product_attributes
from stock_ledger.adapters.unit_of_work import unit_of_work_factory
from stock_ledger.service_layer.adjustments import Adjustment, AdjustmentRefused, adjust_stock
from stock_ledger.service_layer.order_lines import apply_order_lines
from stock_ledger.service_layer.reading import read_stock
from stock_ledger.service_layer.reconciliation import ledger_discrepancies
from stock_ledger.service_layer.snapshots import SnapshotRow, import_snapshot
from tests.integration import ledger_helpers
from tests.integration.ledger_helpers import counted, line_moved

pytestmark = pytest.mark.integration

CONNECTION = uuid.UUID("00000000-0000-0000-0000-0000000000c1")

engine = ledger_helpers.engine
merchant_id = ledger_helpers.merchant_id


def moved(merchant_id: uuid.UUID, movement: OrderMovement, quantity: int, **values: Any) -> OrderLineMoved:
    """A movement of a line of a Shopify order on CONNECTION: SKU A, order o1, line 1
    unless `values` (as for `line_moved`) say otherwise."""
    return line_moved(merchant_id, CONNECTION, movement, quantity, channel_type="shopify", **values)


async def levels(engine: AsyncEngine, merchant_id: uuid.UUID, sku: str = "A") -> tuple[int, int, int]:
    async with engine.connect() as conn:
        row = await read_stock(conn, (merchant_id, sku, "default"))
    assert row is not None
    return row.on_hand, row.reserved, row.version


async def snapshot(
    engine: AsyncEngine, merchant_id: uuid.UUID, on_hand: int, as_of: datetime, sku: str = "A"
) -> tuple[int, int]:
    report = await counted(engine, merchant_id, {(sku, "default"): on_hand}, as_of)
    return report.applied, report.ignored_stale


async def test_500_lines_of_one_sku_in_a_batch_make_one_version_and_one_stock_changed(
    engine: AsyncEngine, merchant_id: uuid.UUID
) -> None:
    await snapshot(engine, merchant_id, 1000, utcnow() - timedelta(hours=1))
    batch = [moved(merchant_id, "placed", 1, order=f"o{i}") for i in range(500)]
    changed = await apply_order_lines(batch, unit_of_work_factory(engine)())
    assert [(e.version, e.reserved, e.available) for e in changed] == [(2, 500, 500)]
    assert await levels(engine, merchant_id) == (1000, 500, 2)
    async with engine.connect() as conn:
        versions = (
            (
                await conn.execute(
                    sa.select(ledger_entries.c.version).where(
                        ledger_entries.c.merchant_id == merchant_id, ledger_entries.c.kind == "order_placed"
                    )
                )
            )
            .scalars()
            .all()
        )
    assert len(versions) == 500 and set(versions) == {2}


async def test_a_redelivered_event_and_the_same_movement_under_a_new_event_id_apply_once(
    engine: AsyncEngine, merchant_id: uuid.UUID
) -> None:
    first = moved(merchant_id, "placed", 2)
    await apply_order_lines([first, first], unit_of_work_factory(engine)())
    assert await levels(engine, merchant_id) == (0, 2, 1)
    again = first.model_copy(update={"event_id": uuid.uuid4()})
    assert await apply_order_lines([first, again], unit_of_work_factory(engine)()) == []
    assert await levels(engine, merchant_id) == (0, 2, 1)


async def test_cancellation_before_its_order_leaves_nothing_reserved(
    engine: AsyncEngine, merchant_id: uuid.UUID
) -> None:
    await apply_order_lines([moved(merchant_id, "cancelled", 2)], unit_of_work_factory(engine)())
    await apply_order_lines([moved(merchant_id, "placed", 2)], unit_of_work_factory(engine)())
    assert (await levels(engine, merchant_id))[:2] == (0, 0)


async def test_shipment_before_its_order_takes_on_hand_once_and_reserves_nothing(
    engine: AsyncEngine, merchant_id: uuid.UUID
) -> None:
    await snapshot(engine, merchant_id, 10, utcnow() - timedelta(hours=1))
    await apply_order_lines([moved(merchant_id, "shipped", 3)], unit_of_work_factory(engine)())
    await apply_order_lines([moved(merchant_id, "placed", 3)], unit_of_work_factory(engine)())
    assert (await levels(engine, merchant_id))[:2] == (7, 0)


async def test_partial_shipments_with_movement_refs_each_apply_once(
    engine: AsyncEngine, merchant_id: uuid.UUID
) -> None:
    await snapshot(engine, merchant_id, 10, utcnow() - timedelta(hours=1))
    placed = moved(merchant_id, "placed", 3)
    first = moved(merchant_id, "shipped", 1, movement_ref="fulfillment-1")
    second = moved(merchant_id, "shipped", 2, movement_ref="fulfillment-2")
    await apply_order_lines(
        [second, placed, first, first.model_copy(update={"event_id": uuid.uuid4()})], unit_of_work_factory(engine)()
    )
    assert (await levels(engine, merchant_id))[:2] == (7, 0)


async def test_snapshot_taken_before_a_shipment_does_not_bring_the_shipped_units_back(
    engine: AsyncEngine, merchant_id: uuid.UUID
) -> None:
    start = utcnow() - timedelta(hours=1)
    await snapshot(engine, merchant_id, 10, start)
    await apply_order_lines(
        [moved(merchant_id, "placed", 2, at=start + timedelta(minutes=1))], unit_of_work_factory(engine)()
    )
    await apply_order_lines(
        [moved(merchant_id, "shipped", 2, at=start + timedelta(minutes=5))], unit_of_work_factory(engine)()
    )
    assert (await levels(engine, merchant_id))[:2] == (8, 0)
    # The ERP counted 10 at minute 3, before the shipment it has not seen yet.
    assert await snapshot(engine, merchant_id, 10, start + timedelta(minutes=3)) == (1, 0)
    assert (await levels(engine, merchant_id))[:2] == (8, 0)
    # Counted after the shipment, the ERP's number is taken as it is.
    assert await snapshot(engine, merchant_id, 9, start + timedelta(minutes=6)) == (1, 0)
    assert (await levels(engine, merchant_id))[:2] == (9, 0)


async def test_snapshot_older_than_the_last_applied_is_recorded_and_ignored(
    engine: AsyncEngine, merchant_id: uuid.UUID
) -> None:
    now = utcnow()
    await snapshot(engine, merchant_id, 10, now - timedelta(minutes=5))
    before = await levels(engine, merchant_id)
    assert await snapshot(engine, merchant_id, 3, now - timedelta(minutes=10)) == (0, 1)
    assert await levels(engine, merchant_id) == before
    async with engine.connect() as conn:
        kinds = (
            await conn.execute(
                sa.select(ledger_entries.c.kind, ledger_entries.c.delta_on_hand)
                .where(ledger_entries.c.merchant_id == merchant_id)
                .order_by(ledger_entries.c.id)
            )
        ).all()
    assert [tuple(k) for k in kinds] == [("snapshot", 10), ("snapshot_stale", 0)]


async def test_shipment_that_happened_before_the_snapshot_changes_only_reserved(
    engine: AsyncEngine, merchant_id: uuid.UUID
) -> None:
    now = utcnow()
    await apply_order_lines(
        [moved(merchant_id, "placed", 2, at=now - timedelta(minutes=10))], unit_of_work_factory(engine)()
    )
    await snapshot(engine, merchant_id, 8, now - timedelta(minutes=2))
    # Shipped at minute -5 but delivered late: the snapshot of minute -2 already counted it.
    await apply_order_lines(
        [moved(merchant_id, "shipped", 2, at=now - timedelta(minutes=5))], unit_of_work_factory(engine)()
    )
    assert (await levels(engine, merchant_id))[:2] == (8, 0)


async def test_order_beyond_available_is_recorded_as_an_open_oversell_until_stock_is_back(
    engine: AsyncEngine, merchant_id: uuid.UUID
) -> None:
    await snapshot(engine, merchant_id, 1, utcnow() - timedelta(hours=1))
    await apply_order_lines([moved(merchant_id, "placed", 3)], unit_of_work_factory(engine)())
    assert (await levels(engine, merchant_id))[:2] == (1, 3)
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(oversells).where(oversells.c.merchant_id == merchant_id))).all()
        queued = (
            await conn.execute(
                sa.select(outbox.c.event_type).where(
                    outbox.c.causation_id == "shopify:o1:1:placed", outbox.c.key == f"{merchant_id}:A".encode()
                )
            )
        ).scalars()
        queued_types = set(queued)
    assert [(r.available, r.oversold, r.resolved_at) for r in rows] == [(-2, 2, None)]
    # The relay of a running ledger may already have published it; if not, it is queued.
    assert queued_types <= {"StockChanged", "OversellDetected"}
    await adjust_stock(
        Adjustment(merchant_id, "A", "default", 2, "found in back room", "tester", uuid.uuid4()),
        unit_of_work_factory(engine)(),
    )
    async with engine.connect() as conn:
        resolved = (
            await conn.execute(sa.select(oversells.c.resolved_at).where(oversells.c.merchant_id == merchant_id))
        ).scalar_one()
    assert resolved is not None


async def test_adjustment_below_zero_on_hand_is_refused_and_changes_nothing(
    engine: AsyncEngine, merchant_id: uuid.UUID
) -> None:
    with pytest.raises(AdjustmentRefused):
        await adjust_stock(
            Adjustment(merchant_id, "A", "default", -1, "recount", "tester", uuid.uuid4()),
            unit_of_work_factory(engine)(),
        )
    async with engine.connect() as conn:
        assert await read_stock(conn, (merchant_id, "A", "default")) is None


async def test_adjustment_replayed_with_its_id_changes_nothing(engine: AsyncEngine, merchant_id: uuid.UUID) -> None:
    adjustment = Adjustment(merchant_id, "A", "default", 4, "delivery", "tester", uuid.uuid4())
    assert not (await adjust_stock(adjustment, unit_of_work_factory(engine)())).duplicate
    assert (await adjust_stock(adjustment, unit_of_work_factory(engine)())).duplicate
    assert await levels(engine, merchant_id) == (4, 0, 1)


async def chunks(data: bytes, size: int = 7) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def test_csv_import_applies_good_rows_and_reports_bad_ones_by_line(
    engine: AsyncEngine, merchant_id: uuid.UUID
) -> None:
    as_of = utcnow() - timedelta(minutes=1)
    csv = (
        b"sku,on_hand,brand,tags,colour\n"
        b"A,5,Acme,red|sale,blue\n"
        b"B,-1,Acme,,\n"
        b"C,seven,,,\n"
        b"A,6,,,\n"
        b'"D,1",2,Other,,green\n'
        b"E,1,2\n"
    )
    report = await import_snapshot(
        unit_of_work_factory(engine), merchant_id, read_csv(chunks(csv), as_of), chunk_size=2
    )
    assert (report.applied, report.ignored_stale, report.rejected) == (2, 0, 4)
    assert [(e.line, e.field) for e in report.errors] == [(3, "on_hand"), (4, "on_hand"), (5, "sku"), (7, None)]
    assert (await levels(engine, merchant_id, "A"))[:2] == (5, 0)
    assert (await levels(engine, merchant_id, "D,1"))[:2] == (2, 0)
    async with engine.connect() as conn:
        attributes = (
            await conn.execute(
                sa.select(
                    product_attributes.c.sku,
                    product_attributes.c.brand,
                    product_attributes.c.tags,
                    product_attributes.c.attributes,
                    product_attributes.c.version,
                )
                .where(product_attributes.c.merchant_id == merchant_id)
                .order_by(product_attributes.c.sku)
            )
        ).all()
    assert [tuple(a) for a in attributes] == [
        ("A", "Acme", ["red", "sale"], {"colour": "blue"}, 1),
        ("D,1", "Other", [], {"colour": "green"}, 1),
    ]


async def test_attributes_get_a_new_version_only_when_they_change(engine: AsyncEngine, merchant_id: uuid.UUID) -> None:
    def upload(*lines: bytes) -> AsyncIterator[SnapshotRow | Any]:
        return read_json_lines(chunks(b"\n".join(lines)), utcnow())

    await import_snapshot(
        unit_of_work_factory(engine), merchant_id, upload(b'{"sku": "A", "on_hand": 1, "brand": "Acme"}')
    )
    await import_snapshot(
        unit_of_work_factory(engine), merchant_id, upload(b'{"sku": "A", "on_hand": 2, "brand": "Acme"}')
    )
    await import_snapshot(
        unit_of_work_factory(engine), merchant_id, upload(b'{"sku": "A", "on_hand": 2, "category": "shoes"}')
    )
    async with engine.connect() as conn:
        row = (
            await conn.execute(sa.select(product_attributes).where(product_attributes.c.merchant_id == merchant_id))
        ).one()
    assert (row.brand, row.category, row.version) == ("Acme", "shoes", 2)


async def test_json_lines_import_rejects_non_json_and_unknown_fields_by_line(
    engine: AsyncEngine, merchant_id: uuid.UUID
) -> None:
    body = b'{"sku": "A", "on_hand": 1}\nnot json\n{"sku": "B", "on_hand": 1, "colour": "red"}\n\n[1]\n'
    report = await import_snapshot(unit_of_work_factory(engine), merchant_id, read_json_lines(chunks(body), utcnow()))
    assert (report.applied, report.rejected) == (1, 3)
    assert [(e.line, e.field) for e in report.errors] == [(2, None), (3, "colour"), (5, None)]


async def test_reconciliation_finds_nothing_after_movements_and_reports_a_tampered_row(
    engine: AsyncEngine, merchant_id: uuid.UUID
) -> None:
    start = utcnow() - timedelta(hours=1)
    await snapshot(engine, merchant_id, 10, start)
    await apply_order_lines(
        [
            moved(merchant_id, "placed", 3, at=start + timedelta(minutes=1)),
            moved(merchant_id, "shipped", 1, at=start + timedelta(minutes=2)),
        ],
        unit_of_work_factory(engine)(),
    )
    await snapshot(engine, merchant_id, 10, start + timedelta(seconds=90))
    assert await ledger_discrepancies(engine, merchant_id) == []
    async with engine.begin() as conn:
        await conn.execute(
            sa.text("UPDATE stock_ledger.stock_items SET reserved = reserved + 1 WHERE merchant_id = :m"),
            {"m": merchant_id},
        )
    found = await ledger_discrepancies(engine, merchant_id)
    assert {(d.check, d.expected, d.actual) for d in found} == {
        ("ledger_sum_reserved", 2, 3),
        ("order_lines_reserved", 2, 3),
    }
