"""Manual adjustments: a signed delta on on_hand, with a reason and who made it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from stocksync_common.contracts import utcnow

from stock_ledger.adapters.tables import ledger_entries
from stock_ledger.domain.stock import StockLevel
from stock_ledger.service_layer.stock_rows import MOVEMENTS, SkuChange, lock_stock_rows, save_stock_changes


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


async def adjust_stock(engine: AsyncEngine, adjustment: Adjustment) -> AdjustmentOutcome:
    key = (adjustment.merchant_id, adjustment.sku, adjustment.location)
    causation_id = f"adjustment:{adjustment.adjustment_id}"
    async with engine.begin() as conn:
        before = (await lock_stock_rows(conn, [key]))[key]
        already = (
            await conn.execute(
                sa.select(ledger_entries.c.id).where(
                    ledger_entries.c.merchant_id == adjustment.merchant_id,
                    ledger_entries.c.causation_id == causation_id,
                )
            )
        ).first()
        if already is not None:
            return AdjustmentOutcome(before, duplicate=True)
        if before.on_hand + adjustment.delta < 0:
            # Raising rolls back the transaction, the stock row it may have created included.
            raise AdjustmentRefused(f"delta {adjustment.delta} would take on_hand from {before.on_hand} below zero")
        after = replace(before.moved(adjustment.delta, 0), version=before.version + 1)
        await conn.execute(
            sa.insert(ledger_entries).values(
                merchant_id=adjustment.merchant_id,
                sku=adjustment.sku,
                location=adjustment.location,
                causation_id=causation_id,
                kind="adjustment",
                quantity=adjustment.delta,
                delta_on_hand=adjustment.delta,
                delta_reserved=0,
                version=after.version,
                occurred_at=utcnow(),
                reason=adjustment.reason,
                actor=adjustment.actor,
            )
        )
        await save_stock_changes(conn, [SkuChange(key, before, after, causation_id)])
    MOVEMENTS.labels("adjustment").inc()
    return AdjustmentOutcome(after, duplicate=False)
