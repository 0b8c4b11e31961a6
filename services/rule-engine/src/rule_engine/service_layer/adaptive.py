"""The adaptive buffer's inputs on the event path: connections' delays, and decayed rates.

- A connection's measured display delay (connection.delays.v1, from channel-publisher) is
  projected, and the merchant's quantities on that connection re-evaluated at once: a
  slower channel hides more from then on. The publisher announces a delay only when its
  p95 moved enough, at most once a minute, so this costs little.
- A rate only changes by itself by decaying: the stock path re-evaluates a SKU when it
  sells, and `refresh_adaptive_quantities` re-evaluates, every
  `ADAPTIVE_REFRESH_INTERVAL_S`, the SKUs that have a rate, so that a SKU that stopped
  selling shows its hidden units again. Only changed quantities are published, so a busy
  SKU pushes for this reason at most once per interval; a rate decayed to nothing is
  dropped.

Lock order as everywhere (service_layer/evaluation.py): rule rows are not locked here;
`reevaluate` locks the stock rows in scope, and the sales rates of those SKUs are
deleted only under those locks (the stock path writes them under the same locks).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from stocksync_common.contracts import ConnectionDelayMeasured, utcnow
from stocksync_common.db import claim_events
from stocksync_common.periodic import Periodic
from stocksync_common.topics import CONNECTION_DELAYS

from rule_engine.adapters.tables import connection_delays, inbox, rules, sales_rates
from rule_engine.domain.adaptive import NEGLIGIBLE_PER_HOUR
from rule_engine.service_layer.evaluation import Scope, configured_estimation, reevaluate

log = logging.getLogger(__name__)

_IS_ADAPTIVE = rules.c.action["type"].astext == "adaptive"


async def adaptive_merchants(conn: AsyncConnection, merchant_ids: Sequence[uuid.UUID] | None = None) -> set[uuid.UUID]:
    """Merchants with an enabled adaptive rule (among `merchant_ids`, if given)."""
    query = sa.select(rules.c.merchant_id).distinct().where(rules.c.enabled.is_(True), _IS_ADAPTIVE)
    if merchant_ids is not None:
        query = query.where(rules.c.merchant_id.in_(merchant_ids))
    return set((await conn.execute(query)).scalars().all())


async def apply_connection_delays(engine: AsyncEngine, changes: Sequence[ConnectionDelayMeasured]) -> int:
    """Project measured delays (the newest per connection wins); re-evaluate where an adaptive rule reads them."""
    emitted = 0
    async with engine.begin() as conn:
        new_ids = await claim_events(conn, inbox, CONNECTION_DELAYS.name, (c.event_id for c in changes))
        updated: list[ConnectionDelayMeasured] = []
        for change in sorted(changes, key=lambda c: str(c.connection_id)):
            if change.event_id not in new_ids:
                continue
            values = {
                "merchant_id": change.merchant_id,
                "p50_s": change.p50_s,
                "p95_s": change.p95_s,
                "samples": change.samples,
                "measured_at": change.occurred_at,
            }
            stmt = pg.insert(connection_delays).values(connection_id=change.connection_id, **values)
            done = await conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=[connection_delays.c.connection_id],
                    set_=values,
                    where=connection_delays.c.measured_at < stmt.excluded.measured_at,
                ).returning(connection_delays.c.connection_id)
            )
            if done.first() is not None:
                updated.append(change)
        adaptive = await adaptive_merchants(conn, [c.merchant_id for c in updated])
        for change in updated:
            if change.merchant_id in adaptive:
                emitted += len(
                    await reevaluate(
                        conn,
                        change.merchant_id,
                        Scope(connection_ids=frozenset({change.connection_id})),
                        causation_id=f"display-delay:{change.connection_id}",
                    )
                )
    return emitted


async def refresh_adaptive_quantities(engine: AsyncEngine, at: datetime | None = None) -> int:
    """Re-evaluate the SKUs with a sales rate of every adaptive merchant; drop rates decayed to nothing."""
    at = at or utcnow()
    tau = configured_estimation().tau_s
    async with engine.connect() as conn:
        merchants = sorted(await adaptive_merchants(conn), key=str)
    emitted = 0
    for merchant_id in merchants:
        async with engine.begin() as conn:
            skus = frozenset(
                (
                    await conn.execute(
                        sa.select(sales_rates.c.sku).distinct().where(sales_rates.c.merchant_id == merchant_id)
                    )
                )
                .scalars()
                .all()
            )
            if not skus:
                continue
            emitted += len(
                await reevaluate(conn, merchant_id, Scope(skus=skus), causation_id="adaptive:refresh", at=at)
            )
            # rate * exp(-elapsed / tau) * 3600 < NEGLIGIBLE  <=>  elapsed > tau * ln(rate * 3600 / NEGLIGIBLE)
            elapsed = sa.extract("epoch", sa.literal(at, sa.DateTime(timezone=True)) - sales_rates.c.at)
            await conn.execute(
                sa.delete(sales_rates).where(
                    sales_rates.c.merchant_id == merchant_id,
                    sales_rates.c.sku.in_(sorted(skus)),
                    sa.or_(
                        sales_rates.c.rate * 3600 < NEGLIGIBLE_PER_HOUR,
                        elapsed > tau * sa.func.ln(sales_rates.c.rate * 3600 / NEGLIGIBLE_PER_HOUR),
                    ),
                )
            )
    return emitted


def adaptive_refresher(engine: AsyncEngine, interval_s: float, on_emitted: Callable[[], None]) -> Periodic:
    async def step() -> None:
        if await refresh_adaptive_quantities(engine):
            on_emitted()

    return Periodic("adaptive-refresh", interval_s, step)
