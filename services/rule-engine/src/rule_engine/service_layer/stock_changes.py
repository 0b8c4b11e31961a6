"""The stock.changed.v1 consumer batch: project the stock, re-evaluate the SKUs that moved.

It does what `reevaluate` does for the SKUs a batch moved, in three statements of the
store (adapters/quantity_store.py) whatever the batch size, in one unit of work:

1. claim the inbox and upsert the stock projection (`claim_and_project_stock`),
   returning the rows that moved;
2. lock every stock row of those SKUs and read their inputs (`lock_and_read`): product
   attributes, published quantities, sales rates; per merchant, the active connections'
   feeds, the measured delays and a fingerprint of the rules, and the rules themselves
   only when the fingerprint differs from the one this process holds;
3. publish the quantities that changed (`publish`: channel_quantities and the outbox);

and a fourth (`save_rates`) when the batch sold. Deciding is Python: per SKU, each
connection's feed (`domain.feeds.feed_views`), the funnel's decision, compared with what
was published.

Statement 2 runs after statement 1 has locked the moved rows, so it sees what a rule
change, the scheduler or another batch committed before; any of those that re-evaluates
these SKUs waits for this transaction. The rules cache is therefore checked against the
database in the same snapshot as every other input, on every batch: a rule written by
any instance (API, scheduler) changes its row's `xmin`, hence the fingerprint.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, get_args

import orjson

from stocksync_common.contracts import ChannelQuantityChanged, ChannelType, StockChanged, utcnow
from stocksync_common.topics import STOCK_CHANGED

from rule_engine.adapters import quantity_store
from rule_engine.adapters.quantity_store import RateKey
from rule_engine.domain.adaptive import DecayedRate, Estimation, Exposure, rate_per_hour, sale_of
from rule_engine.domain.feeds import Feed, StockRow, feed_views, quantity_changed
from rule_engine.domain.rules import Decision, Funnel, ProductAttributes, Rule
from rule_engine.service_layer.evaluation import rule_from_mapping

if TYPE_CHECKING:
    from rule_engine.service_layer.context import ConsumerContext


class RuleSets:
    """Each merchant's rules as last read, with the fingerprint they were read at.

    Only a cache: every batch sends the fingerprints it holds and gets the rules back
    for a merchant whose fingerprint differs (`quantity_store.lock_and_read`).
    """

    def __init__(self, max_merchants: int = 10_000) -> None:
        self._rules: dict[uuid.UUID, tuple[str, list[Rule]]] = {}
        self._max_merchants = max_merchants

    def known(self, merchant_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, str]:
        """The fingerprints held for these merchants. Evicts here, never during a batch:
        a merchant sent as known must still be held when its rows come back."""
        if len(self._rules) >= self._max_merchants:
            self._rules.clear()
        return {m: self._rules[m][0] for m in merchant_ids if m in self._rules}

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


def _feeds(document: str) -> list[tuple[uuid.UUID, Feed]]:
    """A merchant's active connections and their feeds, from `lock_and_read`'s JSON, in id order."""
    return [(uuid.UUID(f["id"]), Feed.of(f["locations"], f["per_location"])) for f in orjson.loads(document)]


def _published(row: Any) -> dict[tuple[uuid.UUID, str], tuple[int, int]]:
    """The (quantity, version) last published per (connection, location) of the row's SKU."""
    if row["published_to"] is None:
        return {}
    return {
        (connection_id, location): (quantity, version)
        for connection_id, location, quantity, version in zip(
            row["published_to"],
            row["published_locations"],
            row["published_quantities"],
            row["published_versions"],
            strict=True,
        )
    }


def plan_channel_quantities(
    rows: Iterable[Any],
    rule_sets: RuleSets,
    at: datetime,
    rates: dict[tuple[uuid.UUID, str], dict[str, DecayedRate]] | None = None,
    estimation: Estimation = Estimation(),
) -> list[ChannelQuantityChanged]:
    """The channel quantities that differ from the published ones, from `lock_and_read`'s rows.

    Rows come in (merchant, sku, location) order; per SKU, connections in id order, each
    shown its feed (`feed_views`). A merchant with an adaptive rule decides from the SKU's
    sales rate (`rates`, after the batch's sales) and its connections' measured delays.
    """
    emitted: list[ChannelQuantityChanged] = []
    funnels: dict[uuid.UUID, Funnel] = {}
    merchant_feeds: dict[uuid.UUID, list[tuple[uuid.UUID, Feed]]] = {}
    decided: dict[tuple[Any, ...], Decision] = {}
    for (merchant_id, sku), grouped in itertools.groupby(rows, key=lambda r: (r["merchant_id"], r["sku"])):
        sku_rows = list(grouped)
        first = sku_rows[0]
        feeds = merchant_feeds.get(merchant_id)
        if feeds is None:
            feeds = merchant_feeds[merchant_id] = _feeds(first["feeds"])
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
        published = _published(first)
        stock_rows = [
            StockRow(r["location"], r["available"], r["version"], r["causation_id"], r["origin_received_at"])
            for r in sku_rows
        ]
        for target, feed in feeds:
            for view in feed_views(feed, stock_rows):
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
                emitted.append(quantity_changed(merchant_id, target, sku, view, decision, version))
    return emitted


async def apply_stock_changes(changes: Sequence[StockChanged], context: ConsumerContext) -> int:
    """Project a consumer batch of stock changes and emit the channel quantities that
    changed; one unit of work, three statements (a fourth saves the sales rates of a
    batch that sold), whose commit wakes the relay if it emitted any. Returns the number
    emitted."""
    event_ids = list(dict.fromkeys(c.event_id for c in changes))
    if not event_ids:
        return 0
    newest = quantity_store.newest_per_row(changes)
    async with context.units() as uow:
        moved = await quantity_store.claim_and_project_stock(uow.connection, STOCK_CHANGED.name, event_ids, newest)
        emitted: Sequence[ChannelQuantityChanged] = []
        if moved:
            skus = [(r["merchant_id"], r["sku"]) for r in moved]
            rule_sets = context.rule_sets
            read = await quantity_store.lock_and_read(uow.connection, skus, rule_sets.known(m for m, _ in skus))
            sales = sales_in(moved, {(c.merchant_id, c.sku, c.location): c for c in newest})
            rates, changed_rates = updated_rates(read, sales, context.estimation)
            await quantity_store.save_rates(uow.connection, changed_rates)
            emitted = plan_channel_quantities(read, rule_sets, utcnow(), rates, context.estimation)
            await quantity_store.publish(uow, emitted)
        await uow.commit()
    return len(emitted)
