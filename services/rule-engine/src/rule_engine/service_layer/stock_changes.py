"""The stock.changed.v1 consumer batch: project the stock, re-evaluate the SKUs that moved.

It does what `reevaluate` does for the SKUs a batch moved, in three statements on
asyncpg (stocksync_common.raw_connection) whatever the batch size:

1. claim the inbox and upsert the stock projection (rows in (merchant, sku, location)
   order; a version not newer than the one applied is dropped), returning the SKUs
   that moved;
2. lock every stock row of those SKUs in (merchant, sku, location) order and read, for
   each, its product attributes and the quantities last published to the merchant's
   active connections; per merchant, the active connections and a fingerprint of the
   rules (rule ids and row versions, `xmin`), and the rules themselves only when the
   fingerprint differs from the one this process holds;
3. upsert the published quantities that changed and write their outbox rows.

Statement 2 runs after statement 1 has locked the moved rows, so it sees what a rule
change, the scheduler or another batch committed before; any of those that re-evaluates
these SKUs waits for this transaction. The rules cache is therefore checked against the
database in the same snapshot as every other input, on every batch: a rule written by
any instance (API, scheduler) changes its row's `xmin`, hence the fingerprint.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, get_args

import orjson
from sqlalchemy.ext.asyncio import AsyncEngine

from stocksync_common.contracts import DEFAULT_LOCATION, ChannelQuantityChanged, ChannelType, StockChanged, utcnow
from stocksync_common.outbox import outbox_arrays, outbox_insert_sql
from stocksync_common.raw_connection import raw_transaction, uuid_array_literal
from stocksync_common.topics import STOCK_CHANGED

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
from rule_engine.domain.adaptive import DecayedRate, Estimation, Exposure, rate_per_hour, sale_of
from rule_engine.domain.rules import Decision, Funnel, ProductAttributes, Rule
from rule_engine.service_layer.evaluation import rule_from_mapping

CLAIM_AND_PROJECT_SQL = f"""
WITH claimed AS (
    INSERT INTO {inbox.fullname} (event_id, topic)
    SELECT e, $1::text FROM unnest($2::uuid[]) AS e
    ON CONFLICT (event_id) DO NOTHING
    RETURNING event_id
),
before AS (
    SELECT s.merchant_id, s.sku, s.location, s.available
    FROM {stock.fullname} s
    JOIN unnest($4::uuid[], $5::text[], $6::text[]) AS b(merchant_id, sku, location)
        ON s.merchant_id = b.merchant_id AND s.sku = b.sku AND s.location = b.location
),
upserted AS (
INSERT INTO {stock.fullname} AS s
    (merchant_id, sku, location, available, version, causation_id, origin_received_at)
SELECT c.merchant_id, c.sku, c.location, c.available, c.version, c.causation_id, c.origin_received_at
FROM unnest($3::uuid[], $4::uuid[], $5::text[], $6::text[], $7::bigint[], $8::bigint[], $9::text[],
            $10::timestamptz[])
    WITH ORDINALITY AS c(event_id, merchant_id, sku, location, available, version, causation_id,
                         origin_received_at, n)
WHERE c.event_id IN (SELECT event_id FROM claimed)
ORDER BY c.n
ON CONFLICT (merchant_id, sku, location) DO UPDATE
SET available = EXCLUDED.available, version = EXCLUDED.version, causation_id = EXCLUDED.causation_id,
    origin_received_at = EXCLUDED.origin_received_at
WHERE s.version < EXCLUDED.version
RETURNING s.merchant_id, s.sku, s.location
)
-- What each updated row held before (none for a SKU seen for the first time): a sale is a drop.
SELECT u.merchant_id, u.sku, u.location, b.available AS before_available
FROM upserted u
LEFT JOIN before b ON b.merchant_id = u.merchant_id AND b.sku = u.sku AND b.location = u.location
"""

_RULE_COLUMNS = (
    "rule_id, position, enabled, connection_ids, skus, condition, action, product_filter, "
    "starts_at, ends_at, weekly_windows, time_zone"
)

LOCK_AND_READ_SQL = f"""
WITH moved AS (
    SELECT DISTINCT m.merchant_id, m.sku FROM unnest($1::uuid[], $2::text[]) AS m(merchant_id, sku)
),
known AS (
    SELECT k.merchant_id, k.fingerprint FROM unnest($3::uuid[], $4::text[]) AS k(merchant_id, fingerprint)
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

PUBLISH_SQL = f"""
WITH published AS (
    INSERT INTO {channel_quantities.fullname} AS cq
        (connection_id, sku, location, merchant_id, quantity, version, stock_version, rule_ids)
    SELECT q.connection_id, q.sku, q.location, q.merchant_id, q.quantity, q.version, q.stock_version,
        q.rule_ids::uuid[]
    FROM unnest($1::uuid[], $2::text[], $3::text[], $4::uuid[], $5::bigint[], $6::bigint[], $7::bigint[],
                $8::text[])
        AS q(connection_id, sku, location, merchant_id, quantity, version, stock_version, rule_ids)
    ON CONFLICT (connection_id, sku, location) DO UPDATE
    SET quantity = EXCLUDED.quantity, version = EXCLUDED.version, stock_version = EXCLUDED.stock_version,
        rule_ids = EXCLUDED.rule_ids
    RETURNING 1
),
announced AS (
    {outbox_insert_sql(outbox, 9)}
)
SELECT (SELECT count(*) FROM published), (SELECT count(*) FROM announced)
"""


# The sales rates that moved (one row per SKU and channel that sold), in key order.
SAVE_RATES_SQL = f"""
INSERT INTO {sales_rates.fullname} AS r (merchant_id, sku, channel, rate, at)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::float8[], $5::timestamptz[])
ON CONFLICT (merchant_id, sku, channel) DO UPDATE SET rate = EXCLUDED.rate, at = EXCLUDED.at
"""

RateKey = tuple[uuid.UUID, str, str]  # merchant, sku, channel


class RuleSets:
    """Each merchant's rules as last read, with the fingerprint they were read at.

    Only a cache: every batch sends the fingerprints it holds and gets the rules back
    for a merchant whose fingerprint differs (`LOCK_AND_READ_SQL`).
    """

    def __init__(self, max_merchants: int = 10_000) -> None:
        self._rules: dict[uuid.UUID, tuple[str, list[Rule]]] = {}
        self._max_merchants = max_merchants

    def known(self, merchant_ids: Iterable[uuid.UUID]) -> tuple[list[uuid.UUID], list[str]]:
        """The fingerprints held for these merchants. Evicts here, never during a batch:
        a merchant sent as known must still be held when its rows come back."""
        if len(self._rules) >= self._max_merchants:
            self._rules.clear()
        held = [(m, self._rules[m][0]) for m in merchant_ids if m in self._rules]
        return [m for m, _ in held], [f for _, f in held]

    def rules(self, merchant_id: uuid.UUID, fingerprint: str, rules_json: str | None) -> list[Rule]:
        if rules_json is None:
            return self._rules[merchant_id][1]
        loaded = [_rule_from_json(r) for r in orjson.loads(rules_json)]
        self._rules[merchant_id] = (fingerprint, loaded)
        return loaded


def _rule_from_json(document: dict[str, Any]) -> Rule:
    return rule_from_mapping(
        {
            **document,
            "rule_id": uuid.UUID(document["rule_id"]),
            "connection_ids": [uuid.UUID(c) for c in document["connection_ids"]],
            "starts_at": _timestamp(document["starts_at"]),
            "ends_at": _timestamp(document["ends_at"]),
        }
    )


def _timestamp(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text is not None else None


def _newest(changes: Iterable[StockChanged]) -> list[StockChanged]:
    """The newest change per (merchant, sku, location), in lock order."""
    newest: dict[tuple[uuid.UUID, str, str], StockChanged] = {}
    for change in changes:
        key = (change.merchant_id, change.sku, change.location)
        if key not in newest or change.version > newest[key].version:
            newest[key] = change
    return [newest[k] for k in sorted(newest, key=lambda k: (str(k[0]), k[1], k[2]))]


_EPOCH = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class _View:
    """What one connection is shown of a SKU at one published location."""

    location: str
    available: int
    stock_version: int
    causation_id: str
    origin_received_at: datetime | None


def _views(by_location: dict[str, Any], feed: dict[str, Any]) -> list[_View]:
    """A connection's feed of one SKU (service_layer/evaluation.py `Feed`): each listed
    location's row, or the sum of their available at the default location (0 when none
    of them has stock: a channel is never shown another location's units)."""
    rows = [by_location[loc] for loc in feed["locations"] if loc in by_location]
    if feed["per_location"]:
        return [
            _View(r["location"], r["available"], r["version"], r["causation_id"], r["origin_received_at"]) for r in rows
        ]
    if not rows:
        return [_View(DEFAULT_LOCATION, 0, 0, next(iter(by_location.values()))["causation_id"], None)]
    # The causation and sync window of the feed's latest movement.
    newest = max(rows, key=lambda r: r["origin_received_at"] or _EPOCH)
    return [
        _View(
            DEFAULT_LOCATION,
            sum(r["available"] for r in rows),
            sum(r["version"] for r in rows),
            newest["causation_id"],
            newest["origin_received_at"],
        )
    ]


CHANNEL_TYPES = frozenset(get_args(ChannelType))


def sales_in(moved: Iterable[Any], changes: dict[tuple[uuid.UUID, str, str], StockChanged]) -> list[tuple[Any, ...]]:
    """The sales a batch applied: (merchant, sku, channel, units, at) per moved row that sold.

    `moved` are the projection's rows the batch updated, with the available they had before.
    """
    sales: list[tuple[Any, ...]] = []
    for row in moved:
        change = changes[(row["merchant_id"], row["sku"], row["location"])]
        sale = sale_of(change.causation_id, CHANNEL_TYPES, row["before_available"], change.available)
        if sale is None:
            continue
        at = change.origin_received_at or change.occurred_at
        sales.append((change.merchant_id, change.sku, sale[0], sale[1], at))
    return sales


def updated_rates(
    rows: Iterable[Any], sales: Iterable[tuple[Any, ...]], estimation: Estimation
) -> tuple[dict[tuple[uuid.UUID, str], dict[str, DecayedRate]], dict[RateKey, DecayedRate]]:
    """Each moved SKU's rates per channel after this batch's sales, and the rates that changed."""
    per_sku: dict[tuple[uuid.UUID, str], dict[str, DecayedRate]] = {}
    for row in rows:
        key = (row["merchant_id"], row["sku"])
        if key in per_sku:
            continue
        stored = zip(row["rate_channels"] or (), row["rates"] or (), row["rated_at"] or (), strict=True)
        per_sku[key] = {c: DecayedRate(rate, at.timestamp()) for c, rate, at in stored}
    changed: dict[RateKey, DecayedRate] = {}
    for merchant_id, sku, channel, units, at in sorted(sales, key=lambda s: s[4]):
        rates = per_sku.setdefault((merchant_id, sku), {})
        rate = rates.get(channel, DecayedRate()).observe(units, at.timestamp(), estimation.tau_s)
        rates[channel] = rate
        changed[(merchant_id, sku, channel)] = rate
    return per_sku, changed


def plan_channel_quantities(
    rows: Iterable[Any],
    rule_sets: RuleSets,
    at: datetime,
    rates: dict[tuple[uuid.UUID, str], dict[str, DecayedRate]] | None = None,
    estimation: Estimation = Estimation(),
) -> list[ChannelQuantityChanged]:
    """The channel quantities that differ from the published ones, from `LOCK_AND_READ_SQL`'s rows.

    Rows come in (merchant, sku, location) order; per SKU, connections in id order, each
    shown its feed (`_views`). A merchant with an adaptive rule decides from the SKU's sales
    rate (`rates`, after the batch's sales) and its connections' measured delays.
    """
    emitted: list[ChannelQuantityChanged] = []
    funnels: dict[uuid.UUID, Funnel] = {}
    decided: dict[tuple[Any, ...], Decision] = {}
    for (merchant_id, sku), grouped in itertools.groupby(rows, key=lambda r: (r["merchant_id"], r["sku"])):
        sku_rows = list(grouped)
        first = sku_rows[0]
        feeds: list[dict[str, Any]] = orjson.loads(first["feeds"])
        if not feeds:
            continue
        funnel = funnels.get(merchant_id)
        if funnel is None:
            funnel = Funnel(rule_sets.rules(merchant_id, first["fingerprint"], first["rules_json"]), at)
            funnels[merchant_id] = funnel
        named = sku if sku in funnel.named_skus else None
        product = (
            ProductAttributes.of(first["brand"], first["category"], first["tags"] or ())
            if funnel.needs_attributes
            else None
        )
        per_hour = None
        exposure: Exposure | None = None
        if funnel.is_adaptive:
            sku_rates = (rates or {}).get((merchant_id, sku), {})
            per_hour = rate_per_hour(sum(r.value_at(at.timestamp(), estimation.tau_s) for r in sku_rates.values()))
            exposure = Exposure.of_total(
                per_hour / 3600,
                dict(zip(first["delay_connections"], first["delay_p95s"], strict=True)),
                estimation.default_delay_s,
            )
        published: dict[tuple[uuid.UUID, str], tuple[int, int]] = {}
        if first["published_to"] is not None:
            published = {
                (connection_id, location): (quantity, version)
                for connection_id, location, quantity, version in zip(
                    first["published_to"],
                    first["published_locations"],
                    first["published_quantities"],
                    first["published_versions"],
                    strict=True,
                )
            }
        by_location = {r["location"]: r for r in sku_rows}
        for feed in feeds:
            target = uuid.UUID(feed["id"])
            for view in _views(by_location, feed):
                key = (merchant_id, target, view.available, product, named, per_hour)
                decision = decided.get(key)
                if decision is None:
                    attributes = product or ProductAttributes()
                    decision = (
                        funnel.decisions([target], view.available, attributes, named, exposure)[0]
                        if exposure is not None
                        else funnel.decisions([target], view.available, attributes, named)[0]
                    )
                    decided[key] = decision
                current, version = published.get((target, view.location), (None, 0))
                if current == decision.quantity:
                    continue
                emitted.append(
                    ChannelQuantityChanged(
                        merchant_id=merchant_id,
                        connection_id=target,
                        sku=sku,
                        location=view.location,
                        quantity=decision.quantity,
                        version=version + 1,
                        stock_version=view.stock_version,
                        available=view.available,
                        rule_ids=decision.rule_ids,
                        reasons=decision.reasons,
                        causation_id=view.causation_id,
                        origin_received_at=view.origin_received_at,
                    )
                )
    return emitted


async def apply_stock_changes(
    engine: AsyncEngine,
    changes: Iterable[StockChanged],
    rule_sets: RuleSets | None = None,
    estimation: Estimation = Estimation(),
) -> int:
    """Project a consumer batch of stock changes and emit the channel quantities that
    changed; one transaction, three statements (a fourth saves the sales rates of a batch
    that sold). Returns the number emitted."""
    changes = list(changes)
    rule_sets = rule_sets if rule_sets is not None else RuleSets()
    rows = _newest(changes)
    event_ids = list(dict.fromkeys(c.event_id for c in changes))
    if not event_ids:
        return 0
    async with raw_transaction(engine) as conn:
        moved = await conn.fetch(
            CLAIM_AND_PROJECT_SQL,
            STOCK_CHANGED.name,
            event_ids,
            [c.event_id for c in rows],
            [c.merchant_id for c in rows],
            [c.sku for c in rows],
            [c.location for c in rows],
            [c.available for c in rows],
            [c.version for c in rows],
            [c.causation_id for c in rows],
            [c.origin_received_at for c in rows],
        )
        if not moved:
            return 0
        known_merchants, fingerprints = rule_sets.known({r["merchant_id"] for r in moved})
        read = await conn.fetch(
            LOCK_AND_READ_SQL,
            [r["merchant_id"] for r in moved],
            [r["sku"] for r in moved],
            known_merchants,
            fingerprints,
        )
        sales = sales_in(moved, {(c.merchant_id, c.sku, c.location): c for c in rows})
        rates, changed_rates = updated_rates(read, sales, estimation)
        if changed_rates:
            keys = sorted(changed_rates, key=lambda k: (str(k[0]), k[1], k[2]))
            await conn.execute(
                SAVE_RATES_SQL,
                [k[0] for k in keys],
                [k[1] for k in keys],
                [k[2] for k in keys],
                [changed_rates[k].rate for k in keys],
                [datetime.fromtimestamp(changed_rates[k].at or 0.0, UTC) for k in keys],
            )
        emitted = plan_channel_quantities(read, rule_sets, utcnow(), rates, estimation)
        if not emitted:
            return 0
        await conn.fetchrow(
            PUBLISH_SQL,
            [e.connection_id for e in emitted],
            [e.sku for e in emitted],
            [e.location for e in emitted],
            [e.merchant_id for e in emitted],
            [e.quantity for e in emitted],
            [e.version for e in emitted],
            [e.stock_version for e in emitted],
            [uuid_array_literal(e.rule_ids) for e in emitted],
            *outbox_arrays(emitted),
        )
    return len(emitted)
