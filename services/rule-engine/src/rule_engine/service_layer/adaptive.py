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

Lock order as everywhere (adapters/quantity_store.py): rule rows are not locked here;
`reevaluate` locks the stock rows in scope, and the sales rates of those SKUs are
deleted only under those locks (the stock path writes them under the same locks).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from stocksync_common.contracts import ConnectionDelayMeasured, utcnow
from stocksync_common.periodic import Periodic
from stocksync_common.topics import CONNECTION_DELAYS
from stocksync_common.uow import UnitOfWorkFactory

from rule_engine.adapters import quantity_store
from rule_engine.adapters.tables import rules, sales_rates
from rule_engine.service_layer.evaluation import Scope, configured_estimation, reevaluate

if TYPE_CHECKING:
    from rule_engine.service_layer.context import ConsumerContext

log = logging.getLogger(__name__)

_IS_ADAPTIVE = rules.c.action["type"].astext == "adaptive"


async def adaptive_merchants(conn: AsyncConnection, merchant_ids: Sequence[uuid.UUID] | None = None) -> set[uuid.UUID]:
    """Merchants with an enabled adaptive rule (among `merchant_ids`, if given)."""
    query = sa.select(rules.c.merchant_id).distinct().where(rules.c.enabled.is_(True), _IS_ADAPTIVE)
    if merchant_ids is not None:
        query = query.where(rules.c.merchant_id.in_(merchant_ids))
    return set((await conn.execute(query)).scalars().all())


async def apply_connection_delays(changes: Sequence[ConnectionDelayMeasured], context: ConsumerContext) -> int:
    """Project measured delays (the newest per connection wins); re-evaluate where an adaptive rule reads them."""
    emitted = 0
    async with context.units.begin() as uow:
        updated = await quantity_store.project_delays(uow.connection, CONNECTION_DELAYS.name, changes)
        adaptive = await adaptive_merchants(uow.sqlalchemy, [merchant_id for _, merchant_id in updated])
        for connection_id, merchant_id in updated:
            if merchant_id in adaptive:
                emitted += len(
                    await reevaluate(
                        uow,
                        merchant_id,
                        Scope(connection_ids=frozenset({connection_id})),
                        causation_id=f"display-delay:{connection_id}",
                    )
                )
    return emitted


async def refresh_adaptive_quantities(units: UnitOfWorkFactory, at: datetime | None = None) -> int:
    """Re-evaluate the SKUs with a sales rate of every adaptive merchant; drop rates decayed
    to nothing. Returns the number of quantities emitted."""
    at = at or utcnow()
    tau = configured_estimation().tau_s
    async with units.engine.connect() as conn:
        merchants = sorted(await adaptive_merchants(conn), key=str)
    emitted = 0
    for merchant_id in merchants:
        async with units.begin() as uow:
            skus = frozenset(
                (
                    await uow.sqlalchemy.execute(
                        sa.select(sales_rates.c.sku).distinct().where(sales_rates.c.merchant_id == merchant_id)
                    )
                )
                .scalars()
                .all()
            )
            if not skus:
                continue
            emitted += len(await reevaluate(uow, merchant_id, Scope(skus=skus), causation_id="adaptive:refresh", at=at))
            await quantity_store.drop_decayed_rates(uow.connection, merchant_id, skus, at, tau)
    return emitted


def adaptive_refresher(units: UnitOfWorkFactory, interval_s: float) -> Periodic:
    async def step() -> None:
        await refresh_adaptive_quantities(units)

    return Periodic("adaptive-refresh", interval_s, step)
