"""Rule evaluation, pure: conditions, actions, scopes and the funnel."""

import uuid
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rule_engine.domain.rules import (
    NO_ATTRIBUTES,
    WEEKDAYS,
    Action,
    AttributeFilter,
    Condition,
    Funnel,
    ProductAttributes,
    Rule,
    Schedule,
    WeeklyWindow,
    channel_quantity,
)

C1, C2 = uuid.uuid4(), uuid.uuid4()


def rule(
    op: str,
    value: int | None,
    action: str,
    amount: int,
    *,
    position: int = 0,
    upper: int | None = None,
    channels: frozenset[uuid.UUID] = frozenset(),
    skus: frozenset[str] = frozenset(),
) -> Rule:
    return Rule(
        uuid.uuid4(),
        position,
        Condition(op, value, upper),  # type: ignore[arg-type]
        Action(action, amount),  # type: ignore[arg-type]
        connection_ids=channels,
        skus=skus,
    )


def test_seed_example_publishes_5_then_4_then_0_on_the_buffered_channel() -> None:
    buffer = rule("<=", 3, "set", 0, channels=frozenset({C2}))
    assert [channel_quantity([buffer], C2, "A", q).quantity for q in (5, 4, 3)] == [5, 4, 0]
    assert [channel_quantity([buffer], C1, "A", q).quantity for q in (5, 4, 3)] == [5, 4, 3]


@pytest.mark.parametrize(
    ("op", "value", "upper", "quantity", "holds"),
    [
        ("<=", 3, None, 3, True),
        ("<=", 3, None, 4, False),
        ("<", 3, None, 3, False),
        (">=", 3, None, 3, True),
        (">", 3, None, 3, False),
        ("==", 3, None, 3, True),
        ("==", 3, None, 2, False),
        ("between", 2, 4, 4, True),
        ("between", 2, 4, 5, False),
        ("always", None, None, -7, True),
    ],
)
def test_condition(op: str, value: int | None, upper: int | None, quantity: int, holds: bool) -> None:
    assert Condition(op, value, upper).holds(quantity) is holds  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("action", "amount", "available", "expected"),
    [
        ("set", 0, 10, 0),
        ("subtract", 2, 10, 8),
        ("subtract", 20, 10, 0),
        ("cap", 5, 10, 5),
        ("cap", 50, 10, 10),
        ("percent", 50, 7, 3),
        ("percent", 100, 7, 7),
        ("allocate", 12, 3, 12),
    ],
)
def test_action(action: str, amount: int, available: int, expected: int) -> None:
    assert channel_quantity([rule("always", None, action, amount)], C1, "A", available).quantity == expected


def test_funnel_applies_rules_in_position_order_on_the_running_quantity() -> None:
    subtract_then_cap = [rule("always", None, "cap", 5, position=2), rule("always", None, "subtract", 3, position=1)]
    # 10 - 3 = 7, capped at 5.
    decision = channel_quantity(subtract_then_cap, C1, "A", 10)
    assert decision.quantity == 5
    assert decision.rule_ids == (subtract_then_cap[1].rule_id, subtract_then_cap[0].rule_id)


def test_sku_scope_limits_a_rule_to_its_products() -> None:
    only_b = rule("always", None, "set", 0, skus=frozenset({"B"}))
    assert channel_quantity([only_b], C1, "A", 4).quantity == 4
    assert channel_quantity([only_b], C1, "B", 4).quantity == 0


def test_disabled_rule_does_nothing() -> None:
    disabled = Rule(uuid.uuid4(), 0, Condition("always"), Action("set", 0), enabled=False)
    assert channel_quantity([disabled], C1, "A", 4).quantity == 4


rules_strategy = st.lists(
    st.builds(
        lambda op, v, act, amount, pos: rule(op, v, act, amount, position=pos, upper=v + 3),
        st.sampled_from(["<=", "<", ">=", ">", "==", "between", "always"]),
        st.integers(0, 50),
        st.sampled_from(["set", "subtract", "cap", "percent"]),
        st.integers(0, 100),
        st.integers(0, 5),
    ),
    max_size=5,
)


@given(rules_strategy, st.integers(-5, 500))
def test_result_is_an_integer_between_zero_and_available(rules: list[Rule], available: int) -> None:
    # "set" may publish more than available only if the merchant asks for it; bound it here.
    rules = [
        r
        if r.action.type != "set"
        else Rule(r.rule_id, r.position, r.condition, Action("set", min(r.action.value, max(available, 0))))
        for r in rules
    ]
    quantity = channel_quantity(rules, C1, "A", available).quantity
    assert isinstance(quantity, int)
    assert 0 <= quantity <= max(available, 0)


# --- Product scope on catalogue attributes -------------------------------------------------

BOSCH_DRILL = ProductAttributes.of("Bosch", "Tools", ["Clearance", "pro"])
MAKITA_SAW = ProductAttributes.of("Makita", "tools", ["pro"])


@pytest.mark.parametrize(
    ("product_filter", "product", "matches"),
    [
        (AttributeFilter(brands=frozenset({"bosch"})), BOSCH_DRILL, True),
        (AttributeFilter(brands=frozenset({"bosch"})), MAKITA_SAW, False),
        (AttributeFilter(exclude_brands=frozenset({"bosch"})), BOSCH_DRILL, False),
        (AttributeFilter(exclude_brands=frozenset({"bosch"})), NO_ATTRIBUTES, True),
        (AttributeFilter(categories=frozenset({"tools"})), MAKITA_SAW, True),
        (AttributeFilter(categories=frozenset({"tools"})), NO_ATTRIBUTES, False),
        (AttributeFilter(exclude_categories=frozenset({"tools"})), BOSCH_DRILL, False),
        (AttributeFilter(tags=frozenset({"clearance", "outlet"})), BOSCH_DRILL, True),
        (AttributeFilter(tags=frozenset({"clearance"})), MAKITA_SAW, False),
        (AttributeFilter(exclude_tags=frozenset({"clearance"})), BOSCH_DRILL, False),
        (AttributeFilter(exclude_tags=frozenset({"clearance"})), MAKITA_SAW, True),
        (AttributeFilter(tags=frozenset({"pro"}), exclude_brands=frozenset({"makita"})), BOSCH_DRILL, True),
        (AttributeFilter(tags=frozenset({"pro"}), exclude_brands=frozenset({"makita"})), MAKITA_SAW, False),
    ],
)
def test_attribute_filter_includes_and_excludes_case_insensitively(
    product_filter: AttributeFilter, product: ProductAttributes, matches: bool
) -> None:
    assert product_filter.matches(product) is matches


def test_brand_scoped_rule_follows_the_products_brand() -> None:
    bosch_only = Rule(
        uuid.uuid4(),
        0,
        Condition("always"),
        Action("set", 0),
        product_filter=AttributeFilter(brands=frozenset({"bosch"})),
    )
    assert channel_quantity([bosch_only], C1, "A", 7, BOSCH_DRILL).quantity == 0
    assert channel_quantity([bosch_only], C1, "A", 7, MAKITA_SAW).quantity == 7


def test_sku_list_and_attribute_filter_must_both_match() -> None:
    both = Rule(
        uuid.uuid4(),
        0,
        Condition("always"),
        Action("set", 0),
        skus=frozenset({"A"}),
        product_filter=AttributeFilter(brands=frozenset({"bosch"})),
    )
    assert channel_quantity([both], C1, "A", 7, BOSCH_DRILL).quantity == 0
    assert channel_quantity([both], C1, "B", 7, BOSCH_DRILL).quantity == 7
    assert channel_quantity([both], C1, "A", 7, MAKITA_SAW).quantity == 7


def test_channel_scope_with_several_channels() -> None:
    c3 = uuid.uuid4()
    two = rule("always", None, "cap", 2, channels=frozenset({C1, C2}))
    assert [channel_quantity([two], c, "A", 9).quantity for c in (C1, C2, c3)] == [2, 2, 9]


# --- Periods and weekly windows ------------------------------------------------------------

PARIS = "Europe/Paris"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_period_is_in_force_from_its_start_until_just_before_its_end() -> None:
    period = Schedule(starts_at=at("2026-12-01T00:00:00+00:00"), ends_at=at("2026-12-02T00:00:00+00:00"))
    assert not period.in_force(at("2026-11-30T23:59:59+00:00"))
    assert period.in_force(at("2026-12-01T00:00:00+00:00"))
    assert period.in_force(at("2026-12-01T23:59:59+00:00"))
    assert not period.in_force(at("2026-12-02T00:00:00+00:00"))


def test_weekly_window_is_read_in_the_rules_time_zone() -> None:
    # Saturdays 09:00-18:00 Paris time; in December Paris is UTC+1.
    saturdays = Schedule(weekly_windows=(WeeklyWindow(frozenset({"sat"}), time(9), time(18)),), time_zone=PARIS)
    assert not saturdays.in_force(at("2026-12-05T07:59:00+00:00"))  # 08:59 in Paris
    assert saturdays.in_force(at("2026-12-05T08:00:00+00:00"))  # 09:00 in Paris
    assert saturdays.in_force(at("2026-12-05T16:59:00+00:00"))
    assert not saturdays.in_force(at("2026-12-05T17:00:00+00:00"))  # 18:00 in Paris
    assert not saturdays.in_force(at("2026-12-06T10:00:00+00:00"))  # Sunday


def test_weekly_window_ending_before_it_starts_runs_past_midnight() -> None:
    nights = Schedule(weekly_windows=(WeeklyWindow(frozenset({"fri"}), time(22), time(6)),), time_zone="UTC")
    assert nights.in_force(at("2026-12-04T23:00:00+00:00"))  # Friday night
    assert nights.in_force(at("2026-12-05T05:59:00+00:00"))  # Saturday early morning, same window
    assert not nights.in_force(at("2026-12-05T06:00:00+00:00"))
    assert not nights.in_force(at("2026-12-05T23:00:00+00:00"))  # Saturday night: not a Friday window


def test_weekly_window_keeps_local_hours_across_a_daylight_saving_change() -> None:
    mornings = Schedule(weekly_windows=(WeeklyWindow(frozenset(WEEKDAYS), time(9), time(10)),), time_zone=PARIS)
    assert mornings.in_force(at("2026-03-28T08:30:00+00:00"))  # 09:30 CET
    assert mornings.in_force(at("2026-03-30T07:30:00+00:00"))  # 09:30 CEST
    assert not mornings.in_force(at("2026-03-30T08:30:00+00:00"))  # 10:30 CEST


def test_period_and_windows_must_both_hold() -> None:
    schedule = Schedule(
        starts_at=at("2026-12-07T00:00:00+00:00"),
        weekly_windows=(WeeklyWindow(frozenset({"sat"}), time(0), time(23, 59)),),
    )
    assert not schedule.in_force(at("2026-12-05T12:00:00+00:00"))  # a Saturday before the period
    assert schedule.in_force(at("2026-12-12T12:00:00+00:00"))


def test_next_change_is_the_nearest_boundary_of_period_or_window() -> None:
    schedule = Schedule(
        starts_at=at("2026-12-01T00:00:00+00:00"),
        ends_at=at("2026-12-31T00:00:00+00:00"),
        weekly_windows=(WeeklyWindow(frozenset({"sat"}), time(9), time(18)),),
        time_zone=PARIS,
    )
    assert schedule.next_change(at("2026-11-01T00:00:00+00:00")) == at("2026-12-01T00:00:00+00:00")
    assert schedule.next_change(at("2026-12-05T08:30:00+00:00")) == at("2026-12-05T17:00:00+00:00")
    assert Schedule().next_change(at("2026-12-05T08:30:00+00:00")) is None


def test_rule_out_of_its_period_does_nothing_and_is_not_named() -> None:
    sale = Rule(
        uuid.uuid4(),
        0,
        Condition("<=", 3),
        Action("set", 0),
        schedule=Schedule(starts_at=at("2026-12-01T00:00:00+00:00")),
    )
    before = channel_quantity([sale], C1, "A", 2, at=at("2026-11-30T12:00:00+00:00"))
    during = channel_quantity([sale], C1, "A", 2, at=at("2026-12-01T12:00:00+00:00"))
    assert (before.quantity, before.rule_ids) == (2, ())
    assert (during.quantity, during.rule_ids) == (0, (sale.rule_id,))


# --- The funnel, with every action ---------------------------------------------------------


def test_funnel_condition_sees_the_quantity_left_by_the_previous_rule() -> None:
    # Safety stock of 2, then "0 when <= 3": available 5 -> 3 -> 0.
    safety = rule("always", None, "subtract", 2, position=1)
    buffer = rule("<=", 3, "set", 0, position=2)
    assert channel_quantity([buffer, safety], C1, "A", 5).quantity == 0
    assert channel_quantity([buffer, safety], C1, "A", 6).quantity == 4


def test_percentage_then_cap_then_allocation_override() -> None:
    half = rule("always", None, "percent", 50, position=1)
    cap = rule("always", None, "cap", 10, position=2)
    allocate = rule(">=", 100, "allocate", 25, position=3, channels=frozenset({C2}))
    assert channel_quantity([half, cap, allocate], C1, "A", 45).quantity == 10
    # The allocation's condition sees 10 (< 100): it does not apply.
    assert channel_quantity([half, cap, allocate], C2, "A", 45).quantity == 10


def test_allocation_publishes_its_fixed_number_whatever_the_stock() -> None:
    allocate = rule("always", None, "allocate", 5, channels=frozenset({C2}))
    assert [channel_quantity([allocate], C2, "A", q).quantity for q in (0, 2, 100)] == [5, 5, 5]


def test_equal_positions_are_ordered_by_rule_id_so_the_result_is_stable() -> None:
    a = Rule(uuid.UUID(int=1), 5, Condition("always"), Action("subtract", 3))
    b = Rule(uuid.UUID(int=2), 5, Condition("<=", 5), Action("set", 0))
    assert channel_quantity([b, a], C1, "A", 8).rule_ids == (a.rule_id, b.rule_id)
    assert channel_quantity([b, a], C1, "A", 8).quantity == 0


# --- Properties ----------------------------------------------------------------------------

bounded_rules = st.lists(
    st.builds(
        lambda op, v, act, amount, pos, chan: rule(
            op, v, act, amount, position=pos, upper=v + 3, channels=frozenset({chan}) if chan else frozenset()
        ),
        st.sampled_from(["<=", "<", ">=", ">", "==", "between", "always"]),
        st.integers(0, 50),
        st.sampled_from(["subtract", "cap", "percent"]),
        st.integers(0, 100),
        st.integers(0, 5),
        st.sampled_from([None, C1, C2]),
    ),
    max_size=6,
)


@given(bounded_rules, st.integers(-5, 500))
def test_every_action_but_set_and_allocate_stays_within_zero_and_available(rules: list[Rule], available: int) -> None:
    for connection in (C1, C2):
        quantity = channel_quantity(rules, connection, "A", available).quantity
        assert type(quantity) is int
        assert 0 <= quantity <= max(available, 0)


@given(
    st.lists(st.tuples(st.sampled_from(["set", "allocate"]), st.integers(0, 1000)), max_size=4), st.integers(-50, 500)
)
def test_set_and_allocate_are_never_negative(actions: list[tuple[str, int]], available: int) -> None:
    rules = [rule("always", None, action, amount, position=i) for i, (action, amount) in enumerate(actions)]
    assert channel_quantity(rules, C1, "A", available).quantity >= 0


# --- Evaluating once per distinct input ----------------------------------------------------

SKUS = ["A", "B", "C", "D"]
BRANDS = [None, "", "Bosch", "bosch", "Makita"]
TAGS = ["clearance", "Pro", "outlet"]

scoped_rules = st.lists(
    st.builds(
        lambda base, chan, skus, brands, exclude_tags, enabled: Rule(
            base.rule_id,
            base.position,
            base.condition,
            base.action,
            connection_ids=frozenset({chan}) if chan else frozenset(),
            skus=frozenset(skus),
            enabled=enabled,
            product_filter=AttributeFilter(brands=frozenset(brands), exclude_tags=frozenset(exclude_tags)),
        ),
        st.builds(
            lambda op, v, act, amount, pos: rule(op, v, act, amount, position=pos, upper=v + 3),
            st.sampled_from(["<=", "<", ">=", ">", "==", "between", "always"]),
            st.integers(0, 20),
            st.sampled_from(["set", "subtract", "cap", "percent", "allocate"]),
            st.integers(0, 100),
            st.integers(0, 5),
        ),
        st.sampled_from([None, C1, C2]),
        st.lists(st.sampled_from(SKUS), max_size=2),
        st.lists(st.sampled_from(["bosch", "makita"]), max_size=1),
        st.lists(st.sampled_from([t.casefold() for t in TAGS]), max_size=1),
        st.booleans(),
    ),
    max_size=5,
)
products_strategy = st.builds(
    ProductAttributes.of, st.sampled_from(BRANDS), st.just(None), st.lists(st.sampled_from(TAGS), max_size=2)
)


@given(scoped_rules, st.sampled_from(SKUS), st.integers(-5, 30), products_strategy)
def test_deciding_once_per_input_gives_each_skus_own_decisions(
    rules: list[Rule], sku: str, available: int, product: ProductAttributes
) -> None:
    funnel = Funnel(rules, None)
    named = sku if sku in funnel.named_skus else None
    per_sku = tuple(funnel.decide(c, sku, available, product) for c in (C1, C2))
    assert funnel.decisions([C1, C2], available, product, named) == per_sku


@given(scoped_rules)
def test_the_funnel_names_the_skus_and_attributes_its_rules_read(rules: list[Rule]) -> None:
    funnel = Funnel(rules, None)
    assert funnel.named_skus == frozenset().union(*(r.skus for r in rules if r.enabled))
    read = funnel.filtered_attributes
    assert ("brand" in read) == any(r.product_filter.brands for r in funnel.rules)
    assert ("tags" in read) == any(r.product_filter.exclude_tags for r in funnel.rules)
    assert "category" not in read


# --- Schedule boundaries: what the scheduler's next check relies on --------------------------

windows_strategy = st.lists(
    st.builds(
        WeeklyWindow,
        st.frozensets(st.sampled_from(WEEKDAYS), min_size=1),
        st.builds(time, st.integers(0, 23), st.sampled_from([0, 15, 30, 59])),
        st.builds(time, st.integers(0, 23), st.sampled_from([0, 15, 30, 59])),
    ),
    max_size=2,
)
moments = st.datetimes(
    min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(ZoneInfo("UTC"))
)


@given(
    st.one_of(st.none(), moments),
    st.one_of(st.none(), st.timedeltas(min_value=timedelta(minutes=1), max_value=timedelta(days=20))),
    windows_strategy,
    st.sampled_from(["UTC", PARIS, "America/New_York", "Australia/Lord_Howe"]),
    moments,
    st.lists(st.floats(0, 1, exclude_max=True), min_size=1, max_size=8),
)
def test_in_force_does_not_change_before_the_next_change(
    starts_at: datetime | None,
    length: timedelta | None,
    windows: list[WeeklyWindow],
    zone: str,
    now: datetime,
    fractions: list[float],
) -> None:
    schedule = Schedule(
        starts_at=starts_at,
        ends_at=starts_at + length if starts_at and length else None,
        weekly_windows=tuple(windows),
        time_zone=zone,
    )
    following = schedule.next_change(now)
    assert following is None or following > now
    horizon = (following or now + timedelta(days=30)) - now
    for fraction in fractions:
        moment = now + horizon * fraction  # rounded to a microsecond: may land on the boundary
        if moment < now + horizon:
            assert schedule.in_force(moment) == schedule.in_force(now)
