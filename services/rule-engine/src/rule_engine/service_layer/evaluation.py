"""Use cases of the rule engine: project stock, products and connections, re-evaluate, emit changes.

Every trigger (a stock change, a product's attributes, a rule change, a schedule
boundary, a new connection) ends in `reevaluate`, which computes the channel quantities
of the SKUs and connections concerned and emits `channel.quantity.v1` only where a
quantity changed. It runs inside the transaction that recorded the trigger, so the
emitted events and the state agree. A consumer batch of stock changes, the hot path,
does the same for the SKUs it moved in three statements (`service_layer/stock_changes.py`);
both decide with the same funnel on the same feed views (`domain.feeds`) and publish
through the same statement (`quantity_store.publish`), and
`tests/integration/test_rule_engine_stock_batch.py` checks that a full `reevaluate`
afterwards finds nothing left to emit.

A re-evaluation runs in its trigger's unit of work (`units.begin()`): every write and
lock goes through the store (adapters/quantity_store.py, whose docstring holds the lock
order) on its asyncpg connection, the set-based reads are SQLAlchemy Core on its
SQLAlchemy one (docs/decisions/0001-raw-asyncpg-on-hot-paths.md), and its commit wakes
the relay when anything was published.
"""

from __future__ import annotations

import functools
import operator
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection

from stocksync_common.contracts import (
    DEFAULT_LOCATION,
    ChannelQuantityChanged,
    ConnectionChanged,
    ProductAttributesChanged,
    utcnow,
)
from stocksync_common.raw_connection import driver_connection
from stocksync_common.topics import CATALOGUE, CONNECTIONS
from stocksync_common.uow import UnitOfWork

from rule_engine.adapters import quantity_store
from rule_engine.adapters.tables import (
    channel_quantities,
    connection_delays,
    connections,
    products,
    rules,
    sales_rates,
    stock,
)
from rule_engine.config import RuleEngineSettings
from rule_engine.domain.adaptive import Estimation, Exposure
from rule_engine.domain.feeds import Feed, FeedView, quantity_changed
from rule_engine.domain.rules import (
    Action,
    AttributeFilter,
    Condition,
    Decision,
    Funnel,
    ProductAttributes,
    Rule,
    Schedule,
    WeeklyWindow,
)

if TYPE_CHECKING:
    from rule_engine.service_layer.context import ConsumerContext


def rule_from_row(row: Any) -> Rule:
    return rule_from_mapping(row._mapping)


def rule_from_mapping(m: Mapping[str, Any]) -> Rule:
    """A rule from its table's columns (rule_id, position, condition, ... time_zone)."""
    product_filter = m["product_filter"] or {}
    return Rule(
        rule_id=m["rule_id"],
        position=m["position"],
        condition=Condition(**m["condition"]),
        action=Action.from_document(m["action"]),
        connection_ids=frozenset(m["connection_ids"]),
        skus=frozenset(m["skus"]),
        enabled=m["enabled"],
        product_filter=AttributeFilter(**{k: frozenset(v) for k, v in product_filter.items()}),
        schedule=Schedule(
            starts_at=m["starts_at"],
            ends_at=m["ends_at"],
            weekly_windows=tuple(
                WeeklyWindow(frozenset(w["days"]), time.fromisoformat(w["start"]), time.fromisoformat(w["end"]))
                for w in m["weekly_windows"]
            ),
            time_zone=m["time_zone"],
        ),
    )


async def load_rules(conn: AsyncConnection, merchant_id: uuid.UUID) -> list[Rule]:
    rows = (await conn.execute(sa.select(rules).where(rules.c.merchant_id == merchant_id))).all()
    return [rule_from_row(row) for row in rows]


async def connection_feeds(conn: AsyncConnection, merchant_id: uuid.UUID) -> dict[Feed, list[uuid.UUID]]:
    """The merchant's active connections grouped by feed, each group in connection id order."""
    rows = await conn.execute(
        sa.select(connections.c.connection_id, connections.c.locations, connections.c.per_location)
        .where(connections.c.merchant_id == merchant_id, connections.c.active.is_(True))
        .order_by(connections.c.connection_id)
    )
    feeds: dict[Feed, list[uuid.UUID]] = {}
    for row in rows:
        feeds.setdefault(Feed.of(row.locations, row.per_location), []).append(row.connection_id)
    return feeds


@dataclass(frozen=True)
class Scope:
    """The SKUs and connections a re-evaluation covers; None means all of the merchant's."""

    skus: frozenset[str] | None = None
    connection_ids: frozenset[uuid.UUID] | None = None


EVERYTHING = Scope()


def scope_of_rule_change(before: Rule | None, after: Rule | None) -> Scope:
    """What a rule change can touch: the union of both versions' SKU lists and channels.

    An attribute filter is not narrowed here: a product matching it can be anywhere in
    the catalogue, and evaluating in memory is cheaper than a query per attribute.
    """
    versions = [r for r in (before, after) if r is not None]
    skus = None if any(not r.skus for r in versions) else frozenset().union(*(r.skus for r in versions))
    channels = (
        None
        if any(not r.connection_ids for r in versions)
        else frozenset().union(*(r.connection_ids for r in versions))
    )
    return Scope(skus, channels)


@dataclass(frozen=True)
class QuantityChange:
    """One channel quantity that differs from what was last published (None: never published)."""

    connection_id: uuid.UUID
    sku: str
    view: FeedView
    current: int | None
    current_version: int
    decision: Decision

    @property
    def location(self) -> str:
        return self.view.location

    @property
    def available(self) -> int:
        return self.view.available


@dataclass(frozen=True)
class ChangeList:
    """The channel quantities in a scope that differ from what was last published.

    `changes` holds all of them or, when a limit was asked, one page: whole (sku,
    location) rows in that order, after the `after` row, at most `limit` changes (more
    only if a single row changes on more channels than that). `more` says whether
    changes follow the page; `next` is then its last row, the `after` of the next page.
    The totals always count every change.
    """

    changes: list[QuantityChange]
    channel_quantities_changed: int
    skus_changed: int
    more: bool = False
    next: tuple[str, str] | None = None


# Large re-evaluations hash-join the stock, product and published rows of a whole
# merchant. PostgreSQL's default 4 MB makes those joins spill to disk or fall back to an
# index lookup per row; a generic plan (chosen after a few runs of the same prepared
# statement) cannot see how many decisions are sent. Both only for that transaction.
_LARGE_SCOPE_SETTINGS = sa.text(
    "SELECT set_config('work_mem', '64MB', true), set_config('plan_cache_mode', 'force_custom_plan', true)"
)


_INPUT_TYPES: dict[str, type[sa.types.TypeEngine[Any]]] = {
    "available": sa.BigInteger,
    "brand": sa.Text,
    "category": sa.Text,
    "tags": sa.Text,  # PostgreSQL's own text of the array, as the first query gave it
    "named": sa.Text,
    "rate": sa.Numeric,
}


@functools.cache
def configured_estimation() -> Estimation:
    """The adaptive buffer's estimation settings, read once per process."""
    settings = RuleEngineSettings()
    return Estimation(settings.adaptive_rate_tau_s, settings.adaptive_default_delay_s)


def _sales_rate_per_hour(source: Any) -> Any:
    """The SKU's sales rate over its channels, decayed to `at`, in units per hour rounded
    like `domain.adaptive.rate_per_hour` (0 for a SKU that never sold)."""
    elapsed = sa.func.greatest(
        0.0, sa.extract("epoch", sa.bindparam("at", type_=sa.DateTime(timezone=True)) - sales_rates.c.at)
    )
    decayed = sales_rates.c.rate * sa.func.exp(-elapsed / sa.bindparam("tau", type_=sa.Float))
    total = (
        sa.select(sa.func.round(sa.cast(sa.func.sum(decayed) * 3600, sa.Numeric), 3))
        .where(sales_rates.c.merchant_id == source.c.merchant_id, sales_rates.c.sku == source.c.sku)
        .scalar_subquery()
    )
    return sa.func.coalesce(total, sa.cast(0, sa.Numeric))


def _in_scope(source: Any, scoped: bool) -> list[Any]:
    conditions = [source.c.merchant_id == sa.bindparam("merchant_id")]
    if scoped:
        conditions.append(source.c.sku == sa.any_(sa.bindparam("skus", type_=pg.ARRAY(sa.Text))))
    return conditions


def _inputs(source: Any, names: Sequence[str]) -> dict[str, Any]:
    """The columns a SKU's decisions depend on (see `Funnel`), over `source` (stock rows) and products.

    Every column is non-null so that PostgreSQL can hash-join on them: a missing
    attribute reads as "" (or no tags), which every filter treats like none.
    """
    every: dict[str, Any] = {
        "available": source.c.available,
        "brand": sa.func.coalesce(products.c.brand, ""),
        "category": sa.func.coalesce(products.c.category, ""),
        "tags": sa.func.coalesce(products.c.tags, sa.literal_column("'{}'::text[]")),
        # The SKU itself matters only when a rule lists it; "n" keeps it apart from "".
        "named": sa.case(
            (source.c.sku == sa.any_(sa.bindparam("named", type_=pg.ARRAY(sa.Text))), sa.literal("n") + source.c.sku),
            else_=sa.literal(""),
        ),
    }
    if "rate" in names:
        every["rate"] = _sales_rate_per_hour(source)
    return {name: every[name] for name in names}


def _with_products(source: Any, names: Sequence[str]) -> Any:
    if not {"brand", "category", "tags"} & set(names):
        return source
    return source.outerjoin(
        products, sa.and_(products.c.merchant_id == source.c.merchant_id, products.c.sku == source.c.sku)
    )


def _feed_rows(summed: bool, scoped: bool) -> Any:
    """The rows a feed's connections are evaluated on, shaped like the projection's: the
    set-based mirror of `domain.feeds.feed_views`, for every SKU in scope at once.

    Summed: one row per SKU that has any stock row, at the default location, with the
    sum of the feed locations' available (0 when none of them has a row: a channel fed
    only from B is shown 0, never A's stock) and the sum of their versions. Available
    and versions agree with `feed_views` (tests/integration/test_rule_engine_stock_batch.py);
    the causation does not (the max stands in for the newest movement's, which would
    cost a sort per SKU): a re-evaluation always announces its trigger as the cause.
    """
    in_feed = stock.c.location == sa.any_(sa.bindparam("feed_locations", type_=pg.ARRAY(sa.Text)))
    if not summed:
        return sa.select(stock).where(*_in_scope(stock, scoped), in_feed).subquery("feed")
    return (
        sa.select(
            stock.c.merchant_id,
            stock.c.sku,
            sa.literal(DEFAULT_LOCATION, sa.Text).label("location"),
            sa.cast(sa.func.coalesce(sa.func.sum(stock.c.available).filter(in_feed), 0), sa.BigInteger).label(
                "available"
            ),
            sa.cast(sa.func.coalesce(sa.func.sum(stock.c.version).filter(in_feed), 0), sa.BigInteger).label("version"),
            sa.func.max(stock.c.causation_id).label("causation_id"),
            sa.func.max(stock.c.origin_received_at).label("origin_received_at"),
        )
        .where(*_in_scope(stock, scoped))
        .group_by(stock.c.merchant_id, stock.c.sku)
        .subquery("feed")
    )


@functools.lru_cache(maxsize=256)
def _queries(names: tuple[str, ...], connections: int, scoped: bool, summed: bool, limited: bool) -> tuple[Any, Any]:
    """The two queries of `changed_quantities` for one shape, built once; every value is bound at execution."""
    feed = _feed_rows(summed, scoped)
    inputs = _inputs(feed, names)
    columns = [expr.label(name) for name, expr in inputs.items()]
    if "tags" in inputs:
        columns.append(sa.cast(inputs["tags"], sa.Text).label("tags_text"))
    distinct_inputs = sa.select(*columns).distinct().select_from(_with_products(feed, names))

    inputs = _inputs(feed, names)
    published = [channel_quantities.alias(f"published_{j}") for j in range(connections)]
    source = _with_products(feed, names)
    for j, cq in enumerate(published):
        source = source.outerjoin(
            cq,
            sa.and_(
                cq.c.connection_id == sa.bindparam(f"connection_{j}", type_=pg.UUID(as_uuid=True)),
                cq.c.sku == feed.c.sku,
                cq.c.location == feed.c.location,
            ),
        )
    keyed = (
        sa.select(
            feed.c.sku,
            feed.c.location,
            feed.c.version.label("stock_version"),
            feed.c.causation_id,
            feed.c.origin_received_at,
            *(expr.label(name) for name, expr in inputs.items()),
            *(cq.c.quantity.label(f"current_{j}") for j, cq in enumerate(published)),
            *(cq.c.version.label(f"version_{j}") for j, cq in enumerate(published)),
        )
        .select_from(source)
        # A fence: the planner joins the merchant's rows first, then the few decisions.
        .offset(0)
        .subquery("keyed")
    )
    arrays = {name: pg.ARRAY(_INPUT_TYPES[name]) for name in names}
    arrays["input_id"] = pg.ARRAY(sa.Integer)
    arrays.update({f"decided_{j}": pg.ARRAY(sa.BigInteger) for j in range(connections)})
    decisions = (
        sa.func.unnest(*(sa.bindparam(f"decisions_{name}", type_=t) for name, t in arrays.items()))
        .table_valued(*arrays)
        .render_derived(name="decisions")
    )
    same_input = [
        keyed.c[name] == (sa.cast(decisions.c[name], pg.ARRAY(sa.Text)) if name == "tags" else decisions.c[name])
        for name in names
    ]
    differs = [keyed.c[f"current_{j}"].is_distinct_from(decisions.c[f"decided_{j}"]) for j in range(connections)]
    changed = (
        sa.select(keyed, decisions.c.input_id)
        .select_from(keyed.outerjoin(decisions, sa.and_(*same_input)))
        .where(sa.or_(decisions.c.input_id.is_(None), *differs))
    )
    if not limited:
        return distinct_inputs, changed.order_by(keyed.c.sku, keyed.c.location)
    # One page and the totals over every changed row: one row of totals, joined to the
    # page (none when the page is empty).
    changed_rows = changed.add_columns(
        functools.reduce(operator.add, (sa.cast(d, sa.Integer) for d in differs)).label("pairs")
    ).cte("changed")
    totals = (
        sa.select(sa.func.count().label("rows_changed"), sa.func.sum(changed_rows.c.pairs).label("pairs_changed"))
        .select_from(changed_rows)
        .subquery("totals")
    )
    page = (
        sa.select(changed_rows)
        .where(
            sa.or_(
                sa.bindparam("first_page", type_=sa.Boolean),
                sa.tuple_(changed_rows.c.sku, changed_rows.c.location)
                > sa.tuple_(sa.bindparam("after_sku", type_=sa.Text), sa.bindparam("after_location", type_=sa.Text)),
            )
        )
        .order_by(changed_rows.c.sku, changed_rows.c.location)
        .limit(sa.bindparam("limit", type_=sa.Integer))
        .lateral("page")
    )
    paged = sa.select(totals, page).select_from(totals.outerjoin(page, sa.true())).order_by(page.c.sku, page.c.location)
    return distinct_inputs, paged


def _decisions_for(
    funnel: Funnel, targets: Sequence[uuid.UUID], row: Any, exposure: Exposure | None = None
) -> tuple[Decision, ...]:
    m = row._mapping
    product = ProductAttributes.of(m.get("brand"), m.get("category"), m.get("tags") or ())
    named = m.get("named")
    if exposure is not None:
        rate = float(m["rate"]) / 3600
        exposure = Exposure.of_total(rate, exposure.delays, exposure.default_delay_s)
        return funnel.decisions(targets, m["available"], product, named[1:] if named else None, exposure)
    return funnel.decisions(targets, m["available"], product, named[1:] if named else None)


async def measured_delays(conn: AsyncConnection, merchant_id: uuid.UUID) -> dict[object, float]:
    """The p95 display delay of each of the merchant's connections that has one measured."""
    rows = await conn.execute(
        sa.select(connection_delays.c.connection_id, connection_delays.c.p95_s).where(
            connection_delays.c.merchant_id == merchant_id
        )
    )
    return {connection_id: p95 for connection_id, p95 in rows.all()}


async def changed_quantities(
    conn: AsyncConnection,
    merchant_id: uuid.UUID,
    funnel: Funnel,
    scope: Scope,
    *,
    lock_stock: bool,
    limit: int | None = None,
    after: tuple[str, str] | None = None,
    at: datetime | None = None,
    estimation: Estimation | None = None,
) -> ChangeList:
    """The channel quantities in `scope` whose decision differs from the last published one.

    Three steps, so that neither the rows nor the evaluation grow with the SKU count:
    PostgreSQL lists the distinct evaluation inputs in scope (a few hundred for
    100,000 SKUs; with `lock_stock`, it locks the stock rows in (sku, location) order
    first); the funnel decides once per input and connection, in Python; then
    PostgreSQL joins every stock row to its input's decisions and to its published
    quantities and returns only the rows where one differs, with the totals.

    The two queries must see the same rows: a preview runs them in one snapshot
    (repeatable read). A re-evaluation has locked the stock rows, but a SKU's
    attributes can still change in between; a row whose input the first query did not
    see comes back undecided and is evaluated on its own.
    """
    feeds = await connection_feeds(conn, merchant_id)
    if scope.connection_ids is not None:
        feeds = {f: [c for c in ids if c in scope.connection_ids] for f, ids in feeds.items()}
    feeds = {f: ids for f, ids in feeds.items() if ids}
    if not feeds:
        return ChangeList([], 0, 0)
    if lock_stock:
        await quantity_store.lock_stock(await driver_connection(conn), merchant_id, scope.skus)
    adaptive: tuple[Exposure, dict[str, Any]] | None = None
    if funnel.is_adaptive:
        # A SKU's decisions then also depend on its sales rate, and on the connections'
        # delays: read once, for every feed, at one moment.
        estimation = estimation or configured_estimation()
        exposure = Exposure({}, await measured_delays(conn, merchant_id), estimation.default_delay_s)
        adaptive = (exposure, {"at": at or utcnow(), "tau": estimation.tau_s})
    found = [
        await _feed_changes(
            conn, merchant_id, funnel, scope, feed, targets, limit=limit, after=after, adaptive=adaptive
        )
        for feed, targets in feeds.items()
    ]
    if len(found) == 1:
        return found[0]
    return _merged(found, limit)


def _merged(found: Sequence[ChangeList], limit: int | None) -> ChangeList:
    """The changes of several feeds as one list in (sku, location) order.

    With a limit, each feed's page ends at its own `next`; the merged page stops at the
    first of those (a row past it may have changes on the next page of that feed), then
    at whole rows up to the limit. A row is a SKU at a location whatever the feed. The
    totals add up the feeds': a SKU that changes in two feeds counts in each.
    """
    rows: dict[tuple[str, str], list[QuantityChange]] = {}
    for feed_changes in found:
        for change in feed_changes.changes:
            rows.setdefault((change.sku, change.location), []).append(change)
    bounds = [f.next for f in found if f.more and f.next is not None]
    bound = min(bounds) if bounds else None
    changes: list[QuantityChange] = []
    more = any(f.more for f in found)
    last: tuple[str, str] | None = None
    for key in sorted(rows):
        if bound is not None and key > bound:
            break
        row = sorted(rows[key], key=lambda c: str(c.connection_id))
        if limit is not None and len(changes) + len(row) > limit and (changes or limit == 0):
            more = True
            break
        changes.extend(row)
        last = key
    if last is not None and last != max(rows):
        more = True
    return ChangeList(
        changes,
        sum(f.channel_quantities_changed for f in found),
        sum(f.skus_changed for f in found),
        more,
        last if more else None,
    )


async def _feed_changes(
    conn: AsyncConnection,
    merchant_id: uuid.UUID,
    funnel: Funnel,
    scope: Scope,
    feed: Feed,
    targets: Sequence[uuid.UUID],
    *,
    limit: int | None,
    after: tuple[str, str] | None,
    adaptive: tuple[Exposure, dict[str, Any]] | None,
) -> ChangeList:
    """`changed_quantities` for the connections of one feed; `adaptive`: the delays and the
    rates' parameters when the merchant has an adaptive rule."""
    named = funnel.named_skus if scope.skus is None else funnel.named_skus & scope.skus
    names = (
        "available",
        *(a for a in ("brand", "category", "tags") if a in funnel.filtered_attributes),
        *(("named",) if named else ()),
        *(("rate",) if funnel.is_adaptive else ()),
    )
    find_inputs, find_changes = _queries(
        names, len(targets), scope.skus is not None, not feed.per_location, limit is not None
    )
    params: dict[str, Any] = {
        "merchant_id": merchant_id,
        "named": sorted(named),
        "feed_locations": list(feed.locations),
    }
    exposure: Exposure | None = None
    if adaptive is not None:
        exposure, rate_params = adaptive
        params.update(rate_params)
    if scope.skus is not None:
        params["skus"] = sorted(scope.skus)
    else:
        await conn.execute(_LARGE_SCOPE_SETTINGS)
    distinct_inputs = (await conn.execute(find_inputs, params)).all()
    if not distinct_inputs:
        return ChangeList([], 0, 0)
    decided = [_decisions_for(funnel, targets, row, exposure) for row in distinct_inputs]

    for name in names:
        params[f"decisions_{name}"] = [r._mapping["tags_text" if name == "tags" else name] for r in distinct_inputs]
    params["decisions_input_id"] = list(range(len(decided)))
    for j, target in enumerate(targets):
        params[f"connection_{j}"] = target
        params[f"decisions_decided_{j}"] = [d[j].quantity for d in decided]
    if limit is not None:
        # One row more than can be listed tells whether more follow.
        params.update(limit=limit + 1, first_page=after is None, after_sku="", after_location="")
        if after is not None:
            params.update(after_sku=after[0], after_location=after[1])
    rows = (await conn.execute(find_changes, params)).all()

    changes: list[QuantityChange] = []
    skus_changed = 0
    last: tuple[str, str] | None = None
    more = False
    for row in rows:
        m = row._mapping
        if m["sku"] is None:
            break  # a page after the last change: only the totals
        input_id = m["input_id"]
        row_decisions = decided[input_id] if input_id is not None else _decisions_for(funnel, targets, row, exposure)
        view = FeedView(m["location"], m["available"], m["stock_version"], m["causation_id"], m["origin_received_at"])
        row_changes = [
            QuantityChange(target, m["sku"], view, m[f"current_{j}"], m[f"version_{j}"] or 0, decision)
            for j, (target, decision) in enumerate(zip(targets, row_decisions, strict=True))
            if m[f"current_{j}"] != decision.quantity
        ]
        if not row_changes:
            continue
        if limit is not None and len(changes) + len(row_changes) > limit and (changes or limit == 0):
            more = True  # this row starts the next page
            break
        changes.extend(row_changes)
        skus_changed += 1
        last = (m["sku"], m["location"])
    if limit is None:
        return ChangeList(changes, len(changes), skus_changed)
    totals = rows[0]._mapping
    return ChangeList(
        changes, int(totals["pairs_changed"] or 0), int(totals["rows_changed"]), more, last if more else None
    )


async def reevaluate(
    uow: UnitOfWork,
    merchant_id: uuid.UUID,
    scope: Scope = EVERYTHING,
    *,
    causation_id: str,
    at: datetime | None = None,
) -> list[ChannelQuantityChanged]:
    """Recompute the channel quantities in `scope` as of `at` (now); emit those that
    changed, caused by the trigger `causation_id` names, in the unit of work `uow` (one
    of `UnitOfWorkFactory.begin`)."""
    at = at or utcnow()
    # Before any read: the stock batches of the merchant committed before it are seen, and
    # none reads the rules or connections until this commits (adapters/quantity_store.py).
    await quantity_store.lock_evaluation(uow.connection, merchant_id)
    funnel = Funnel(await load_rules(uow.sqlalchemy, merchant_id), at)
    found = await changed_quantities(uow.sqlalchemy, merchant_id, funnel, scope, lock_stock=True, at=at)
    emitted = [
        quantity_changed(merchant_id, c.connection_id, c.sku, c.view, c.decision, c.current_version, causation_id)
        for c in found.changes
    ]
    await quantity_store.publish(uow, emitted)
    return emitted


def _newest_attributes(changes: Sequence[ProductAttributesChanged]) -> list[ProductAttributesChanged]:
    newest: dict[tuple[uuid.UUID, str], ProductAttributesChanged] = {}
    for change in changes:
        key = (change.merchant_id, change.sku)
        if key not in newest or change.version > newest[key].version:
            newest[key] = change
    return list(newest.values())


async def apply_product_attributes(changes: Sequence[ProductAttributesChanged], context: ConsumerContext) -> int:
    """Project catalogue attributes; a SKU whose attributes changed is re-evaluated at once."""
    emitted = 0
    async with context.units.begin() as uow:
        updated = await quantity_store.project_products(
            uow.connection,
            CATALOGUE.name,
            list(dict.fromkeys(c.event_id for c in changes)),
            _newest_attributes(changes),
        )
        described: dict[uuid.UUID, set[str]] = defaultdict(set)
        for merchant_id, sku in updated:
            described[merchant_id].add(sku)
        for merchant_id, skus in sorted(described.items(), key=lambda d: str(d[0])):
            emitted += len(
                await reevaluate(
                    uow, merchant_id, Scope(skus=frozenset(skus)), causation_id=f"catalogue:{sorted(skus)[0]}"
                )
            )
    return emitted


async def apply_connection_changes(changes: Sequence[ConnectionChanged], context: ConsumerContext) -> int:
    """Project connections; a new or changed active one is sent every SKU's quantity at once."""
    emitted = 0
    async with context.units.begin() as uow:
        for change in changes:
            if not await quantity_store.project_connection(uow.connection, CONNECTIONS.name, change):
                continue
            if change.active:
                # A new channel gets the current quantity of every SKU at once.
                emitted += len(
                    await reevaluate(
                        uow,
                        change.merchant_id,
                        Scope(connection_ids=frozenset({change.connection_id})),
                        causation_id=f"connection:{change.connection_id}",
                    )
                )
                emitted += len(await _zero_dropped_locations(uow, change.merchant_id, change.connection_id))
    return emitted


async def _zero_dropped_locations(
    uow: UnitOfWork, merchant_id: uuid.UUID, connection_id: uuid.UUID
) -> list[ChannelQuantityChanged]:
    """A per-location channel no longer selling from a location is sent 0 there: what it
    was shown last would otherwise stay on sale. (A summed channel's quantity, at the
    default location, is re-evaluated like any other.) Runs after `reevaluate`, which
    locked the merchant's stock rows: no stock batch writes these rows meanwhile."""
    causation_id = f"connection:{connection_id}:location-dropped"
    events = [
        quantity_changed(
            merchant_id,
            connection_id,
            d["sku"],
            FeedView(d["location"], 0, d["stock_version"], causation_id, None),
            Decision(0),
            d["version"],
            causation_id,
        )
        for d in await quantity_store.lock_dropped_locations(uow.connection, connection_id)
    ]
    await quantity_store.publish(uow, events)
    return events
