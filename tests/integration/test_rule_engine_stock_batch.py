"""The stock.changed.v1 batch path (`apply_stock_changes`) against the real database.

It must do what projecting the stock and running `reevaluate` on the moved SKUs did:
an older stock version is ignored, a redelivered event is applied once, a channel
quantity is emitted only when it changes and carries the stock version and rule ids,
and a rule changed by another instance is seen by the next batch despite the cache.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from stocksync_common.contracts import ChannelQuantityChanged, ConnectionChanged

from rule_engine.adapters.tables import channel_quantities, stock
from rule_engine.adapters.tables import rules as rules_table
from rule_engine.service_layer.context import ConsumerContext
from rule_engine.service_layer.evaluation import apply_connection_changes, reevaluate
from rule_engine.service_layer.stock_changes import apply_stock_changes
from tests.integration.rule_engine_helpers import (
    add_connection,
    add_rule,
    emitted_events,
    rule_engine_units,
    stock_changed,
)

pytestmark = pytest.mark.integration


async def test_stock_batches_emit_only_changed_quantities_once_in_version_order(database_url: str) -> None:
    engine = create_async_engine(database_url, poolclass=NullPool)
    merchant_id = uuid.uuid4()
    first, second, inactive = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    wakes: list[None] = []
    units = rule_engine_units(engine, lambda: wakes.append(None))
    context = ConsumerContext(units)
    try:
        async with engine.begin() as conn:
            for c in (first, second, inactive):
                await add_connection(conn, merchant_id, c, active=c != inactive)
            buffer = await add_rule(
                conn, merchant_id, 1, condition={"op": "<=", "value": 3}, action={"type": "set", "value": 0}
            )
            only_b = await add_rule(
                conn, merchant_id, 2, skus=["B"], condition={"op": "always"}, action={"type": "subtract", "value": 1}
            )
        channels = sorted([first, second])

        batch = [
            stock_changed(merchant_id, "A", 5, 2),
            stock_changed(merchant_id, "A", 5, 10, location="north"),
            stock_changed(merchant_id, "B", 4, 7),
            stock_changed(merchant_id, "B", 5, 10),
        ]
        # Both connections sell from the default location only: "north" is not theirs.
        assert await apply_stock_changes(batch, context) == 4
        assert len(wakes) == 1  # by the unit of work's commit, which wrote the four
        events = await emitted_events(engine, merchant_id)
        assert [(e.connection_id, e.sku, e.location, e.quantity, e.version, e.stock_version) for e in events] == [
            (channels[0], "A", "default", 0, 1, 5),
            (channels[1], "A", "default", 0, 1, 5),
            (channels[0], "B", "default", 9, 1, 5),
            (channels[1], "B", "default", 9, 1, 5),
        ]
        assert [e.rule_ids for e in events[::2]] == [(buffer,), (only_b,)]
        assert events[0].causation_id == "order:A:5" and events[0].available == 2

        # A redelivery, an older version, and a newer version that leaves the quantity at 0.
        assert await apply_stock_changes(batch, context) == 0
        assert await apply_stock_changes([stock_changed(merchant_id, "A", 4, 50)], context) == 0
        assert await apply_stock_changes([stock_changed(merchant_id, "A", 6, 1)], context) == 0
        assert len(wakes) == 1  # nothing written, nothing to wake the relay for
        async with engine.connect() as conn:
            projected = (
                await conn.execute(
                    sa.select(stock.c.version, stock.c.available).where(
                        stock.c.merchant_id == merchant_id, stock.c.sku == "A", stock.c.location == "default"
                    )
                )
            ).one()
        assert tuple(projected) == (6, 1)

        assert await apply_stock_changes([stock_changed(merchant_id, "A", 7, 8)], context) == 2
        latest = (await emitted_events(engine, merchant_id))[-2:]
        assert [(e.quantity, e.version, e.stock_version, e.rule_ids) for e in latest] == [(8, 2, 7, ())] * 2

        # Another instance changes the rule (no re-evaluation here): the next batch must see it.
        async with engine.begin() as conn:
            await conn.execute(
                sa.update(rules_table).where(rules_table.c.rule_id == buffer).values(action={"type": "set", "value": 1})
            )
        assert await apply_stock_changes([stock_changed(merchant_id, "A", 8, 3)], context) == 2
        latest = (await emitted_events(engine, merchant_id))[-2:]
        assert [(e.quantity, e.version, e.stock_version, e.rule_ids) for e in latest] == [(1, 3, 8, (buffer,))] * 2

        # What was published is what a full re-evaluation computes: nothing is left to emit.
        async with units.begin() as uow:
            assert await reevaluate(uow, merchant_id, causation_id="check") == []
            published = (
                await uow.sqlalchemy.execute(
                    sa.select(sa.func.count()).where(
                        channel_quantities.c.merchant_id == merchant_id, channel_quantities.c.connection_id == inactive
                    )
                )
            ).scalar_one()
        assert published == 0
        assert len(wakes) == 3  # nothing written by the re-evaluation, nothing to wake the relay for
    finally:
        await engine.dispose()


async def test_each_connection_is_shown_the_sum_of_its_own_locations_or_each_of_them(database_url: str) -> None:
    """A summed connection is shown the sum of its locations' available at the default
    location (0 when none of them has stock, never another location's units); a
    per-location one (Shopify) each of its locations; a full re-evaluation agrees."""
    engine = create_async_engine(database_url, poolclass=NullPool)
    merchant_id = uuid.uuid4()
    both, only_b, shopify = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    feeds = {both: (["b", "a"], False), only_b: (["b"], False), shopify: (["a", "b"], True)}
    wakes: list[None] = []
    units = rule_engine_units(engine, lambda: wakes.append(None))
    context = ConsumerContext(units)
    try:
        async with engine.begin() as conn:
            for c, (sells_from, per_location) in feeds.items():
                channel_type = "shopify" if per_location else "generic"
                await add_connection(
                    conn, merchant_id, c, channel_type=channel_type, locations=sells_from, per_location=per_location
                )
            await add_rule(conn, merchant_id, 1, condition={"op": "<=", "value": 3}, action={"type": "set", "value": 0})

        def shown(events: list[ChannelQuantityChanged]) -> set[tuple[uuid.UUID, str, str, int, int]]:
            return {(e.connection_id, e.sku, e.location, e.quantity, e.available) for e in events}

        batch = [
            stock_changed(merchant_id, "X", 1, 7, location="a"),
            stock_changed(merchant_id, "Y", 1, 2, location="a"),
        ]
        await apply_stock_changes(batch, context)
        assert shown(await emitted_events(engine, merchant_id)) == {
            (both, "X", "default", 7, 7),
            (only_b, "X", "default", 0, 0),  # A's 7 units are never shown to a channel fed from B
            (shopify, "X", "a", 7, 7),
            (both, "Y", "default", 0, 2),
            (only_b, "Y", "default", 0, 0),
            (shopify, "Y", "a", 0, 2),
        }

        before = len(await emitted_events(engine, merchant_id))
        await apply_stock_changes([stock_changed(merchant_id, "X", 1, 5, location="b")], context)
        newest = (await emitted_events(engine, merchant_id))[before:]
        assert shown(newest) == {
            (both, "X", "default", 12, 12),
            (only_b, "X", "default", 5, 5),
            (shopify, "X", "b", 5, 5),
        }
        assert {e.stock_version for e in newest if e.connection_id == both} == {2}  # 1 at a + 1 at b
        assert {e.version for e in newest if e.connection_id != shopify} == {2}

        # A location no connection sells from moves nothing.
        assert await apply_stock_changes([stock_changed(merchant_id, "X", 1, 99, location="c")], context) == 0

        async with units.begin() as uow:
            assert await reevaluate(uow, merchant_id, causation_id="check") == []

        # Shopify stops selling from "a": it is sent 0 there, and the sum channel its new sum.
        before = len(await emitted_events(engine, merchant_id))
        woken = len(wakes)
        for connection_id, locations in ((shopify, ("b",)), (both, ("b",))):
            change = ConnectionChanged(
                merchant_id=merchant_id,
                connection_id=connection_id,
                channel_type="shopify" if connection_id == shopify else "generic",
                name=str(connection_id),
                active=True,
                locations=locations,
                per_location=connection_id == shopify,
                causation_id="moved",
            )
            await apply_connection_changes([change], context)
        newest = (await emitted_events(engine, merchant_id))[before:]
        # (Y at "a" was already shown 0, by the buffer rule: nothing to send.)
        assert shown(newest) == {(shopify, "X", "a", 0, 0), (both, "X", "default", 5, 5)}
        assert len(wakes) == woken + 2  # by each change's unit of work, which emitted
        async with units.begin() as uow:
            assert await reevaluate(uow, merchant_id, causation_id="check") == []
    finally:
        await engine.dispose()


async def test_a_new_skus_first_stock_during_a_rule_change_is_published_with_the_rule(database_url: str) -> None:
    """A re-evaluation locks only the stock rows that exist. A SKU's first stock change,
    applied while a rule change is being re-evaluated, must not read the rules before
    that change commits: it waits for it (the merchant's evaluation lock), then decides
    with the new rule. Without the lock it would publish the SKU as if the rule did not
    exist, and the re-evaluation, which could not see the new row, would not correct it."""
    engine = create_async_engine(database_url, poolclass=NullPool)
    merchant_id, channel = uuid.uuid4(), uuid.uuid4()
    units = rule_engine_units(engine)
    context = ConsumerContext(units)
    try:
        async with engine.begin() as conn:
            await add_connection(conn, merchant_id, channel)
        async with units.begin() as rule_change:
            await add_rule(
                rule_change.sqlalchemy,
                merchant_id,
                1,
                condition={"op": "<=", "value": 3},
                action={"type": "set", "value": 0},
            )
            # The rule change's re-evaluation: no stock row of the merchant exists yet.
            assert await reevaluate(rule_change, merchant_id, causation_id="rule") == []
            batch = asyncio.create_task(apply_stock_changes([stock_changed(merchant_id, "NEW", 1, 2)], context))
            await asyncio.sleep(1.0)  # long enough for the batch to have read the rules, were it not waiting
            assert not batch.done()
        # The rule change committed on leaving its unit of work.
        assert await asyncio.wait_for(batch, 30) == 1
        (event,) = await emitted_events(engine, merchant_id)
        assert (event.sku, event.available, event.quantity) == ("NEW", 2, 0)  # the buffer rule applied
        async with units.begin() as uow:
            assert await reevaluate(uow, merchant_id, causation_id="check") == []
    finally:
        await engine.dispose()
