"""Manual adjustments: a signed delta on on_hand, with a reason and who made it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace

from stocksync_common.contracts import utcnow
from stocksync_common.uow import UnitOfWork

from stock_ledger.adapters import bundle_store, ledger_store
from stock_ledger.adapters.ledger_store import MOVEMENTS, LedgerEntry
from stock_ledger.domain.stock import SkuChange, StockLevel, plan_stock_changes


class AdjustmentRefused(Exception):
    """The adjustment would take on_hand below zero; nothing was written."""


@dataclass(frozen=True)
class Adjustment:
    merchant_id: uuid.UUID
    sku: str
    location: str
    delta: int
    reason: str
    actor: str
    adjustment_id: uuid.UUID


@dataclass(frozen=True)
class AdjustmentOutcome:
    level: StockLevel
    # True when this adjustment id had been applied before: the replay changed nothing.
    duplicate: bool


async def adjust_stock(adjustment: Adjustment, uow: UnitOfWork) -> AdjustmentOutcome:
    key = (adjustment.merchant_id, adjustment.sku, adjustment.location)
    causation_id = f"adjustment:{adjustment.adjustment_id}"
    async with uow:
        if (adjustment.merchant_id, adjustment.sku) in await bundle_store.definitions(
            uow.connection, [(adjustment.merchant_id, adjustment.sku)]
        ):
            raise AdjustmentRefused(f"{adjustment.sku!r} is a bundle: adjust its components")
        before = (await ledger_store.lock_stock(uow.connection, [key])).levels[key]
        recorded = await ledger_store.read_recorded(uow.connection, [(adjustment.merchant_id, causation_id)])
        if recorded.causations:
            return AdjustmentOutcome(before, duplicate=True)
        if before.on_hand + adjustment.delta < 0:
            # Leaving without a commit rolls back, the stock row it may have created included.
            raise AdjustmentRefused(f"delta {adjustment.delta} would take on_hand from {before.on_hand} below zero")
        after = replace(before.moved(adjustment.delta, 0), version=before.version + 1)
        now = utcnow()
        entry = LedgerEntry(
            merchant_id=adjustment.merchant_id,
            sku=adjustment.sku,
            location=adjustment.location,
            causation_id=causation_id,
            kind="adjustment",
            quantity=adjustment.delta,
            delta_on_hand=adjustment.delta,
            delta_reserved=0,
            version=after.version,
            occurred_at=now,
            reason=adjustment.reason,
            actor=adjustment.actor,
        )
        writes = plan_stock_changes([SkuChange(key, before, after, causation_id)], now)
        await ledger_store.save_stock_changes(uow, writes, [entry])
        await uow.commit()
    MOVEMENTS.labels("adjustment").inc()
    return AdjustmentOutcome(after, duplicate=False)
