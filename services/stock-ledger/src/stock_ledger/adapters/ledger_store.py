"""Every statement on the ledger's stock tables: stock_items, order_lines, ledger_entries, oversells.

Locking protocol, the one lock order: a transaction that changes stock first locks
every stock row it will touch, in one statement, in the order of `lock_order`
((merchant_id, sku, location) in the "C" collation, the order Python sorts strings in),
inserting the missing rows as it goes. Only then does it read or write order lines,
ledger entries, oversells and the outbox. Two writers therefore never wait on each
other in a cycle, whatever SKUs they share.

Holding the row locks until commit is what makes versions strictly increase per SKU,
and what makes outbox ids follow commit order per key: a second writer of a SKU cannot
insert its outbox row before the first has committed.

Every use case (order lines, snapshots, adjustments) goes through the same three
statements whatever its size: `lock_stock` (with the inbox claim when the input is an
event), `read_recorded` (after the locks, so it reads what the previous holders
committed), `save_stock_changes` (all writes and the outbox in one statement, `save`).
An order batch reads one statement before them, `read_routes`: which rows it locks
depends on where its lines can reserve. Statements are hand-written SQL on asyncpg
(docs/decisions/0001-raw-asyncpg-on-hot-paths.md); rows travel as one array per named
column (`column_arrays`, `unnest_sql`), so a statement is the same text, prepared once,
for any number of rows.

Bundles, the second lock phase (adapters/bundle_store.py, domain/bundles.py): saving
first recomputes every bundle containing a SKU whose levels changed, at the locations
where it changed. It reads those bundles' definitions after the first phase's locks,
then locks the bundles' rows (`derive_bundles`, a second `lock_stock`, in lock order)
and reads their components' committed available: two more statements, only when a
moved SKU is the component of a bundle (one, the definitions, whenever a level moved).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import Counter

from stocksync_common.contracts import DEFAULT_LOCATION, Event, OversellDetected, StockChanged
from stocksync_common.outbox import outbox_arrays, outbox_insert_sql
from stocksync_common.raw_connection import Connection, column_arrays, unnest_sql
from stocksync_common.uow import UnitOfWork, inbox_claim_sql

from stock_ledger.adapters import bundle_store
from stock_ledger.adapters.tables import (
    bundle_components,
    connection_locations,
    inbox,
    ledger_entries,
    order_line_components,
    order_lines,
    outbox,
    oversells,
    stock_items,
)
from stock_ledger.domain.bundles import BundleTarget, bundle_targets, derived_changes, moved_levels
from stock_ledger.domain.stock import (
    LineTotals,
    SkuChange,
    SkuKey,
    StockLevel,
    StockWrites,
    plan_stock_changes,
)

OVERSELLS = Counter("stocksync_oversells_total", "Stock changes that took available below zero")
OVERSOLD_UNITS = Counter("stocksync_oversold_units_total", "Units sold beyond what was available")
MOVEMENTS = Counter("stocksync_ledger_movements_total", "Ledger entries appended", ["kind"])

LineKey = tuple[uuid.UUID, uuid.UUID, str, str]
"""(merchant_id, connection_id, external_order_id, line_id): one order line."""


def lock_order(key: SkuKey) -> tuple[str, str, str]:
    # str(uuid) sorts like PostgreSQL's uuid, and Python compares str by code point,
    # which is the "C" collation of UTF-8 text.
    return (str(key[0]), key[1], key[2])


@dataclass(frozen=True)
class LedgerEntry:
    """One appended ledger row."""

    merchant_id: uuid.UUID
    sku: str
    location: str
    causation_id: str
    kind: str
    quantity: int
    delta_on_hand: int
    delta_reserved: int
    version: int
    occurred_at: datetime
    event_id: uuid.UUID | None = None
    reason: str | None = None
    actor: str | None = None


@dataclass(frozen=True)
class OrderLineRow:
    """An order line's totals after a batch."""

    merchant_id: uuid.UUID
    connection_id: uuid.UUID
    external_order_id: str
    line_id: str
    sku: str
    location: str
    placed: int
    reserved: int
    shipped: int
    cancelled: int
    returned: int
    restocked: int


@dataclass(frozen=True)
class StockRow:
    """A stock row's levels after a batch."""

    merchant_id: uuid.UUID
    sku: str
    location: str
    on_hand: int
    reserved: int
    version: int
    snapshot_as_of: datetime | None


@dataclass(frozen=True)
class SkuRef:
    merchant_id: uuid.UUID
    sku: str
    location: str


@dataclass(frozen=True)
class Causation:
    merchant_id: uuid.UUID
    causation_id: str


@dataclass(frozen=True)
class LineRef:
    merchant_id: uuid.UUID
    connection_id: uuid.UUID
    external_order_id: str
    line_id: str


@dataclass(frozen=True)
class SnapshotAsOf:
    sku: str
    location: str
    as_of: datetime


_KEY = (("merchant_id", "uuid"), ("sku", "text"), ("location", "text"))
_CAUSATION = (("merchant_id", "uuid"), ("causation_id", "text"))
_LINE_REF = (("merchant_id", "uuid"), ("connection_id", "uuid"), ("external_order_id", "text"), ("line_id", "text"))
_AS_OF = (("sku", "text"), ("location", "text"), ("as_of", "timestamptz"))
_ENTRY = (
    ("merchant_id", "uuid"),
    ("sku", "text"),
    ("location", "text"),
    ("causation_id", "text"),
    ("kind", "text"),
    ("quantity", "bigint"),
    ("delta_on_hand", "bigint"),
    ("delta_reserved", "bigint"),
    ("version", "bigint"),
    ("occurred_at", "timestamptz"),
    ("event_id", "uuid"),
    ("reason", "text"),
    ("actor", "text"),
)
_LINE = (
    *_LINE_REF,
    ("sku", "text"),
    ("location", "text"),
    ("placed", "bigint"),
    ("reserved", "bigint"),
    ("shipped", "bigint"),
    ("cancelled", "bigint"),
    ("returned", "bigint"),
    ("restocked", "bigint"),
)
_STOCK = (
    *_KEY,
    ("on_hand", "bigint"),
    ("reserved", "bigint"),
    ("version", "bigint"),
    ("snapshot_as_of", "timestamptz"),
)
# An oversell opened: an OversellDetected's fields; its event id is the oversell's id.
_OPENED = (
    ("event_id", "uuid"),
    *_KEY,
    ("version", "bigint"),
    ("available", "bigint"),
    ("oversold", "bigint"),
    ("causation_id", "text"),
)


def _names(columns: Sequence[tuple[str, str]]) -> list[str]:
    return [name for name, _ in columns]


_MERCHANT_SKU = (("merchant_id", "uuid"), ("sku", "text"))


@dataclass(frozen=True)
class MerchantSku:
    merchant_id: uuid.UUID
    sku: str


# Before the locks, an order batch's one read: the connections' locations ('c'), where
# known lines reserved ('l') and what known bundle lines reserve per bundle ('p'), and
# the bundles among the batch's SKUs ('b'). Its answer only chooses which rows the batch
# locks (a list, a line's location and parts, a definition); what the rows hold is read
# after the locks. A line is recorded once and never moves, so what this read says of it
# stays true (the use case checks it again under the locks).
ROUTES_SQL = f"""
WITH lines AS (SELECT * FROM {unnest_sql(_LINE_REF, 2, "w")}),
skus AS (SELECT DISTINCT * FROM {unnest_sql(_MERCHANT_SKU, 6, "s")})
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
    lines = [LineRef(*key) for key in dict.fromkeys(line_keys)]
    wanted = [MerchantSku(*pair) for pair in dict.fromkeys(skus)]
    routes = Routes({}, {}, {}, {})
    rows = await conn.fetch(
        ROUTES_SQL,
        list(dict.fromkeys(connection_ids)),
        *column_arrays(lines, _names(_LINE_REF)),
        *column_arrays(wanted, _names(_MERCHANT_SKU)),
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


# Inserts the missing stock rows and locks every row, in the order of the arrays (sorted
# in lock order by `lock_stock`): `ON CONFLICT DO UPDATE` with a no-op update takes the
# lock of an existing row and returns its latest committed levels. Claims the event ids
# in the inbox in the same statement.
LOCK_SQL = f"""
WITH locked AS (
    INSERT INTO {stock_items.fullname} AS s (merchant_id, sku, location, on_hand, reserved, version, updated_at)
    SELECT k.merchant_id, k.sku, k.location, 0, 0, 0, now()
    FROM {unnest_sql(_KEY, 1, "k", ordinality=True)}
    ORDER BY k.n
    ON CONFLICT (merchant_id, sku, location) DO UPDATE SET updated_at = s.updated_at
    RETURNING s.merchant_id, s.sku, s.location, s.on_hand, s.reserved, s.version, s.snapshot_as_of
), claimed AS (
    {inbox_claim_sql(inbox, 4, 5)}
)
SELECT merchant_id, sku, location, on_hand, reserved, version, snapshot_as_of, NULL::uuid AS event_id FROM locked
UNION ALL
SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, event_id FROM claimed
"""


@dataclass(frozen=True)
class LockedStock:
    levels: dict[SkuKey, StockLevel]
    claimed: set[uuid.UUID]  # the event ids that were new to the inbox


async def lock_stock(
    conn: Connection, keys: Iterable[SkuKey], *, claim: Sequence[uuid.UUID] = (), topic: str = ""
) -> LockedStock:
    """Insert the missing stock rows and lock every row in lock order; claim `claim`'s
    event ids for `topic` in the inbox in the same statement."""
    ordered = [SkuRef(*key) for key in sorted(set(keys), key=lock_order)]
    levels: dict[SkuKey, StockLevel] = {}
    claimed: set[uuid.UUID] = set()
    if not ordered and not claim:
        return LockedStock(levels, claimed)
    for row in await conn.fetch(LOCK_SQL, *column_arrays(ordered, _names(_KEY)), list(claim), topic):
        if row["event_id"] is not None:
            claimed.add(row["event_id"])
        else:
            levels[(row["merchant_id"], row["sku"], row["location"])] = StockLevel(
                row["on_hand"], row["reserved"], row["version"], row["snapshot_as_of"]
            )
    return LockedStock(levels, claimed)


# After the locks (a later statement, so that it reads what the previous holders of the
# locks committed): the causations already in the ledger, and the lines' totals.
READ_SQL = f"""
SELECT e.merchant_id, e.causation_id, NULL::uuid AS connection_id, NULL::text AS external_order_id,
       NULL::text AS line_id, NULL::bigint AS placed, NULL::bigint AS cancelled, NULL::bigint AS shipped,
       NULL::bigint AS returned, NULL::bigint AS restocked, NULL::text AS location
FROM {ledger_entries.fullname} e
JOIN {unnest_sql(_CAUSATION, 1, "c")} ON e.merchant_id = c.merchant_id AND e.causation_id = c.causation_id
UNION ALL
SELECT l.merchant_id, NULL, l.connection_id, l.external_order_id, l.line_id, l.placed, l.cancelled, l.shipped,
       l.returned, l.restocked, l.location
FROM {order_lines.fullname} l
JOIN {unnest_sql(_LINE_REF, 3, "w")}
    ON l.merchant_id = w.merchant_id AND l.connection_id = w.connection_id
    AND l.external_order_id = w.external_order_id AND l.line_id = w.line_id
"""


@dataclass(frozen=True)
class Recorded:
    causations: set[tuple[uuid.UUID, str]]  # (merchant_id, causation_id) already in the ledger
    lines: dict[LineKey, LineTotals]
    line_locations: dict[LineKey, str]  # where each known line reserved


async def read_recorded(
    conn: Connection, causations: Iterable[tuple[uuid.UUID, str]], line_keys: Iterable[LineKey] = ()
) -> Recorded:
    """Under the stock locks: which causations the ledger has, and the lines' totals."""
    wanted = [Causation(*c) for c in dict.fromkeys(causations)]
    lines_wanted = [LineRef(*k) for k in dict.fromkeys(line_keys)]
    recorded = Recorded(set(), {}, {})
    if not wanted and not lines_wanted:
        return recorded
    for row in await conn.fetch(
        READ_SQL, *column_arrays(wanted, _names(_CAUSATION)), *column_arrays(lines_wanted, _names(_LINE_REF))
    ):
        if row["causation_id"] is not None:
            recorded.causations.add((row["merchant_id"], row["causation_id"]))
        else:
            line_key = (row["merchant_id"], row["connection_id"], row["external_order_id"], row["line_id"])
            recorded.line_locations[line_key] = row["location"]
            recorded.lines[line_key] = LineTotals(
                placed=row["placed"],
                cancelled=row["cancelled"],
                shipped=row["shipped"],
                returned=row["returned"],
                restocked=row["restocked"],
            )
    return recorded


def _statement_parameters() -> dict[str, int]:
    """Where each group of SAVE_SQL's parameters starts."""
    starts, n = {}, 1
    for group, columns in (
        ("entries", _ENTRY),
        ("lines", _LINE),
        ("stock", _STOCK),
        ("now", (("now", "timestamptz"),)),
        ("resolved", _KEY),
        ("opened", _OPENED),
        ("outbox", (("topic", ""), ("key", ""), ("payload", ""), ("event_type", ""), ("causation_id", ""))),
    ):
        starts[group], n = n, n + len(columns)
    return starts


_AT = _statement_parameters()

# Every write of a batch: ledger entries (in order), lines, stock rows, oversells closed
# and opened (which ones, `domain.stock.plan_stock_changes` decides), and the outbox.
SAVE_SQL = f"""
WITH entries AS (
    INSERT INTO {ledger_entries.fullname} ({", ".join(_names(_ENTRY))})
    SELECT {", ".join(f"e.{name}" for name in _names(_ENTRY))}
    FROM {unnest_sql(_ENTRY, _AT["entries"], "e", ordinality=True)}
    ORDER BY e.n
), lines AS (
    INSERT INTO {order_lines.fullname} AS l ({", ".join(_names(_LINE))})
    SELECT * FROM {unnest_sql(_LINE, _AT["lines"], "v")}
    ON CONFLICT (merchant_id, connection_id, external_order_id, line_id) DO UPDATE SET
        placed = excluded.placed, reserved = excluded.reserved, shipped = excluded.shipped,
        cancelled = excluded.cancelled, returned = excluded.returned, restocked = excluded.restocked
), stock AS (
    UPDATE {stock_items.fullname} AS s
    SET on_hand = v.on_hand, reserved = v.reserved, version = v.version, snapshot_as_of = v.snapshot_as_of,
        updated_at = ${_AT["now"]}::timestamptz
    FROM {unnest_sql(_STOCK, _AT["stock"], "v")}
    WHERE s.merchant_id = v.merchant_id AND s.sku = v.sku AND s.location = v.location
), resolved AS (
    UPDATE {oversells.fullname} AS o SET resolved_at = ${_AT["now"]}::timestamptz
    FROM {unnest_sql(_KEY, _AT["resolved"], "r")}
    WHERE o.resolved_at IS NULL AND o.merchant_id = r.merchant_id AND o.sku = r.sku AND o.location = r.location
), opened AS (
    INSERT INTO {oversells.fullname} (oversell_id, {", ".join(_names(_OPENED)[1:])}, detected_at)
    SELECT *, ${_AT["now"]}::timestamptz FROM {unnest_sql(_OPENED, _AT["opened"], "v")}
), events AS (
    {outbox_insert_sql(outbox, _AT["outbox"])}
)
SELECT count(*) FROM events
"""


async def save(
    conn: Connection,
    *,
    now: datetime,
    entries: Sequence[LedgerEntry],
    lines: Sequence[OrderLineRow] = (),
    stock: Sequence[StockRow] = (),
    resolved: Sequence[SkuKey] = (),
    opened: Sequence[OversellDetected] = (),
    events: Sequence[Event] = (),
) -> None:
    """Write a batch in one statement. The caller holds the stock rows' locks
    (`lock_stock`) and has given a new version to every change of on_hand or reserved."""
    if not (entries or lines or stock or resolved or opened or events):
        return
    await conn.fetchval(
        SAVE_SQL,
        *column_arrays(entries, _names(_ENTRY)),
        *column_arrays(lines, _names(_LINE)),
        *column_arrays(stock, _names(_STOCK)),
        now,
        *column_arrays([SkuRef(*key) for key in resolved], _names(_KEY)),
        *column_arrays(opened, _names(_OPENED)),
        *outbox_arrays(events),
    )


async def derive_bundles(
    conn: Connection,
    targets: Mapping[SkuKey, BundleTarget],
    now: datetime,
    moved: Mapping[SkuKey, StockLevel] | None = None,
) -> tuple[list[SkuChange], list[LedgerEntry]]:
    """Lock the bundle rows `targets` (the second lock phase) and recompute them from
    their components' available: `moved` (this transaction's levels, not written yet)
    over what is committed. One ledger entry and one new version per row that changes."""
    if not targets:
        return [], []
    ordered = {key: targets[key] for key in sorted(targets, key=lock_order)}
    levels = (await lock_stock(conn, ordered)).levels
    available = await bundle_store.available_at(
        conn, ((m, component, location) for (m, _, location), t in ordered.items() for component in t.definition)
    )
    available.update((key, level.available) for key, level in (moved or {}).items())
    changes = derived_changes(ordered, levels, available)
    entries = [
        LedgerEntry(
            merchant_id=c.key[0],
            sku=c.key[1],
            location=c.key[2],
            # Unique per row and version: a bundle row moves once per transaction.
            causation_id=f"bundle:{c.key[1]}:{c.key[2]}:{c.after.version}",
            kind="bundle",
            quantity=c.after.on_hand,
            delta_on_hand=c.after.on_hand - c.before.on_hand,
            delta_reserved=-c.before.reserved,
            version=c.after.version,
            occurred_at=now,
            reason=c.causation_id[:500],
        )
        for c in changes
    ]
    MOVEMENTS.labels("bundle").inc(len(entries))
    return changes, entries


async def save_stock_changes(
    uow: UnitOfWork,
    writes: StockWrites,
    entries: Sequence[LedgerEntry],
    lines: Sequence[OrderLineRow] = (),
) -> list[StockChanged]:
    """Write ledger entries, lines, the changed stock rows, the oversells and the events
    (with any the unit of work holds) in one statement; return the StockChanged written.

    The caller holds the rows' locks (the first phase) and has given a new version to
    every change of on_hand or reserved. Bundles containing a moved SKU move with it:
    their rows are locked and recomputed first (the second phase, `derive_bundles`).
    """
    conn = uow.connection
    moved = moved_levels(writes.changes)
    if moved:
        definitions = await bundle_store.definitions(conn, {(m, sku) for m, sku, _ in moved})
        derived, derived_entries = await derive_bundles(
            conn, bundle_targets(definitions, writes.changes), writes.now, moved
        )
        if derived:
            writes = writes.merged(plan_stock_changes(derived, writes.now))
            entries = [*entries, *derived_entries]
    for oversell in writes.opened:
        OVERSELLS.inc()
        OVERSOLD_UNITS.inc(oversell.oversold)
    uow.add(writes.events)
    await save(
        conn,
        now=writes.now,
        entries=entries,
        lines=lines,
        stock=[
            StockRow(
                *c.key,
                on_hand=c.after.on_hand,
                reserved=c.after.reserved,
                version=c.after.version,
                snapshot_as_of=c.after.watermark,
            )
            for c in writes.changes
        ],
        resolved=writes.recovered,
        opened=writes.opened,
        events=uow.take_events(),
    )
    return writes.stock_events


ON_HAND_MOVED_SQL = f"""
SELECT w.sku, w.location, sum(e.delta_on_hand) AS moved
FROM {unnest_sql(_AS_OF, 2, "w")}
JOIN {ledger_entries.fullname} e
    ON e.merchant_id = $1::uuid AND e.sku = w.sku AND e.location = w.location AND e.occurred_at > w.as_of
    AND e.kind NOT IN ('snapshot', 'snapshot_stale')
GROUP BY w.sku, w.location
"""


async def on_hand_moved_since(
    conn: Connection, merchant_id: uuid.UUID, rows: Sequence[SnapshotAsOf]
) -> dict[tuple[str, str], int]:
    """Per (sku, location), the on_hand the ledger moved after `as_of`, snapshots aside."""
    if not rows:
        return {}
    result = await conn.fetch(ON_HAND_MOVED_SQL, merchant_id, *column_arrays(rows, _names(_AS_OF)))
    return {(row["sku"], row["location"]): int(row["moved"]) for row in result}
