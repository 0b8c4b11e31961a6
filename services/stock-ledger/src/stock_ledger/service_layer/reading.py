"""Read models for the API: current stock, ledger history, oversells. Keyset-paged."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from stock_ledger.adapters.ledger_store import SkuKey
from stock_ledger.adapters.tables import ledger_entries, oversells, stock_items

Row = sa.Row[Any]


async def read_stock(conn: AsyncConnection, key: SkuKey) -> Row | None:
    merchant_id, sku, location = key
    return (
        await conn.execute(
            sa.select(stock_items).where(
                stock_items.c.merchant_id == merchant_id, stock_items.c.sku == sku, stock_items.c.location == location
            )
        )
    ).one_or_none()


async def list_stock(
    conn: AsyncConnection,
    merchant_id: uuid.UUID,
    *,
    location: str,
    after_sku: str | None,
    limit: int,
    available_at_most: int | None,
    sku_prefix: str | None = None,
) -> Sequence[Row]:
    s = stock_items.c
    query = sa.select(stock_items).where(s.merchant_id == merchant_id, s.location == location)
    if after_sku is not None:
        query = query.where(s.sku.collate("C") > after_sku)
    if sku_prefix:
        # A range on the SKU's byte order, so that the key's index serves the search.
        query = query.where(s.sku.collate("C") >= sku_prefix, s.sku.collate("C") < sku_prefix + "\U0010ffff")
    if available_at_most is not None:
        query = query.where(s.on_hand - s.reserved <= available_at_most)
    return (await conn.execute(query.order_by(s.sku.collate("C")).limit(limit))).all()


async def ledger_page(
    conn: AsyncConnection, key: SkuKey, *, after_id: int | None, limit: int, order: Literal["asc", "desc"]
) -> Sequence[Row]:
    merchant_id, sku, location = key
    e = ledger_entries.c
    query = sa.select(ledger_entries).where(e.merchant_id == merchant_id, e.sku == sku, e.location == location)
    if after_id is not None:
        query = query.where(e.id > after_id if order == "asc" else e.id < after_id)
    return (await conn.execute(query.order_by(e.id if order == "asc" else e.id.desc()).limit(limit))).all()


async def list_oversells(
    conn: AsyncConnection,
    merchant_id: uuid.UUID,
    *,
    status: Literal["open", "resolved", "all"],
    sku: str | None,
    limit: int,
) -> Sequence[Row]:
    o = oversells.c
    query = sa.select(oversells).where(o.merchant_id == merchant_id)
    if status == "open":
        query = query.where(o.resolved_at.is_(None))
    elif status == "resolved":
        query = query.where(o.resolved_at.is_not(None))
    if sku is not None:
        query = query.where(o.sku == sku)
    return (await conn.execute(query.order_by(o.detected_at.desc()).limit(limit))).all()
