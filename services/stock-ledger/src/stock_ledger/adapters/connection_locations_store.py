"""Statements on `connection_locations`, and the order batch's pre-read (`read_routes`).

Read before the stock locks (adapters/ledger_store.py): a connection's list, a known
line's location and parts, and a bundle's definition only choose which rows an order
batch locks; what the rows hold is read after the locks. A line is recorded once and
never moves, so what the pre-read says of it stays true (order_lines.py checks it again
under the locks).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from stocksync_common.contracts import DEFAULT_LOCATION
from stocksync_common.raw_connection import Connection, column_arrays, unnest_sql

from stock_ledger.adapters.tables import (
    bundle_components,
    connection_locations,
    order_line_components,
    order_lines,
    stock_items,
)


@dataclass(frozen=True)
class ConnectionLocations:
    connection_id: uuid.UUID
    merchant_id: uuid.UUID
    locations: str  # PostgreSQL's array text: one array per row travels as text in an unnest
    updated_at: datetime


_COLUMNS = (("connection_id", "uuid"), ("merchant_id", "uuid"), ("locations", "text"), ("updated_at", "timestamptz"))

# A newer announcement wins; an older one redelivered late changes nothing.
UPSERT_SQL = f"""
INSERT INTO {connection_locations.fullname} AS c (connection_id, merchant_id, locations, updated_at)
SELECT v.connection_id, v.merchant_id, v.locations::text[], v.updated_at FROM {unnest_sql(_COLUMNS, 1, "v")}
ON CONFLICT (connection_id) DO UPDATE
SET locations = excluded.locations, updated_at = excluded.updated_at
WHERE c.updated_at <= excluded.updated_at
"""


def _array_text(values: Sequence[str]) -> str:
    escaped = ('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values)
    return "{" + ",".join(escaped) + "}"


async def save_connection_locations(
    conn: Connection, rows: Iterable[tuple[uuid.UUID, uuid.UUID, Sequence[str], datetime]]
) -> None:
    """Upsert (connection_id, merchant_id, locations, updated_at) rows."""
    values = [ConnectionLocations(c, m, _array_text(locs), at) for c, m, locs, at in rows]
    if values:
        await conn.execute(UPSERT_SQL, *column_arrays(values, [name for name, _ in _COLUMNS]))


_LINE = (("merchant_id", "uuid"), ("connection_id", "uuid"), ("external_order_id", "text"), ("line_id", "text"))
_SKU = (("merchant_id", "uuid"), ("sku", "text"))

# One statement before the locks: the connections' locations ('c'), where known lines
# reserved ('l') and what known bundle lines reserve per bundle ('p'), and the bundles
# among the batch's SKUs ('b').
ROUTES_SQL = f"""
WITH lines AS (SELECT * FROM {unnest_sql(_LINE, 2, "w")}),
skus AS (SELECT DISTINCT * FROM {unnest_sql(_SKU, 6, "s")})
SELECT 'c' AS kind, c.merchant_id, c.connection_id, c.locations, NULL::text AS external_order_id,
    NULL::text AS line_id, NULL::text AS location, NULL::text AS sku, NULL::text AS component, NULL::bigint AS quantity
FROM {connection_locations.fullname} c WHERE c.connection_id = ANY($1::uuid[])
UNION ALL
SELECT 'l', l.merchant_id, l.connection_id, NULL, l.external_order_id, l.line_id, l.location, NULL, NULL, NULL
FROM {order_lines.fullname} l
JOIN lines w ON l.merchant_id = w.merchant_id AND l.connection_id = w.connection_id
    AND l.external_order_id = w.external_order_id AND l.line_id = w.line_id
UNION ALL
SELECT 'p', p.merchant_id, p.connection_id, NULL, p.external_order_id, p.line_id, NULL, NULL, p.component_sku,
    p.quantity
FROM {order_line_components.fullname} p
JOIN lines w ON p.merchant_id = w.merchant_id AND p.connection_id = w.connection_id
    AND p.external_order_id = w.external_order_id AND p.line_id = w.line_id
UNION ALL
SELECT 'b', b.merchant_id, NULL, NULL, NULL, NULL, NULL, b.bundle_sku, b.component_sku, b.quantity
FROM {bundle_components.fullname} b JOIN skus s ON b.merchant_id = s.merchant_id AND b.bundle_sku = s.sku
"""


@dataclass(frozen=True)
class _LineRef:
    merchant_id: uuid.UUID
    connection_id: uuid.UUID
    external_order_id: str
    line_id: str


@dataclass(frozen=True)
class _SkuRef:
    merchant_id: uuid.UUID
    sku: str


LineKey = tuple[uuid.UUID, uuid.UUID, str, str]


@dataclass(frozen=True)
class Routes:
    """What an order batch needs before it locks: each connection's locations (first
    choice first), where known lines reserved and what known bundle lines reserve per
    bundle, and the definitions of the bundles among the batch's SKUs."""

    priorities: dict[tuple[uuid.UUID, uuid.UUID], tuple[str, ...]]  # by (merchant_id, connection_id)
    line_locations: dict[LineKey, str]
    line_parts: dict[LineKey, dict[str, int]]
    bundles: dict[tuple[uuid.UUID, str], dict[str, int]]  # by (merchant_id, bundle sku)

    def priority(self, merchant_id: uuid.UUID, connection_id: uuid.UUID) -> tuple[str, ...]:
        """A connection the ledger has not heard of yet sells from the default location."""
        return self.priorities.get((merchant_id, connection_id), (DEFAULT_LOCATION,))


async def read_routes(
    conn: Connection,
    connection_ids: Iterable[uuid.UUID],
    line_keys: Iterable[LineKey],
    skus: Iterable[tuple[uuid.UUID, str]] = (),
) -> Routes:
    lines = [_LineRef(*key) for key in dict.fromkeys(line_keys)]
    wanted = [_SkuRef(*pair) for pair in dict.fromkeys(skus)]
    routes = Routes({}, {}, {}, {})
    rows = await conn.fetch(
        ROUTES_SQL,
        list(dict.fromkeys(connection_ids)),
        *column_arrays(lines, [name for name, _ in _LINE]),
        *column_arrays(wanted, [name for name, _ in _SKU]),
    )
    for row in rows:
        kind = row["kind"]
        if kind == "c":
            routes.priorities[(row["merchant_id"], row["connection_id"])] = tuple(row["locations"])
        elif kind == "b":
            routes.bundles.setdefault((row["merchant_id"], row["sku"]), {})[row["component"]] = row["quantity"]
        else:
            key = (row["merchant_id"], row["connection_id"], row["external_order_id"], row["line_id"])
            if kind == "l":
                routes.line_locations[key] = row["location"]
            else:
                routes.line_parts.setdefault(key, {})[row["component"]] = row["quantity"]
    return routes


MERCHANT_LOCATIONS_SQL = f"""
WITH listed AS (
    SELECT l.location, c.connection_id, l.priority
    FROM {connection_locations.fullname} c, unnest(c.locations) WITH ORDINALITY AS l(location, priority)
    WHERE c.merchant_id = $1::uuid
), stocked AS (
    SELECT DISTINCT s.location FROM {stock_items.fullname} s WHERE s.merchant_id = $1::uuid
)
SELECT location, NULL::uuid AS connection_id, NULL::bigint AS priority FROM stocked
UNION ALL
SELECT location, connection_id, priority FROM listed
ORDER BY location, connection_id
"""


@dataclass(frozen=True)
class LocationUse:
    """A location the merchant has stock at or sells from, and the connections selling from it."""

    location: str
    connections: dict[uuid.UUID, int]  # connection id -> its rank in that connection's list (1: first choice)


async def merchant_locations(conn: Connection, merchant_id: uuid.UUID) -> list[LocationUse]:
    found: dict[str, LocationUse] = {}
    for row in await conn.fetch(MERCHANT_LOCATIONS_SQL, merchant_id):
        use = found.setdefault(row["location"], LocationUse(row["location"], {}))
        if row["connection_id"] is not None:
            use.connections[row["connection_id"]] = int(row["priority"])
    return list(found.values())
