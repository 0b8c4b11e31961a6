"""Statements on bundles: definitions, what bundle lines reserved, component levels.

Lock protocol (adapters/ledger_store.py's, in two phases): a transaction locks the rows
it moves (components and plain SKUs) in lock order first, then the rows of the bundles
those rows are components of, in lock order, with a second `lock_stock`. A bundle's
rows are never locked in the first phase (nothing moves them directly), so two writers
never wait on each other in a cycle. `containing` runs after the first phase: a
definition committed by then is seen, and one being written waits for these locks
(service_layer/bundles.py defines a bundle under the locks of its components' rows).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from stocksync_common.raw_connection import Connection, column_arrays, unnest_sql

from stock_ledger.adapters.tables import bundle_components, order_line_components, stock_items

Definition = dict[str, int]
"""A bundle's components: component SKU -> units per bundle."""
BundleKey = tuple[uuid.UUID, str]
LineKey = tuple[uuid.UUID, uuid.UUID, str, str]


@dataclass(frozen=True)
class _MerchantSku:
    merchant_id: uuid.UUID
    sku: str


_PAIR = (("merchant_id", "uuid"), ("sku", "text"))

# Full definitions of the bundles among `skus` (as bundles) and of the bundles `skus` are
# components of.
DEFINITIONS_SQL = f"""
WITH wanted AS (SELECT DISTINCT * FROM {unnest_sql(_PAIR, 1, "w")}),
bundles AS (
    SELECT b.merchant_id, b.bundle_sku FROM {bundle_components.fullname} b
    JOIN wanted w ON b.merchant_id = w.merchant_id AND b.component_sku = w.sku
    UNION
    SELECT b.merchant_id, b.bundle_sku FROM {bundle_components.fullname} b
    JOIN wanted w ON b.merchant_id = w.merchant_id AND b.bundle_sku = w.sku
)
SELECT c.merchant_id, c.bundle_sku, c.component_sku, c.quantity
FROM {bundle_components.fullname} c
JOIN bundles USING (merchant_id, bundle_sku)
"""


async def definitions(conn: Connection, skus: Iterable[tuple[uuid.UUID, str]]) -> dict[BundleKey, Definition]:
    """The bundles among `skus` and the bundles containing any of them, with their components."""
    wanted = [_MerchantSku(*pair) for pair in dict.fromkeys(skus)]
    found: dict[BundleKey, Definition] = {}
    if not wanted:
        return found
    for row in await conn.fetch(DEFINITIONS_SQL, *column_arrays(wanted, ["merchant_id", "sku"])):
        found.setdefault((row["merchant_id"], row["bundle_sku"]), {})[row["component_sku"]] = row["quantity"]
    return found


_KEY = (("merchant_id", "uuid"), ("sku", "text"), ("location", "text"))


@dataclass(frozen=True)
class _Key:
    merchant_id: uuid.UUID
    sku: str
    location: str


LEVELS_SQL = f"""
SELECT s.merchant_id, s.sku, s.location, s.on_hand - s.reserved AS available
FROM {stock_items.fullname} s
JOIN {unnest_sql(_KEY, 1, "k")} ON s.merchant_id = k.merchant_id AND s.sku = k.sku AND s.location = k.location
"""


async def available_at(
    conn: Connection, keys: Iterable[tuple[uuid.UUID, str, str]]
) -> dict[tuple[uuid.UUID, str, str], int]:
    """The committed available of these rows (a missing row is absent: 0)."""
    wanted = [_Key(*key) for key in dict.fromkeys(keys)]
    if not wanted:
        return {}
    rows = await conn.fetch(LEVELS_SQL, *column_arrays(wanted, ["merchant_id", "sku", "location"]))
    return {(row["merchant_id"], row["sku"], row["location"]): int(row["available"]) for row in rows}


LOCATIONS_SQL = f"""
SELECT DISTINCT s.location FROM {stock_items.fullname} s
WHERE s.merchant_id = $1::uuid AND s.sku = ANY($2::text[])
"""


async def locations_of(conn: Connection, merchant_id: uuid.UUID, skus: Sequence[str]) -> list[str]:
    """Every location where one of `skus` has a stock row."""
    return sorted(row["location"] for row in await conn.fetch(LOCATIONS_SQL, merchant_id, list(skus)))


_LINE = (("merchant_id", "uuid"), ("connection_id", "uuid"), ("external_order_id", "text"), ("line_id", "text"))


@dataclass(frozen=True)
class _LineComponent:
    merchant_id: uuid.UUID
    connection_id: uuid.UUID
    external_order_id: str
    line_id: str
    component_sku: str
    quantity: int


SAVE_LINE_COMPONENTS_SQL = f"""
INSERT INTO {order_line_components.fullname}
    (merchant_id, connection_id, external_order_id, line_id, component_sku, quantity)
SELECT * FROM {unnest_sql((*_LINE, ("component_sku", "text"), ("quantity", "bigint")), 1, "v")}
ON CONFLICT DO NOTHING
"""


async def save_line_components(conn: Connection, lines: Mapping[LineKey, Definition]) -> None:
    rows = [
        _LineComponent(*key, component, quantity)
        for key, definition in lines.items()
        for component, quantity in definition.items()
    ]
    if rows:
        names = [n for n, _ in _LINE] + ["component_sku", "quantity"]
        await conn.execute(SAVE_LINE_COMPONENTS_SQL, *column_arrays(rows, names))


DELETE_SQL = f"""
DELETE FROM {bundle_components.fullname} WHERE merchant_id = $1::uuid AND bundle_sku = $2::text
"""
INSERT_SQL = f"""
INSERT INTO {bundle_components.fullname} (merchant_id, bundle_sku, component_sku, quantity)
SELECT $1::uuid, $2::text, c.sku, c.quantity FROM unnest($3::text[], $4::bigint[]) AS c(sku, quantity)
"""


async def replace_definition(conn: Connection, merchant_id: uuid.UUID, sku: str, definition: Definition) -> None:
    """Replace (or, with an empty definition, delete) a bundle's components. Two
    statements: in one, the insert would not see the delete's effect on the key."""
    await conn.execute(DELETE_SQL, merchant_id, sku)
    if definition:
        await conn.execute(INSERT_SQL, merchant_id, sku, list(definition), list(definition.values()))


LIST_SQL = f"""
SELECT bundle_sku, component_sku, quantity FROM {bundle_components.fullname}
WHERE merchant_id = $1::uuid AND bundle_sku COLLATE "C" > $2::text
    AND bundle_sku IN (
        SELECT bundle_sku FROM {bundle_components.fullname}
        WHERE merchant_id = $1::uuid AND bundle_sku COLLATE "C" > $2::text
        GROUP BY bundle_sku ORDER BY bundle_sku COLLATE "C" LIMIT $3
    )
ORDER BY bundle_sku COLLATE "C", component_sku COLLATE "C"
"""


async def list_definitions(
    conn: Connection, merchant_id: uuid.UUID, after: str, limit: int
) -> list[tuple[str, Definition]]:
    found: dict[str, Definition] = {}
    for row in await conn.fetch(LIST_SQL, merchant_id, after, limit):
        found.setdefault(row["bundle_sku"], {})[row["component_sku"]] = row["quantity"]
    return list(found.items())


COUNT_SQL = f"""
SELECT count(DISTINCT bundle_sku) FROM {bundle_components.fullname} WHERE merchant_id = $1::uuid
"""


async def count_bundles(conn: Connection, merchant_id: uuid.UUID) -> int:
    return int(await conn.fetchval(COUNT_SQL, merchant_id))
