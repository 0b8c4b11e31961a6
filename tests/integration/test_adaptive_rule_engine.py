"""The adaptive buffer in the rule engine, against the real database.

The stock path keeps a decayed sales rate per SKU and channel from the ledger's order
movements (not adjustments, not redeliveries, not older versions); measured delays from
connection.delays.v1 are projected and re-evaluate at once; a slow channel hides more
than a fast one and says why; a re-evaluation afterwards agrees with the event path; and
the refresh shows the hidden units again once the rate has decayed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from stocksync_common.contracts import ConnectionDelayMeasured, StockChanged, utcnow

from rule_engine.adapters.tables import connection_delays, sales_rates
from rule_engine.service_layer.adaptive import apply_connection_delays, refresh_adaptive_quantities
from rule_engine.service_layer.context import ConsumerContext
from rule_engine.service_layer.evaluation import reevaluate
from rule_engine.service_layer.stock_changes import apply_stock_changes
from tests.conftest import PrivateDatabase
from tests.integration.rule_engine_helpers import (
    add_connection,
    add_rule,
    emitted_events,
    rule_engine_units,
    stock_changed,
)

pytestmark = pytest.mark.integration

ADAPTIVE = {"type": "adaptive", "value": 0, "confidence_pct": 95.0, "minimum": 0, "maximum": 10}


def change(merchant_id: uuid.UUID, version: int, available: int, causation_id: str) -> StockChanged:
    return stock_changed(merchant_id, "X", version, available, causation_id=causation_id, origin_received_at=utcnow())


def delay(merchant_id: uuid.UUID, connection_id: uuid.UUID, p95_s: float) -> ConnectionDelayMeasured:
    return ConnectionDelayMeasured(
        merchant_id=merchant_id,
        connection_id=connection_id,
        causation_id=f"display-delay:{connection_id}",
        p50_s=p95_s / 2,
        p95_s=p95_s,
        samples=20,
    )


async def rates(engine: AsyncEngine, merchant_id: uuid.UUID) -> dict[tuple[str, str], float]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(sales_rates.c.sku, sales_rates.c.channel, sales_rates.c.rate).where(
                sales_rates.c.merchant_id == merchant_id
            )
        )
        return {(sku, c): rate for sku, c, rate in rows.all()}


async def shown(engine: AsyncEngine, merchant_id: uuid.UUID) -> dict[uuid.UUID, Any]:
    """The newest quantity and reasons emitted per connection."""
    return {e.connection_id: (e.quantity, e.reasons) for e in await emitted_events(engine, merchant_id)}


@pytest.fixture
def database_url(private_database: PrivateDatabase) -> Iterator[str]:
    """A database of each test's own: the e2e stack's rule engine, running on the
    session's database in the same worker, would take part (its periodic refresh covers
    every merchant there, and the refresh's count is what is tested)."""
    with private_database() as url:
        yield url


async def test_a_slow_channel_hides_the_units_others_sell_while_it_is_stale(database_url: str) -> None:
    engine = create_async_engine(database_url, poolclass=NullPool)
    merchant_id, fast, slow = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    context = ConsumerContext(rule_engine_units(engine))
    try:
        async with engine.begin() as conn:
            for c in (fast, slow):
                await add_connection(conn, merchant_id, c)
            rule_id = await add_rule(conn, merchant_id, 1, condition={"op": "always"}, action=ADAPTIVE)

        # A stock import is no sale: no rate, nothing hidden.
        assert await apply_stock_changes([change(merchant_id, 1, 100, "adjustment:a1")], context) == 2
        assert await rates(engine, merchant_id) == {}
        assert {c: q for c, (q, _) in (await shown(engine, merchant_id)).items()} == {fast: 100, slow: 100}

        # Measured delays arrive; with no sales they change nothing.
        assert (
            await apply_connection_delays([delay(merchant_id, fast, 3.0), delay(merchant_id, slow, 600.0)], context)
            == 0
        )
        async with engine.connect() as conn:
            projected = dict(
                (await conn.execute(sa.select(connection_delays.c.connection_id, connection_delays.c.p95_s))).all()
            )
        assert projected[fast] == 3.0 and projected[slow] == 600.0

        # 30 units sold on the fast channel: 30 / 1800 s = 60 units an hour.
        sale = change(merchant_id, 2, 70, "shopify:order-1:line-1:placed")
        assert await apply_stock_changes([sale], context) == 2
        assert await rates(engine, merchant_id) == {("X", "shopify"): pytest.approx(30 / 1800)}
        now = await shown(engine, merchant_id)
        # Fast: 60/h x 3 s = 0.05 expected, P(0) = 0.951 >= 95%: hides nothing.
        # Slow: 60/h x 600 s = 10 expected, the 95% quantile is 15, kept to the maximum 10.
        assert now[fast][0] == 70 and now[slow][0] == 60
        assert now[slow][1] == (
            "adaptive buffer hid 10: the SKU sells 60.00 units/h, this channel shows a change after 600 s (p95), "
            "10.00 units expected meanwhile, 95% confidence, bounds 0-10",
        )
        events = await emitted_events(engine, merchant_id)
        assert events[-1].rule_ids == (rule_id,)

        # A redelivery and an older version count no sale; an adjustment that lowers stock is no sale.
        assert await apply_stock_changes([sale], context) == 0
        older = change(merchant_id, 1, 10, "shopify:order-0:line-1:placed")
        assert await apply_stock_changes([older], context) == 0
        assert await apply_stock_changes([change(merchant_id, 3, 69, "adjustment:a2")], context) == 2
        assert await rates(engine, merchant_id) == {("X", "shopify"): pytest.approx(30 / 1800)}

        # A re-evaluation from the database agrees with the event path.
        async with context.units.begin() as uow:
            assert await reevaluate(uow, merchant_id, causation_id="check") == []

        # Later, the slow channel turns fast: it hides nothing more.
        faster = delay(merchant_id, slow, 3.0)
        assert await apply_connection_delays([faster], context) == 1
        assert (await shown(engine, merchant_id))[slow][0] == 69
        # Its redelivery, and an older measure arriving late, change nothing.
        stale = delay(merchant_id, slow, 600.0).model_copy(
            update={"occurred_at": faster.occurred_at - timedelta(minutes=1)}
        )
        assert await apply_connection_delays([faster, stale], context) == 0
        async with engine.connect() as conn:
            p95 = (
                await conn.execute(
                    sa.select(connection_delays.c.p95_s).where(connection_delays.c.connection_id == slow)
                )
            ).scalar_one()
        assert p95 == 3.0
    finally:
        await engine.dispose()


async def test_the_refresh_shows_hidden_units_again_once_the_rate_decayed(database_url: str) -> None:
    engine = create_async_engine(database_url, poolclass=NullPool)
    merchant_id, channel = uuid.uuid4(), uuid.uuid4()
    context = ConsumerContext(rule_engine_units(engine))
    try:
        async with engine.begin() as conn:
            await add_connection(conn, merchant_id, channel, channel_type="amazon")
            await add_rule(conn, merchant_id, 1, condition={"op": "always"}, action=ADAPTIVE)
        await apply_stock_changes([change(merchant_id, 1, 50, "adjustment:a1")], context)
        # 18 units sold, no delay measured: the default 120 s. 36/h x 120 s = 1.2 expected: hides 3.
        await apply_stock_changes([change(merchant_id, 2, 32, "amazon:o:l:placed")], context)
        assert (await shown(engine, merchant_id))[channel][0] == 29

        # Nothing changed yet: the refresh publishes nothing.
        assert await refresh_adaptive_quantities(context.units) == 0
        # Six hours without a sale: the rate decayed to nothing, the units show again, the row is gone.
        assert await refresh_adaptive_quantities(context.units, utcnow() + timedelta(hours=6)) == 1
        assert (await shown(engine, merchant_id))[channel] == (
            32,
            ("adaptive buffer hid nothing: too few sales elsewhere while this channel is stale",),
        )
        assert await rates(engine, merchant_id) == {}
    finally:
        await engine.dispose()
