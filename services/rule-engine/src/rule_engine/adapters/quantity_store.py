"""Every write on the rule engine's projections and published quantities, and every lock on them.

Tables: the projections of what the engine consumes (stock, products, connections,
connection_delays, sales_rates) and what it last published per connection, SKU and
location (channel_quantities), with the outbox rows announcing it. Statements are
hand-written SQL on asyncpg (docs/decisions/0001-raw-asyncpg-on-hot-paths.md); rows
travel as one array per named column (`column_arrays`, `unnest_sql`), so a statement is
the same text, prepared once, for any number of rows. A use case whose reads are
SQLAlchemy's (`reevaluate`) runs these on the asyncpg connection of its unit of work
(`uow.connection` of `UnitOfWorkFactory.begin`).

Lock order, the one for the whole service:

1. rule rows, in rule id order (a rule change, the scheduler: service_layer/rule_changes.py,
   service_layer/schedule.py); a stock batch takes none, it reads the rules' fingerprint
   after its stock locks (`LOCK_AND_READ_SQL`);
2. the merchant's evaluation lock (`lock_evaluation`, a transaction-scoped advisory lock):
   exclusive for a re-evaluation, shared for a stock batch, taken by the batch's first
   statement for each of its merchants in uuid order. A re-evaluation locks only the
   stock rows that exist: without this lock, a stock batch creating a SKU's first row
   while a rule or a connection is being added could read the rules and connections
   before that change commits while the re-evaluation cannot see the new row, and the
   SKU would be published without the change. With it, whichever comes second sees
   what the first committed: a re-evaluation reads after the batches before it have
   committed, and a batch's second statement (a new snapshot) after the re-evaluation;
3. stock rows, in (merchant_id, sku, location) order (`lock_order`: the "C" collation,
   the order Python sorts strings in), all of a use case's in one statement:
   `claim_and_project_stock` then `lock_and_read` (a stock batch), `lock_stock` (a
   re-evaluation);
4. then, only for SKUs whose stock rows it holds: sales_rates, channel_quantities (a
   per-location channel's dropped locations in (sku, location) order,
   `lock_dropped_locations`) and the outbox.

Products, connections and delays are upserted (newest version wins) before the
re-evaluation that reads them, which then locks as above; no statement locks them after
a stock row, so no two use cases wait on each other in a cycle. Holding the stock rows
until commit is what makes the published versions of a (connection, sku, location)
grow by one per event, whichever path emits it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from stocksync_common.contracts import (
    ChannelQuantityChanged,
    ConnectionChanged,
    ConnectionDelayMeasured,
    ProductAttributesChanged,
    StockChanged,
)
from stocksync_common.outbox import outbox_arrays, outbox_insert_sql
from stocksync_common.raw_connection import Connection, column_arrays, unnest_sql, uuid_array_literal
from stocksync_common.uow import UnitOfWork, inbox_claim_sql

from rule_engine.adapters.tables import (
    channel_quantities,
    connection_delays,
    connections,
    inbox,
    outbox,
    products,
    rules,
    sales_rates,
    stock,
)
from rule_engine.domain.adaptive import NEGLIGIBLE_PER_HOUR, DecayedRate

SkuKey = tuple[uuid.UUID, str, str]
"""(merchant_id, sku, location): the key of one stock row."""

RateKey = tuple[uuid.UUID, str, str]
"""(merchant_id, sku, channel): one SKU's sales rate on one channel type."""


def lock_order(key: SkuKey) -> tuple[str, str, str]:
    # str(uuid) sorts like PostgreSQL's uuid; Python compares str by code point, the "C" collation.
    return (str(key[0]), key[1], key[2])


def _names(columns: Sequence[tuple[str, str]]) -> list[str]:
    return [name for name, _ in columns]


@dataclass(frozen=True)
class _Sku:
    merchant_id: uuid.UUID
    sku: str


@dataclass(frozen=True)
class _Fingerprint:
    merchant_id: uuid.UUID
    fingerprint: str


@dataclass(frozen=True)
class _Rate:
    merchant_id: uuid.UUID
    sku: str
    channel: str
    rate: float
    at: datetime


_STOCK_CHANGE = (
    ("event_id", "uuid"),
    ("merchant_id", "uuid"),
    ("sku", "text"),
    ("location", "text"),
    ("available", "bigint"),
    ("version", "bigint"),
    ("causation_id", "text"),
    ("origin_received_at", "timestamptz"),
)
_SKU = (("merchant_id", "uuid"), ("sku", "text"))
_FINGERPRINT = (("merchant_id", "uuid"), ("fingerprint", "text"))
_RATE = (("merchant_id", "uuid"), ("sku", "text"), ("channel", "text"), ("rate", "float8"), ("at", "timestamptz"))
_PRODUCT = (
    ("merchant_id", "uuid"),
    ("sku", "text"),
    ("brand", "text"),
    ("category", "text"),
    ("tags", "text"),  # each row's array as PostgreSQL's array text, cast back below
    ("version", "bigint"),
)
_CONNECTION = (
    ("event_id", "uuid"),
    ("connection_id", "uuid"),
    ("merchant_id", "uuid"),
    ("channel_type", "text"),
    ("name", "text"),
    ("active", "boolean"),
    ("locations", "text"),  # array text, as above
    ("per_location", "boolean"),
    ("occurred_at", "timestamptz"),
)
_DELAY = (
    ("event_id", "uuid"),
    ("connection_id", "uuid"),
    ("merchant_id", "uuid"),
    ("p50_s", "float8"),
    ("p95_s", "float8"),
    ("samples", "bigint"),
    ("occurred_at", "timestamptz"),
)
_PUBLISHED = (
    ("connection_id", "uuid"),
    ("sku", "text"),
    ("location", "text"),
    ("merchant_id", "uuid"),
    ("quantity", "bigint"),
    ("version", "bigint"),
    ("stock_version", "bigint"),
    ("rule_ids", "text"),  # each row's uuid[] as PostgreSQL's array text, cast back below
)


def _text_array(values: Iterable[str]) -> str:
    """A text[] as PostgreSQL's array text, every element quoted."""
    quoted = ('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values)
    return "{" + ",".join(quoted) + "}"


# A merchant's evaluation lock (lock order, 2): an advisory lock on (this class, the
# merchant id's hash).
EVALUATION_LOCK_CLASS = 0x52554C45  # "RULE"

LOCK_EVALUATION_SQL = "SELECT pg_advisory_xact_lock($1::int, hashtext($2::uuid::text))"


async def lock_evaluation(conn: Connection, merchant_id: uuid.UUID) -> None:
    """Take the merchant's evaluation lock, exclusive, until the transaction ends: every
    stock batch of the merchant committed before, none runs its reads until then."""
    await conn.execute(LOCK_EVALUATION_SQL, EVALUATION_LOCK_CLASS, merchant_id)


# Takes the evaluation lock of each of the batch's merchants, shared, in uuid order;
# claims the batch's event ids and upserts the newest change per stock row (arrays in
# lock order); a version not newer than the one applied is dropped. Returns the rows
# that moved, with the available each held before (none for a row seen the first time).
CLAIM_AND_PROJECT_SQL = f"""
WITH evaluating AS MATERIALIZED (
    SELECT pg_advisory_xact_lock_shared({EVALUATION_LOCK_CLASS}, hashtext(m.merchant_id::text))
    FROM (SELECT DISTINCT merchant_id FROM unnest($4::uuid[]) AS u(merchant_id) ORDER BY merchant_id) m
),
claimed AS (
    {inbox_claim_sql(inbox, 1, 2)}
),
before AS (
    SELECT s.merchant_id, s.sku, s.location, s.available
    FROM {stock.fullname} s
    JOIN {unnest_sql(_STOCK_CHANGE, 3, "b")}
        ON s.merchant_id = b.merchant_id AND s.sku = b.sku AND s.location = b.location
),
upserted AS (
    INSERT INTO {stock.fullname} AS s
        (merchant_id, sku, location, available, version, causation_id, origin_received_at)
    SELECT c.merchant_id, c.sku, c.location, c.available, c.version, c.causation_id, c.origin_received_at
    FROM {unnest_sql(_STOCK_CHANGE, 3, "c", ordinality=True)}
    WHERE c.event_id IN (SELECT event_id FROM claimed)
    ORDER BY c.n
    ON CONFLICT (merchant_id, sku, location) DO UPDATE
    SET available = EXCLUDED.available, version = EXCLUDED.version, causation_id = EXCLUDED.causation_id,
        origin_received_at = EXCLUDED.origin_received_at
    WHERE s.version < EXCLUDED.version
    RETURNING s.merchant_id, s.sku, s.location
)
SELECT u.merchant_id, u.sku, u.location, b.available AS before_available
FROM upserted u
LEFT JOIN before b ON b.merchant_id = u.merchant_id AND b.sku = u.sku AND b.location = u.location
-- Evaluated once, before any row: the locks come first.
WHERE (SELECT count(*) FROM evaluating) >= 0
"""


def newest_per_row(changes: Iterable[StockChanged]) -> list[StockChanged]:
    """The newest change per stock row, in lock order."""
    newest: dict[SkuKey, StockChanged] = {}
    for change in changes:
        key = (change.merchant_id, change.sku, change.location)
        if key not in newest or change.version > newest[key].version:
            newest[key] = change
    return [newest[k] for k in sorted(newest, key=lock_order)]


async def claim_and_project_stock(
    conn: Connection, topic: str, event_ids: Sequence[uuid.UUID], newest: Sequence[StockChanged]
) -> list[asyncpg.Record]:
    """Claim `event_ids` and project `newest` (`newest_per_row` of them): the rows that
    moved (merchant_id, sku, location, before_available), each now locked."""
    moved: list[asyncpg.Record] = await conn.fetch(
        CLAIM_AND_PROJECT_SQL, list(event_ids), topic, *column_arrays(newest, _names(_STOCK_CHANGE))
    )
    return moved


_RULE_COLUMNS = (
    "rule_id, position, enabled, connection_ids, skus, condition, action, product_filter, "
    "starts_at, ends_at, weekly_windows, time_zone"
)

# Locks every stock row of the moved SKUs and reads, per row, what its SKU's decisions
# need; the rules only for a merchant whose fingerprint (rule ids and row versions) is not
# the one the caller holds. It runs after `CLAIM_AND_PROJECT_SQL` locked the moved rows,
# so it sees what a rule change, the scheduler or another batch committed before.
LOCK_AND_READ_SQL = f"""
WITH moved AS (
    SELECT DISTINCT m.merchant_id, m.sku FROM {unnest_sql(_SKU, 1, "m")}
),
known AS (
    SELECT k.merchant_id, k.fingerprint FROM {unnest_sql(_FINGERPRINT, 3, "k")}
),
merchants AS (
    SELECT d.merchant_id,
        (SELECT coalesce(json_agg(json_build_object(
                    'id', c.connection_id, 'locations', c.locations, 'per_location', c.per_location
                ) ORDER BY c.connection_id), '[]')::text
         FROM {connections.fullname} c WHERE c.merchant_id = d.merchant_id AND c.active) AS feeds,
        (SELECT coalesce(array_agg(c.connection_id), '{{}}')
         FROM {connections.fullname} c WHERE c.merchant_id = d.merchant_id AND c.active) AS connection_ids,
        (SELECT md5(coalesce(string_agg(r.rule_id::text || '@' || r.xmin::text, ',' ORDER BY r.rule_id), ''))
         FROM {rules.fullname} r WHERE r.merchant_id = d.merchant_id) AS fingerprint,
        (SELECT coalesce(array_agg(cd.connection_id ORDER BY cd.connection_id), '{{}}')
         FROM {connection_delays.fullname} cd WHERE cd.merchant_id = d.merchant_id) AS delay_connections,
        (SELECT coalesce(array_agg(cd.p95_s ORDER BY cd.connection_id), '{{}}')
         FROM {connection_delays.fullname} cd WHERE cd.merchant_id = d.merchant_id) AS delay_p95s
    FROM (SELECT DISTINCT merchant_id FROM moved) d
),
locked AS (
    SELECT s.merchant_id, s.sku, s.location, s.available, s.version, s.causation_id, s.origin_received_at
    FROM {stock.fullname} s JOIN moved m ON s.merchant_id = m.merchant_id AND s.sku = m.sku
    ORDER BY s.merchant_id, s.sku, s.location
    FOR UPDATE OF s
)
SELECT l.merchant_id, l.sku, l.location, l.available, l.version, l.causation_id, l.origin_received_at,
    pr.brand, pr.category, pr.tags,
    mm.feeds, mm.fingerprint, mm.delay_connections, mm.delay_p95s,
    sr.channels AS rate_channels, sr.rates, sr.rated_at,
    CASE WHEN mm.fingerprint IS NOT DISTINCT FROM k.fingerprint THEN NULL
         ELSE (SELECT coalesce(json_agg(x), '[]')::text
               FROM (SELECT {_RULE_COLUMNS} FROM {rules.fullname} WHERE merchant_id = mm.merchant_id) x)
    END AS rules_json,
    p.connection_ids AS published_to, p.locations AS published_locations, p.quantities AS published_quantities,
    p.versions AS published_versions
FROM locked l
JOIN merchants mm ON mm.merchant_id = l.merchant_id
LEFT JOIN known k ON k.merchant_id = l.merchant_id
LEFT JOIN {products.fullname} pr ON pr.merchant_id = l.merchant_id AND pr.sku = l.sku
LEFT JOIN LATERAL (
    SELECT array_agg(cq.connection_id) AS connection_ids, array_agg(cq.location) AS locations,
        array_agg(cq.quantity) AS quantities, array_agg(cq.version) AS versions
    FROM {channel_quantities.fullname} cq
    -- (connection_id, sku) leads the primary key: one index range per connection.
    WHERE cq.connection_id = ANY(mm.connection_ids) AND cq.sku = l.sku
) p ON true
LEFT JOIN LATERAL (
    SELECT array_agg(r.channel) AS channels, array_agg(r.rate) AS rates, array_agg(r.at) AS rated_at
    FROM {sales_rates.fullname} r WHERE r.merchant_id = l.merchant_id AND r.sku = l.sku
) sr ON true
ORDER BY l.merchant_id, l.sku, l.location
"""


async def lock_and_read(
    conn: Connection, moved: Iterable[tuple[uuid.UUID, str]], known: Mapping[uuid.UUID, str]
) -> list[asyncpg.Record]:
    """Lock every stock row of the `moved` (merchant, sku) and read them with their
    inputs, in lock order; `known`: the rules fingerprint held per merchant.

    Per row: the row's columns; the SKU's product (brand, category, tags), published
    quantities (published_to, published_locations, published_quantities,
    published_versions: one element per published (connection, location)) and sales
    rates (rate_channels, rates, rated_at); its merchant's active connections' feeds
    (JSON: id, locations, per_location), delays (delay_connections, delay_p95s), rules
    fingerprint and, when it differs from the known one, rules (rules_json).
    """
    skus = [_Sku(m, s) for m, s in moved]
    held = [_Fingerprint(m, f) for m, f in known.items()]
    rows: list[asyncpg.Record] = await conn.fetch(
        LOCK_AND_READ_SQL, *column_arrays(skus, _names(_SKU)), *column_arrays(held, _names(_FINGERPRINT))
    )
    return rows


# The sales rates that moved (one row per SKU and channel that sold), in key order.
SAVE_RATES_SQL = f"""
INSERT INTO {sales_rates.fullname} AS r ({", ".join(_names(_RATE))})
SELECT * FROM {unnest_sql(_RATE, 1, "v")}
ON CONFLICT (merchant_id, sku, channel) DO UPDATE SET rate = EXCLUDED.rate, at = EXCLUDED.at
"""


async def save_rates(conn: Connection, rates: Mapping[RateKey, DecayedRate]) -> None:
    """Save the rates a stock batch changed; the caller holds their SKUs' stock rows."""
    if not rates:
        return
    rows = [
        _Rate(*key, rates[key].rate, datetime.fromtimestamp(rates[key].at or 0.0, UTC))
        for key in sorted(rates, key=lock_order)
    ]
    await conn.execute(SAVE_RATES_SQL, *column_arrays(rows, _names(_RATE)))


# rate * exp(-elapsed / tau) * 3600 < NEGLIGIBLE  <=>  elapsed > tau * ln(rate * 3600 / NEGLIGIBLE)
DROP_DECAYED_RATES_SQL = f"""
DELETE FROM {sales_rates.fullname}
WHERE merchant_id = $1::uuid AND sku = ANY($2::text[])
    AND (rate * 3600 < {NEGLIGIBLE_PER_HOUR}
         OR extract(epoch FROM $3::timestamptz - at) > $4::float8 * ln(rate * 3600 / {NEGLIGIBLE_PER_HOUR}))
"""


async def drop_decayed_rates(
    conn: Connection, merchant_id: uuid.UUID, skus: Iterable[str], at: datetime, tau_s: float
) -> None:
    """Delete the rates of `skus` that have decayed to nothing at `at`; the caller holds
    those SKUs' stock rows (`lock_stock`)."""
    await conn.execute(DROP_DECAYED_RATES_SQL, merchant_id, sorted(skus), at, tau_s)


LOCK_SKUS_SQL = f"""
SELECT 1 FROM {stock.fullname}
WHERE merchant_id = $1::uuid AND sku = ANY($2::text[])
ORDER BY sku, location
FOR UPDATE
"""
LOCK_MERCHANT_SQL = f"""
SELECT 1 FROM {stock.fullname} WHERE merchant_id = $1::uuid ORDER BY sku, location FOR UPDATE
"""


async def lock_stock(conn: Connection, merchant_id: uuid.UUID, skus: Iterable[str] | None) -> None:
    """Lock the merchant's stock rows (of `skus`; None: all of them) in lock order: a
    stock batch of the same SKUs waits for the re-evaluation that holds them."""
    if skus is None:
        await conn.execute(LOCK_MERCHANT_SQL, merchant_id)
    else:
        await conn.execute(LOCK_SKUS_SQL, merchant_id, sorted(skus))


# Claims the batch's event ids and upserts each new event's attributes, the newest
# version per product winning; returns the products whose attributes changed.
PROJECT_PRODUCTS_SQL = f"""
WITH claimed AS (
    {inbox_claim_sql(inbox, 1, 2)}
)
INSERT INTO {products.fullname} AS p (merchant_id, sku, brand, category, tags, version)
SELECT v.merchant_id, v.sku, v.brand, v.category, v.tags::text[], v.version
FROM {unnest_sql((("event_id", "uuid"), *_PRODUCT), 3, "v", ordinality=True)}
WHERE v.event_id IN (SELECT event_id FROM claimed)
ORDER BY v.n
ON CONFLICT (merchant_id, sku) DO UPDATE
SET brand = EXCLUDED.brand, category = EXCLUDED.category, tags = EXCLUDED.tags, version = EXCLUDED.version
WHERE p.version < EXCLUDED.version
RETURNING p.merchant_id, p.sku
"""


@dataclass(frozen=True)
class _ProductChange:
    event_id: uuid.UUID
    merchant_id: uuid.UUID
    sku: str
    brand: str | None
    category: str | None
    tags: str
    version: int


async def project_products(
    conn: Connection, topic: str, event_ids: Sequence[uuid.UUID], newest: Iterable[ProductAttributesChanged]
) -> list[tuple[uuid.UUID, str]]:
    """Claim `event_ids` and project `newest` (the newest change per product): the
    (merchant, sku) whose attributes changed."""
    rows = sorted(
        (
            _ProductChange(c.event_id, c.merchant_id, c.sku, c.brand, c.category, _text_array(c.tags), c.version)
            for c in newest
        ),
        key=lambda r: (str(r.merchant_id), r.sku),
    )
    names = ["event_id", *_names(_PRODUCT)]
    updated = await conn.fetch(PROJECT_PRODUCTS_SQL, list(event_ids), topic, *column_arrays(rows, names))
    return [(r["merchant_id"], r["sku"]) for r in updated]


# Claims a change's event id and applies it unless the connection's row is newer;
# returns whether the id was new.
PROJECT_CONNECTION_SQL = f"""
WITH claimed AS (
    {inbox_claim_sql(inbox, 1, 2)}
),
applied AS (
    INSERT INTO {connections.fullname} AS c
        (connection_id, merchant_id, channel_type, name, active, locations, per_location, updated_at)
    SELECT v.connection_id, v.merchant_id, v.channel_type, v.name, v.active, v.locations::text[], v.per_location,
        v.occurred_at
    FROM {unnest_sql(_CONNECTION, 3, "v")}
    WHERE v.event_id IN (SELECT event_id FROM claimed)
    ON CONFLICT (connection_id) DO UPDATE
    SET merchant_id = EXCLUDED.merchant_id, channel_type = EXCLUDED.channel_type, name = EXCLUDED.name,
        active = EXCLUDED.active, locations = EXCLUDED.locations, per_location = EXCLUDED.per_location,
        updated_at = EXCLUDED.updated_at
    WHERE c.updated_at <= EXCLUDED.updated_at
)
SELECT count(*) FROM claimed
"""


@dataclass(frozen=True)
class _ConnectionChange:
    event_id: uuid.UUID
    connection_id: uuid.UUID
    merchant_id: uuid.UUID
    channel_type: str
    name: str
    active: bool
    locations: str
    per_location: bool
    occurred_at: datetime


async def project_connection(conn: Connection, topic: str, change: ConnectionChanged) -> bool:
    """Claim the change's event id and apply it unless a newer change of the connection
    was; False for a redelivery. One change per statement: a batch may change the same
    connection twice, which one INSERT ... ON CONFLICT cannot."""
    row = _ConnectionChange(
        change.event_id,
        change.connection_id,
        change.merchant_id,
        change.channel_type,
        change.name,
        change.active,
        _text_array(change.locations),
        change.per_location,
        change.occurred_at,
    )
    claimed = await conn.fetchval(
        PROJECT_CONNECTION_SQL, [change.event_id], topic, *column_arrays([row], _names(_CONNECTION))
    )
    return bool(claimed)


# Claims the batch's event ids and applies, per connection, the newest new measurement
# unless the row holds a newer one; returns the connections whose delay changed.
PROJECT_DELAYS_SQL = f"""
WITH claimed AS (
    {inbox_claim_sql(inbox, 1, 2)}
)
INSERT INTO {connection_delays.fullname} AS d (connection_id, merchant_id, p50_s, p95_s, samples, measured_at)
SELECT DISTINCT ON (v.connection_id) v.connection_id, v.merchant_id, v.p50_s, v.p95_s, v.samples, v.occurred_at
FROM {unnest_sql(_DELAY, 3, "v")}
WHERE v.event_id IN (SELECT event_id FROM claimed)
ORDER BY v.connection_id, v.occurred_at DESC
ON CONFLICT (connection_id) DO UPDATE
SET merchant_id = EXCLUDED.merchant_id, p50_s = EXCLUDED.p50_s, p95_s = EXCLUDED.p95_s,
    samples = EXCLUDED.samples, measured_at = EXCLUDED.measured_at
WHERE d.measured_at < EXCLUDED.measured_at
RETURNING d.connection_id, d.merchant_id
"""


async def project_delays(
    conn: Connection, topic: str, changes: Sequence[ConnectionDelayMeasured]
) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """Claim the changes' event ids and project the newest delay per connection:
    (connection, merchant) of those that changed, in connection id order."""
    updated = await conn.fetch(
        PROJECT_DELAYS_SQL, [c.event_id for c in changes], topic, *column_arrays(changes, _names(_DELAY))
    )
    return sorted(((r["connection_id"], r["merchant_id"]) for r in updated), key=lambda c: str(c[0]))


# A per-location channel's quantities at locations it no longer sells from, locked.
LOCK_DROPPED_LOCATIONS_SQL = f"""
SELECT cq.sku, cq.location, cq.version, cq.stock_version
FROM {channel_quantities.fullname} cq
JOIN {connections.fullname} c ON c.connection_id = cq.connection_id
WHERE cq.connection_id = $1::uuid AND c.active AND c.per_location
    AND cq.location <> ALL(c.locations) AND cq.quantity <> 0
ORDER BY cq.sku, cq.location
FOR UPDATE OF cq
"""


async def lock_dropped_locations(conn: Connection, connection_id: uuid.UUID) -> list[asyncpg.Record]:
    """Lock the quantities an active per-location connection still shows at locations it
    no longer sells from (sku, location, version, stock_version), in (sku, location)
    order; none for a summed or inactive one. The caller holds the SKUs' stock rows."""
    dropped: list[asyncpg.Record] = await conn.fetch(LOCK_DROPPED_LOCATIONS_SQL, connection_id)
    return dropped


# Every published quantity: the row each (connection, sku, location) was last sent, and
# the event that sends it, in one statement.
PUBLISH_SQL = f"""
WITH published AS (
    INSERT INTO {channel_quantities.fullname} AS cq ({", ".join(_names(_PUBLISHED))})
    SELECT {", ".join(f"q.{name}" for name in _names(_PUBLISHED)[:-1])}, q.rule_ids::uuid[]
    FROM {unnest_sql(_PUBLISHED, 1, "q")}
    ON CONFLICT (connection_id, sku, location) DO UPDATE
    SET quantity = EXCLUDED.quantity, version = EXCLUDED.version, stock_version = EXCLUDED.stock_version,
        rule_ids = EXCLUDED.rule_ids
    RETURNING 1
),
announced AS (
    {outbox_insert_sql(outbox, len(_PUBLISHED) + 1)}
)
SELECT (SELECT count(*) FROM published), (SELECT count(*) FROM announced)
"""


async def publish(uow: UnitOfWork, changes: Sequence[ChannelQuantityChanged]) -> None:
    """Record each change as its (connection, sku, location)'s published quantity and
    write it, with the unit of work's other pending events, to the outbox. The caller
    holds the SKUs' stock rows and gave each change the version after the one published
    (`domain.feeds.quantity_changed`)."""
    if not changes:
        return
    uow.add(changes)
    await uow.connection.fetchrow(
        PUBLISH_SQL,
        *column_arrays(changes, _names(_PUBLISHED)[:-1]),
        [uuid_array_literal(c.rule_ids) for c in changes],
        *outbox_arrays(uow.take_events()),
    )
