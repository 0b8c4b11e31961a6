"""Read models for the API: current stock, ledger history, oversells. Keyset-paged."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from stock_ledger.adapters.tables import ledger_entries, oversells, stock_items
from stock_ledger.domain.stock import SkuKey

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


StockSort = Literal["sku", "available", "on_hand", "reserved", "updated_at"]


def stock_sort_key(sort: StockSort) -> sa.ColumnElement[Any]:
    """The value a stock page is ordered by; the SKU (in byte order) breaks ties."""
    s = stock_items.c
    keys: dict[str, sa.ColumnElement[Any]] = {
        "sku": s.sku.collate("C"),
        "available": s.on_hand - s.reserved,
        "on_hand": s.on_hand,
        "reserved": s.reserved,
        "updated_at": s.updated_at,
    }
    return keys[sort]


async def list_stock(
    conn: AsyncConnection,
    merchant_id: uuid.UUID,
    *,
    location: str,
    after_sku: str | None,
    limit: int,
    available_at_most: int | None,
    sku_prefix: str | None = None,
    sort: StockSort = "sku",
    descending: bool = False,
    after_value: Any = None,
) -> Sequence[Row]:
    """One page of stock in `sort` order, keyset-paged after (`after_value`, `after_sku`).

    Sorted by SKU, available or updated_at, an index walks the page (ix_stock_items_sku,
    _available and _updated, each with the SKU in byte order); by on_hand or reserved
    PostgreSQL keeps the top page of the merchant's rows (a bounded top-N sort: each
    index on a column an order changes is one more write on the ledger's hot path).
    """
    s = stock_items.c
    sku = s.sku.collate("C")
    key = stock_sort_key(sort)
    query = sa.select(stock_items).where(s.merchant_id == merchant_id, s.location == location)
    if after_sku is not None:
        if sort == "sku":
            query = query.where(sku < after_sku if descending else sku > after_sku)
        else:
            position = sa.tuple_(key, sku)
            bound = sa.tuple_(sa.literal(after_value, key.type), sa.literal(after_sku).collate("C"))
            query = query.where(position < bound if descending else position > bound)
    if sku_prefix:
        # A range on the SKU's byte order, so that the key's index serves the search.
        query = query.where(sku >= sku_prefix, sku < sku_prefix + "\U0010ffff")
    if available_at_most is not None:
        query = query.where(s.on_hand - s.reserved <= available_at_most)
    order = [key, sku] if sort != "sku" else [sku]
    query = query.order_by(*(o.desc() if descending else o for o in order))
    return (await conn.execute(query.limit(limit))).all()


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
