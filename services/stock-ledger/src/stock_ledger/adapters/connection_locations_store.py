"""Statements on `connection_locations`: the locations each connection sells from, and
which of them a merchant uses.

An order batch reads the lists as part of its read before the stock locks
(`ledger_store.read_routes`, which chooses the rows the batch locks).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from stocksync_common.raw_connection import Connection, column_arrays, unnest_sql

from stock_ledger.adapters.tables import connection_locations, stock_items


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
