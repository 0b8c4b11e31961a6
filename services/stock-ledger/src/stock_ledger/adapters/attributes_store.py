"""Every statement on product_attributes: catalogue attributes per SKU, versioned per SKU.

Lock order: after the stock rows (adapters/ledger_store.py), the SKUs' attribute rows
in `sku` order ("C" collation).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import orjson

from stocksync_common.raw_connection import Connection, column_arrays, unnest_sql

from stock_ledger.adapters.tables import product_attributes


@dataclass(frozen=True)
class ProductAttributes:
    sku: str
    brand: str | None
    category: str | None
    tags: list[str]
    attributes: dict[str, str]
    version: int


LOCK_SQL = f"""
SELECT sku, brand, category, tags, attributes::text AS attributes, version
FROM {product_attributes.fullname}
WHERE merchant_id = $1::uuid AND sku = ANY($2::text[])
ORDER BY sku COLLATE "C"
FOR UPDATE
"""


async def lock_attributes(
    conn: Connection, merchant_id: uuid.UUID, skus: Sequence[str]
) -> dict[str, ProductAttributes]:
    """Lock the SKUs' attribute rows (those that exist) and return them."""
    rows = await conn.fetch(LOCK_SQL, merchant_id, list(skus))
    return {
        row["sku"]: ProductAttributes(
            row["sku"],
            row["brand"],
            row["category"],
            list(row["tags"]),
            orjson.loads(row["attributes"]),
            row["version"],
        )
        for row in rows
    }


# Tags are a text[] per row, which an unnest of arrays cannot carry: they travel as JSON.
_SAVED = (
    ("sku", "text"),
    ("brand", "text"),
    ("category", "text"),
    ("tags", "text"),
    ("attributes", "text"),
    ("version", "bigint"),
)
SAVE_SQL = f"""
INSERT INTO {product_attributes.fullname} AS p
    (merchant_id, sku, brand, category, tags, attributes, version, updated_at)
SELECT $1::uuid, v.sku, v.brand, v.category,
       ARRAY(SELECT jsonb_array_elements_text(v.tags::jsonb)), v.attributes::jsonb, v.version, $8::timestamptz
FROM {unnest_sql(_SAVED, 2, "v")}
ON CONFLICT (merchant_id, sku) DO UPDATE SET
    brand = excluded.brand, category = excluded.category, tags = excluded.tags,
    attributes = excluded.attributes, version = excluded.version, updated_at = excluded.updated_at
"""


@dataclass(frozen=True)
class _SavedRow:
    sku: str
    brand: str | None
    category: str | None
    tags: str
    attributes: str
    version: int


async def save_attributes(
    conn: Connection, merchant_id: uuid.UUID, rows: Sequence[ProductAttributes], now: datetime
) -> None:
    """Upsert the rows; the caller holds their locks (`lock_attributes`)."""
    if not rows:
        return
    saved = [
        _SavedRow(
            r.sku, r.brand, r.category, orjson.dumps(r.tags).decode(), orjson.dumps(r.attributes).decode(), r.version
        )
        for r in rows
    ]
    await conn.execute(SAVE_SQL, merchant_id, *column_arrays(saved, [name for name, _ in _SAVED]), now)
