"""Grouped evaluation against the definition: every SKU through the funnel, one at a time.

`changed_quantities` lets PostgreSQL group the SKUs by evaluation input, decides once
per input and lets PostgreSQL compare with the published quantities. Hypothesis builds
random merchants (SKUs in several locations, catalogue attributes in any case or
missing, quantities published or not, for some channels) and random rules (SKU lists,
attribute filters, channel scopes, disabled rules); the change list, its totals, a
preview's first page and what saving emits must all equal a plain loop over every SKU
and channel.

Locations: the first channel holds a quantity per location (Shopify), the second is
shown the sum of both locations at the default location; the definition says so too.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from rule_engine.adapters.tables import channel_quantities, products, stock
from rule_engine.domain.rules import (
    NO_ATTRIBUTES,
    Action,
    AttributeFilter,
    Condition,
    Funnel,
    ProductAttributes,
    Rule,
)
from rule_engine.service_layer.evaluation import EVERYTHING, Scope, changed_quantities, reevaluate
from tests.integration.rule_engine_helpers import add_connection, add_rule, rule_engine_units

pytestmark = pytest.mark.integration

SKUS = ["A", "B", "C", "D", "E", "F"]
CHANNELS = [uuid.UUID(int=1), uuid.UUID(int=2), uuid.UUID(int=3)]  # the third is inactive
LOCATIONS = ["default", "north"]
PER_LOCATION = CHANNELS[0]  # the others are shown the sum of LOCATIONS


@dataclass(frozen=True)
class Item:
    sku: str
    location: str
    available: int


@dataclass(frozen=True)
class Merchant:
    items: list[Item]
    attributes: dict[str, tuple[str | None, str | None, list[str]]]
    published: dict[tuple[uuid.UUID, str, str], int]


merchants = st.builds(
    lambda items, attributes, published: Merchant(
        list({(i.sku, i.location): i for i in items}.values()),
        attributes,
        {k: q for k, q in published.items() if any((i.sku, i.location) == k[1:] for i in items)},
    ),
    st.lists(
        st.builds(Item, st.sampled_from(SKUS), st.sampled_from(["default", "north"]), st.integers(-2, 12)),
        min_size=3,
        max_size=12,
    ),
    st.dictionaries(
        st.sampled_from(SKUS),
        st.tuples(
            st.sampled_from([None, "", "Bosch", "BOSCH", "Makita"]),
            st.sampled_from([None, "Tools", "garden"]),
            st.lists(st.sampled_from(["clearance", "Pro", "a,b", "NULL"]), max_size=2, unique=True),
        ),
    ),
    st.dictionaries(
        st.tuples(st.sampled_from(CHANNELS), st.sampled_from(SKUS), st.sampled_from(["default", "north"])),
        st.integers(0, 12),
    ),
)

# Stored casefolded, as the API stores them; "a,b" and "null" test the array text round trip.
FILTERS = [
    AttributeFilter(),
    AttributeFilter(),
    AttributeFilter(brands=frozenset({"bosch"})),
    AttributeFilter(exclude_brands=frozenset({"makita"})),
    AttributeFilter(categories=frozenset({"tools"})),
    AttributeFilter(exclude_categories=frozenset({"garden"})),
    AttributeFilter(tags=frozenset({"pro", "a,b"})),
    AttributeFilter(exclude_tags=frozenset({"clearance", "null"})),
    AttributeFilter(brands=frozenset({"bosch"}), exclude_tags=frozenset({"clearance"})),
]

rules = st.lists(
    st.builds(
        lambda op, value, action, amount, position, channel, skus, product_filter, on: Rule(
            uuid.uuid4(),
            position,
            Condition(op, value, value + 4),
            Action(action, amount),
            connection_ids=frozenset({channel}) if channel else frozenset(),
            skus=frozenset(skus),
            enabled=on,
            product_filter=product_filter,
        ),
        st.sampled_from(["always", "always", "<=", "<", ">=", ">", "==", "between"]),
        st.integers(0, 8),
        st.sampled_from(["set", "subtract", "cap", "percent", "allocate"]),
        st.integers(0, 9),
        st.integers(0, 3),
        st.sampled_from([None, None, CHANNELS[0], CHANNELS[1]]),
        st.lists(st.sampled_from(SKUS), max_size=3),
        st.sampled_from(FILTERS),
        st.sampled_from([True, True, True, False]),
    ),
    min_size=1,
    max_size=4,
)


def one_at_a_time(funnel: Funnel, merchant: Merchant, scope: Scope) -> list[tuple[Any, ...]]:
    """The definition: every SKU in scope, every active channel, each shown its feed."""
    expected = []
    for item in sorted(merchant.items, key=lambda i: (i.sku, i.location)):
        if scope.skus is not None and item.sku not in scope.skus:
            continue
        found = merchant.attributes.get(item.sku)
        product = ProductAttributes.of(*found) if found else NO_ATTRIBUTES
        total = sum(i.available for i in merchant.items if i.sku == item.sku)
        first_row = min(i.location for i in merchant.items if i.sku == item.sku) == item.location
        for channel in CHANNELS[:2]:
            if channel == PER_LOCATION:
                location, available = item.location, item.available
            elif first_row:  # the summed feed: one row per SKU, at the default location
                location, available = "default", total
            else:
                continue
            decision = funnel.decide(channel, item.sku, available, product)
            current = merchant.published.get((channel, item.sku, location))
            if current != decision.quantity:
                expected.append((channel, item.sku, location, available, current, decision))
    return expected


async def fill(engine: AsyncEngine, merchant_id: uuid.UUID, merchant: Merchant) -> None:
    async with engine.begin() as conn:
        for c in CHANNELS:
            await add_connection(
                conn,
                merchant_id,
                uuid.uuid5(merchant_id, str(c)),
                active=c != CHANNELS[2],
                locations=LOCATIONS,
                per_location=c == PER_LOCATION,
            )
        await conn.execute(
            sa.insert(stock),
            [
                {
                    "merchant_id": merchant_id,
                    "sku": i.sku,
                    "location": i.location,
                    "available": i.available,
                    "version": 3,
                    "causation_id": f"snapshot:{i.sku}",
                }
                for i in merchant.items
            ],
        )
        if merchant.attributes:
            await conn.execute(
                sa.insert(products),
                [
                    {"merchant_id": merchant_id, "sku": s, "brand": b, "category": c, "tags": t, "version": 1}
                    for s, (b, c, t) in merchant.attributes.items()
                ],
            )
        if merchant.published:
            await conn.execute(
                sa.insert(channel_quantities),
                [
                    {
                        "connection_id": uuid.uuid5(merchant_id, str(c)),
                        "sku": s,
                        "location": loc,
                        "merchant_id": merchant_id,
                        "quantity": q,
                        "version": 5,
                        "stock_version": 1,
                        "rule_ids": [],
                    }
                    for (c, s, loc), q in merchant.published.items()
                ],
            )


def in_merchant(merchant_id: uuid.UUID, rule: Rule) -> Rule:
    """The rule with its channels renamed to the merchant's connection ids."""
    return Rule(
        rule.rule_id,
        rule.position,
        rule.condition,
        rule.action,
        connection_ids=frozenset(uuid.uuid5(merchant_id, str(c)) for c in rule.connection_ids),
        skus=rule.skus,
        enabled=rule.enabled,
        product_filter=rule.product_filter,
    )


async def check(engine: AsyncEngine, merchant: Merchant, rule_list: list[Rule], scope_skus: list[str] | None) -> None:
    merchant_id = uuid.uuid4()
    await fill(engine, merchant_id, merchant)
    funnel = Funnel([in_merchant(merchant_id, r) for r in rule_list], None)
    scope = EVERYTHING if scope_skus is None else Scope(skus=frozenset(scope_skus))
    expected = sorted(
        (
            (uuid.uuid5(merchant_id, str(c)), sku, location, available, current, decision)
            for c, sku, location, available, current, decision in one_at_a_time(
                Funnel(rule_list, None), merchant, scope
            )
        ),
        # The change list orders a SKU's channels by connection id.
        key=lambda e: (e[1], e[2], e[0]),
    )

    async with engine.begin() as conn:
        found = await changed_quantities(conn, merchant_id, funnel, scope, lock_stock=True)
    assert [(c.connection_id, c.sku, c.location, c.available, c.current, c.decision) for c in found.changes] == expected
    assert found.channel_quantities_changed == len(expected)
    # Rows per feed: each feed here has one channel, so one change per row.
    assert found.skus_changed == len(expected)
    assert all(c.current_version == (5 if c.current is not None else 0) for c in found.changes)
    rows_of = {sku: sum(1 for i in merchant.items if i.sku == sku) for sku in SKUS}
    per_location = uuid.uuid5(merchant_id, str(PER_LOCATION))
    # A summed feed's version is the sum of its rows' (each 3 here): it grows with any of them.
    assert all(
        (c.view.stock_version, c.view.causation_id)
        == (3 if c.connection_id == per_location else 3 * rows_of[c.sku], f"snapshot:{c.sku}")
        for c in found.changes
    )

    for limit in (0, 1, 3):
        pages, after, more = [], None, True
        while more:
            async with engine.connect() as conn:
                await conn.execution_options(isolation_level="REPEATABLE READ")
                page = await changed_quantities(
                    conn, merchant_id, funnel, scope, lock_stock=False, limit=limit, after=after
                )
            assert (page.channel_quantities_changed, page.skus_changed) == (
                found.channel_quantities_changed,
                found.skus_changed,
            )
            if limit == 0:
                assert (page.changes, page.more, page.next) == ([], bool(expected), None)
                break
            rows = {(c.sku, c.location) for c in page.changes}
            # Whole rows, at most `limit` changes unless one row alone has more.
            assert len(page.changes) <= limit or len(rows) == 1
            assert page.more == (page.next is not None)
            if page.more:
                assert page.next == (page.changes[-1].sku, page.changes[-1].location)
            pages.extend(page.changes)
            after, more = page.next, page.more
        if limit:
            assert pages == found.changes


@given(merchants, rules, st.one_of(st.none(), st.lists(st.sampled_from(SKUS), max_size=3)))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_grouped_evaluation_equals_evaluating_every_sku_on_its_own(
    database_url: str, merchant: Merchant, rule_list: list[Rule], scope_skus: list[str] | None
) -> None:
    async def run() -> None:
        engine = create_async_engine(database_url, poolclass=NullPool)
        try:
            await check(engine, merchant, rule_list, scope_skus)
        finally:
            await engine.dispose()

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(run())
    finally:
        loop.close()


async def test_saving_emits_what_the_grouped_evaluation_listed(database_url: str) -> None:
    """reevaluate (what saving runs) emits one event per listed change, and then nothing is left."""
    engine = create_async_engine(database_url, poolclass=NullPool)
    merchant_id = uuid.uuid4()
    merchant = Merchant(
        [Item(s, "default", n) for n, s in enumerate(SKUS)],
        {"A": ("Bosch", None, []), "B": ("bosch", None, ["Pro"]), "C": (None, None, ["pro"])},
        {(CHANNELS[0], s, "default"): n for n, s in enumerate(SKUS)},
    )
    await fill(engine, merchant_id, merchant)
    buffer = Rule(
        uuid.uuid4(),
        1,
        Condition("<=", 3),
        Action("set", 0),
        product_filter=AttributeFilter(brands=frozenset({"bosch"})),
    )
    units = rule_engine_units(engine)
    try:
        async with engine.begin() as conn:
            await add_rule(
                conn,
                merchant_id,
                1,
                rule_id=buffer.rule_id,
                condition={"op": "<=", "value": 3, "upper": None},
                action={"type": "set", "value": 0},
                product_filter={"brands": ["bosch"]},
            )
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="REPEATABLE READ")
            listed = await changed_quantities(
                conn, merchant_id, Funnel([buffer], None), EVERYTHING, lock_stock=False, limit=100
            )
        async with units.begin() as uow:
            emitted = await reevaluate(uow, merchant_id, causation_id="test")
        assert [(e.connection_id, e.sku, e.quantity, e.rule_ids) for e in emitted] == [
            (c.connection_id, c.sku, c.decision.quantity, c.decision.rule_ids) for c in listed.changes
        ]
        # A and B (Bosch, 0 and 1 available) go to 0 on the first channel; the second channel
        # had nothing published, so every SKU is new there.
        first = uuid.uuid5(merchant_id, str(CHANNELS[0]))
        assert {e.sku: e.quantity for e in emitted if e.connection_id == first} == {"B": 0}
        assert [e.version for e in emitted if e.connection_id == first] == [6]
        async with units.begin() as uow:
            assert await reevaluate(uow, merchant_id, causation_id="test") == []
    finally:
        await engine.dispose()
