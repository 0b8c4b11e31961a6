"""A stateful property test: random movements, duplicates and reordering against a simple model.

Hypothesis generates order-line movements (some for the same line, kind and partial
reference, so the second must be ignored), delivers them in random batches and random
order with redeliveries of the same event and of the same movement under a new event
id, interleaved with snapshots (some stale, some older than movements already applied)
and adjustments. After every step the real ledger in PostgreSQL must equal a model
that recomputes stock from scratch from the set of movements, and the invariants of
docs/design.md section 3 must hold.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from stocksync_common.contracts import OrderLineMoved, utcnow

from stock_ledger.adapters.tables import ledger_entries, order_lines, stock_items
from stock_ledger.adapters.unit_of_work import unit_of_work_factory
from stock_ledger.service_layer.adjustments import Adjustment, AdjustmentRefused, adjust_stock
from stock_ledger.service_layer.order_lines import apply_order_lines, movement_causation_id
from stock_ledger.service_layer.snapshots import SnapshotRow, import_snapshot

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CONNECTION = uuid.UUID("00000000-0000-0000-0000-0000000000c2")
SKUS = ("A", "B")
# Lines and the SKU each belongs to: a line never changes SKU.
LINES = {"o1:1": "A", "o1:2": "B", "o2:1": "A", "o3:1": "A"}
# Logical time, far enough in the past that adjustments (stamped now) come after it.
EPOCH = utcnow() - timedelta(days=1)


@dataclass
class Model:
    """Stock recomputed from scratch: the definition, not the ledger's incremental code."""

    movements: list[OrderLineMoved] = field(default_factory=list)
    seen_event_ids: set[uuid.UUID] = field(default_factory=set)
    seen_causations: set[str] = field(default_factory=set)
    adjustments: dict[str, int] = field(default_factory=dict)
    snapshots: dict[str, tuple[datetime, int]] = field(default_factory=dict)

    def deliver(self, batch: list[OrderLineMoved]) -> None:
        for event in batch:
            if event.event_id in self.seen_event_ids:
                continue
            self.seen_event_ids.add(event.event_id)
            causation = movement_causation_id(event)
            if causation not in self.seen_causations:
                self.seen_causations.add(causation)
                self.movements.append(event)

    def snapshot(self, sku: str, on_hand: int, as_of: datetime) -> bool:
        """Whether the snapshot applies (it is not older than the last one applied)."""
        last = self.snapshots.get(sku)
        if last is not None and as_of < last[0]:
            return False
        self.snapshots[sku] = (as_of, on_hand)
        return True

    def on_hand(self, sku: str) -> int:
        watermark, counted = self.snapshots.get(sku, (None, 0))
        moved = 0
        for m in self.movements:
            if m.sku != sku or (watermark is not None and m.received_at <= watermark):
                continue
            if m.movement == "shipped":
                moved -= m.quantity
            elif m.movement == "returned" and m.restock:
                moved += m.quantity
        # Adjustments are stamped with the wall clock: after every logical snapshot.
        return counted + moved + self.adjustments.get(sku, 0)

    def reserved(self, sku: str) -> int:
        totals: dict[str, dict[str, int]] = {}
        for m in self.movements:
            if m.sku == sku:
                line = totals.setdefault(f"{m.external_order_id}:{m.line_id}", {})
                line[m.movement] = line.get(m.movement, 0) + m.quantity
        return sum(max(0, t.get("placed", 0) - t.get("cancelled", 0) - t.get("shipped", 0)) for t in totals.values())


class LedgerMachine(RuleBasedStateMachine):
    database_url: str = ""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.engine = create_async_engine(self.database_url, poolclass=NullPool)
        self.merchant_id = uuid.uuid4()
        self.model = Model()
        self.clock = EPOCH
        self.undelivered: list[OrderLineMoved] = []
        self.delivered: list[OrderLineMoved] = []
        self.versions: dict[str, tuple[int, int, int]] = {}

    def run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(coroutine)

    def tick(self) -> datetime:
        self.clock += timedelta(seconds=10)
        return self.clock

    @rule(
        line=st.sampled_from(sorted(LINES)),
        movement=st.sampled_from(["placed", "placed", "cancelled", "shipped", "returned"]),
        quantity=st.integers(1, 3),
        ref=st.sampled_from([None, None, "p1", "p2"]),
        restock=st.booleans(),
    )
    def movement_happens(self, line: str, movement: str, quantity: int, ref: str | None, restock: bool) -> None:
        order, line_id = line.split(":")
        self.undelivered.append(
            OrderLineMoved(
                merchant_id=self.merchant_id,
                connection_id=CONNECTION,
                channel_type="shopify",
                external_order_id=order,
                line_id=line_id,
                sku=LINES[line],
                movement=movement,  # type: ignore[arg-type]
                quantity=quantity,
                received_at=self.tick(),
                causation_id=f"{line}:{movement}",
                movement_ref=ref,
                restock=restock,
            )
        )

    @precondition(lambda self: bool(self.undelivered) or bool(self.delivered))
    @rule(data=st.data())
    def a_batch_is_delivered(self, data: st.DataObject) -> None:
        """Some undelivered movements in any order, with redeliveries mixed in."""
        fresh = data.draw(st.permutations(self.undelivered))
        fresh = fresh[: data.draw(st.integers(0, len(fresh)))]
        replays: list[OrderLineMoved] = []
        if self.delivered:
            for event in data.draw(st.lists(st.sampled_from(self.delivered), max_size=3)):
                same_movement_new_id = data.draw(st.booleans())
                replays.append(event.model_copy(update={"event_id": uuid.uuid4()}) if same_movement_new_id else event)
        batch = data.draw(st.permutations(fresh + replays + fresh[:1]))
        if not batch:
            return
        for event in fresh:
            self.undelivered.remove(event)
        self.delivered.extend(fresh)
        changed = self.run(apply_order_lines(batch, unit_of_work_factory(self.engine)()))
        self.model.deliver(batch)
        assert len({e.sku for e in changed}) == len(changed), "one StockChanged per SKU per batch"

    @rule(sku=st.sampled_from(SKUS), on_hand=st.integers(0, 20), seconds_ago=st.integers(-5, 60))
    def erp_sends_a_snapshot(self, sku: str, on_hand: int, seconds_ago: int) -> None:
        # Between the last movements (re-applied on top) and long ago (maybe stale).
        as_of = self.clock - timedelta(seconds=seconds_ago)

        async def rows() -> Any:
            yield SnapshotRow(1, sku, "default", on_hand, as_of)

        report = self.run(import_snapshot(unit_of_work_factory(self.engine), self.merchant_id, rows()))
        applies = self.model.snapshot(sku, on_hand, as_of)
        assert (report.applied, report.ignored_stale) == ((1, 0) if applies else (0, 1))

    @rule(sku=st.sampled_from(SKUS), delta=st.integers(-5, 5).filter(bool))
    def merchant_adjusts(self, sku: str, delta: int) -> None:
        adjustment = Adjustment(self.merchant_id, sku, "default", delta, "recount", "property test", uuid.uuid4())
        try:
            self.run(adjust_stock(adjustment, unit_of_work_factory(self.engine)()))
        except AdjustmentRefused:
            assert self.model.on_hand(sku) + delta < 0
            return
        self.model.adjustments[sku] = self.model.adjustments.get(sku, 0) + delta

    @invariant()
    def ledger_equals_the_model_and_its_invariants_hold(self) -> None:
        rows, sums, lines = self.run(self.read_state())
        for sku in SKUS:
            on_hand, reserved, version = rows.get(sku, (0, 0, 0))
            assert (on_hand, reserved) == (self.model.on_hand(sku), self.model.reserved(sku)), sku
            assert sums.get(sku, (0, 0, version)) == (on_hand, reserved, version), "ledger sums equal the row"
            assert lines.get(sku, 0) == reserved, "order lines reserve what the row says"
            assert reserved >= 0
            previous = self.versions.get(sku, (0, 0, 0))
            assert version >= previous[2], "versions never go back"
            if (on_hand, reserved) != previous[:2]:
                assert version > previous[2], "a change gets a new version"
            self.versions[sku] = (on_hand, reserved, version)

    async def read_state(self) -> tuple[dict[str, Any], dict[str, Any], dict[str, int]]:
        s, e, line = stock_items.c, ledger_entries.c, order_lines.c
        async with self.engine.connect() as conn:
            rows = {
                r.sku: (r.on_hand, r.reserved, r.version)
                for r in await conn.execute(
                    sa.select(s.sku, s.on_hand, s.reserved, s.version).where(s.merchant_id == self.merchant_id)
                )
            }
            sums = {
                r.sku: (int(r.on_hand), int(r.reserved), int(r.version))
                for r in await conn.execute(
                    sa.select(
                        e.sku,
                        sa.func.sum(e.delta_on_hand).label("on_hand"),
                        sa.func.sum(e.delta_reserved).label("reserved"),
                        sa.func.max(e.version).label("version"),
                    )
                    .where(e.merchant_id == self.merchant_id)
                    .group_by(e.sku)
                )
            }
            lines = {
                r.sku: int(r.reserved)
                for r in await conn.execute(
                    sa.select(line.sku, sa.func.sum(line.reserved).label("reserved"))
                    .where(line.merchant_id == self.merchant_id)
                    .group_by(line.sku)
                )
            }
        return rows, sums, lines

    def teardown(self) -> None:
        self.run(self.engine.dispose())
        self.loop.close()


def test_ledger_matches_a_simple_model_under_duplicates_and_reordering(database_url: str) -> None:
    LedgerMachine.database_url = database_url
    examples = int(os.environ.get("LEDGER_PROPERTY_EXAMPLES", "40"))
    machine_test = LedgerMachine.TestCase
    machine_test.settings = settings(
        max_examples=examples,
        stateful_step_count=30,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    machine_test("runTest").runTest()
