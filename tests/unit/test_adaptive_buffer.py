"""The adaptive buffer's estimators and decision, against worked examples (docs/rules.md)."""

from __future__ import annotations

import math
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rule_engine.domain.adaptive import (
    AdaptiveBuffer,
    DecayedRate,
    DelayWindow,
    Exposure,
    poisson_quantile,
)
from rule_engine.domain.rules import Action, Condition, Funnel, Rule, channel_quantity

SHOPIFY = uuid.UUID("00000000-0000-0000-0000-00000000000a")
AMAZON = uuid.UUID("00000000-0000-0000-0000-00000000000b")
HOUR = 3600.0


def adaptive_rule(confidence: float = 95.0, minimum: int = 0, maximum: int = 10, position: int = 10) -> Rule:
    return Rule(
        uuid.UUID(int=1),
        position,
        Condition("always"),
        Action("adaptive", 0, AdaptiveBuffer(confidence, minimum, maximum)),
    )


# The worked example: 6 units/h on Shopify, 12 units/h on Amazon; Amazon shows a change
# 150 s after the order (p95), Shopify 3 s after.
EXAMPLE = Exposure({SHOPIFY: 6 / HOUR, AMAZON: 12 / HOUR}, {SHOPIFY: 3.0, AMAZON: 150.0})


def test_a_single_sale_is_one_unit_over_the_time_constant_then_decays() -> None:
    rate = DecayedRate().observe(1, at=1000.0, tau_s=600.0)
    assert rate.value_at(1000.0, 600.0) == pytest.approx(1 / 600)
    assert rate.value_at(1600.0, 600.0) == pytest.approx(math.exp(-1) / 600)
    assert DecayedRate().value_at(5.0, 600.0) == 0.0


def test_a_steady_flow_converges_to_its_rate() -> None:
    rate = DecayedRate()
    for i in range(2000):  # one unit every 10 s for 20,000 s (33 time constants)
        rate = rate.observe(1, at=i * 10.0, tau_s=600.0)
    assert rate.value_at(19_990.0, 600.0) == pytest.approx(0.1, rel=0.01)


def test_a_late_movement_counts_as_if_seen_in_order() -> None:
    in_order = DecayedRate().observe(1, 100.0, 600.0).observe(2, 200.0, 600.0)
    late = DecayedRate().observe(2, 200.0, 600.0).observe(1, 100.0, 600.0)
    assert late.value_at(300.0, 600.0) == pytest.approx(in_order.value_at(300.0, 600.0))


def test_the_delay_is_the_default_until_enough_samples_then_nearest_rank() -> None:
    window = DelayWindow(default_s=120.0, size=100, min_samples=20)
    window.extend(float(s) for s in range(1, 20))
    assert (window.measured, window.p50, window.p95) == (False, 120.0, 120.0)
    window.extend(float(s) for s in range(20, 101))
    assert (window.measured, window.p50, window.p95) == (True, 50.0, 95.0)


def test_the_delay_window_slides() -> None:
    window = DelayWindow(default_s=120.0, size=10, min_samples=5)
    window.extend([500.0] * 10)
    window.extend([2.0] * 10)
    assert window.p95 == 2.0


@pytest.mark.parametrize(
    ("expected", "confidence", "units"),
    [(0.0, 0.95, 0), (0.05, 0.95, 0), (0.06, 0.95, 1), (0.25, 0.95, 1), (2.0, 0.95, 5), (2.0, 0.99, 6)],
)
def test_poisson_quantile_worked_values(expected: float, confidence: float, units: int) -> None:
    assert poisson_quantile(expected, confidence) == units


@settings(max_examples=40)
@given(st.floats(0.0, 50.0), st.floats(0.5, 0.999))
def test_poisson_quantile_is_the_smallest_k_reaching_the_confidence(expected: float, confidence: float) -> None:
    k = poisson_quantile(expected, confidence)

    def cdf(n: int) -> float:
        return sum(math.exp(-expected) * expected**i / math.factorial(i) for i in range(n + 1))

    assert cdf(k) >= confidence - 1e-9
    assert k == 0 or cdf(k - 1) < confidence + 1e-9


def test_the_slow_channel_hides_a_unit_and_the_fast_one_none() -> None:
    # The SKU sells 18/h = 1/200 per s. Amazon is stale for 150 s: 0.75 expected;
    # P(0) = 0.47, P(<= 1) = 0.83, P(<= 2) = 0.96: 2 hidden.
    # Shopify is stale for 3 s: 0.015 expected; P(0) = 0.985: nothing hidden.
    rules = [adaptive_rule(95.0)]
    amazon = channel_quantity(rules, AMAZON, "S1", 5, exposure=EXAMPLE)
    shopify = channel_quantity(rules, SHOPIFY, "S1", 5, exposure=EXAMPLE)
    assert (amazon.quantity, shopify.quantity) == (3, 5)
    assert amazon.reasons and "hid 2" in amazon.reasons[0] and "150 s" in amazon.reasons[0]
    assert amazon.rule_ids == (uuid.UUID(int=1),)


def test_a_rarely_sold_sku_hides_nothing_on_any_channel() -> None:
    rare = Exposure({SHOPIFY: 0.1 / HOUR, AMAZON: 0.1 / HOUR}, {SHOPIFY: 3.0, AMAZON: 150.0})
    for channel in (SHOPIFY, AMAZON):
        assert channel_quantity([adaptive_rule(99.0)], channel, "S1", 1, exposure=rare).quantity == 1


def test_a_higher_confidence_hides_more_and_the_bounds_hold() -> None:
    busy = Exposure(
        {SHOPIFY: 60 / HOUR, AMAZON: 10 / HOUR}, {SHOPIFY: 1.0, AMAZON: 120.0}
    )  # 2.33 units expected meanwhile
    assert channel_quantity([adaptive_rule(95.0)], AMAZON, "S1", 20, exposure=busy).quantity == 15
    assert channel_quantity([adaptive_rule(99.0)], AMAZON, "S1", 20, exposure=busy).quantity == 13
    assert channel_quantity([adaptive_rule(99.0, maximum=3)], AMAZON, "S1", 20, exposure=busy).quantity == 17
    assert channel_quantity([adaptive_rule(95.0, minimum=1)], SHOPIFY, "S1", 20, exposure=busy).quantity == 19
    assert channel_quantity([adaptive_rule(99.0)], AMAZON, "S1", 3, exposure=busy).quantity == 0


def test_without_measurements_a_channel_uses_the_default_delay() -> None:
    exposure = Exposure({SHOPIFY: 36 / HOUR}, {}, default_delay_s=100.0)  # 1 unit expected while stale
    assert channel_quantity([adaptive_rule(95.0)], AMAZON, "S1", 10, exposure=exposure).quantity == 7


def test_it_composes_in_the_funnel_with_a_fixed_rule_after_it() -> None:
    zero_under_3 = Rule(uuid.UUID(int=2), 20, Condition("<=", 3), Action("set", 0))
    rules = [adaptive_rule(95.0), zero_under_3]
    funnel = Funnel(rules, None)
    assert funnel.is_adaptive
    assert funnel.decide(AMAZON, "S1", 6, exposure=EXAMPLE).quantity == 4  # 6 - 2 = 4 > 3
    decision = funnel.decide(AMAZON, "S1", 5, exposure=EXAMPLE)  # 5 - 2 = 3, then 0
    assert (decision.quantity, decision.rule_ids) == (0, (uuid.UUID(int=1), uuid.UUID(int=2)))
    assert funnel.decide(SHOPIFY, "S1", 4, exposure=EXAMPLE).quantity == 4


def test_a_funnel_without_an_adaptive_rule_reads_no_exposure() -> None:
    fixed = [Rule(uuid.UUID(int=2), 20, Condition("<=", 3), Action("set", 0))]
    assert not Funnel(fixed, None).is_adaptive
    assert channel_quantity(fixed, AMAZON, "S1", 5, exposure=EXAMPLE) == channel_quantity(fixed, AMAZON, "S1", 5)


@pytest.mark.parametrize(
    ("confidence", "minimum", "maximum"), [(49.9, 0, 1), (100.0, 0, 1), (95.0, -1, 1), (95.0, 3, 2)]
)
def test_parameters_out_of_bounds_are_refused(confidence: float, minimum: int, maximum: int) -> None:
    with pytest.raises(ValueError):
        AdaptiveBuffer(confidence, minimum, maximum)


def test_an_adaptive_action_needs_its_parameters_and_only_it_has_them() -> None:
    with pytest.raises(ValueError):
        Action("adaptive", 0)
    with pytest.raises(ValueError):
        Action("set", 0, AdaptiveBuffer())


def test_the_api_accepts_the_adaptive_action_with_its_defaults_and_refuses_other_values() -> None:
    from pydantic import ValidationError

    from rule_engine.entrypoints.api import ActionIn

    assert ActionIn.model_validate({"type": "adaptive"}).model_dump() == {
        "type": "adaptive",
        "value": 0,
        "confidence_pct": 95.0,
        "minimum": 0,
        "maximum": 10,
        "floor_per_hour": 0.0,
    }
    for bad in ({"type": "adaptive", "value": 3}, {"type": "adaptive", "minimum": 4, "maximum": 3}):
        with pytest.raises(ValidationError):
            ActionIn.model_validate(bad)


@settings(max_examples=40)
@given(
    st.integers(0, 200),
    st.floats(0.0, 0.05),
    st.floats(0.0, 0.05),
    st.floats(0.0, 600.0),
    st.floats(0.0, 600.0),
    st.sampled_from([50.0, 90.0, 99.0, 99.99]),
)
def test_a_slower_channel_never_shows_more_and_nothing_beyond_the_available(
    available: int, rate_a: float, rate_b: float, delay_a: float, delay_b: float, confidence: float
) -> None:
    exposure = Exposure(
        {SHOPIFY: rate_a, AMAZON: rate_b}, {SHOPIFY: min(delay_a, delay_b), AMAZON: max(delay_a, delay_b)}
    )
    rules = [adaptive_rule(confidence)]
    fast = channel_quantity(rules, SHOPIFY, "S1", available, exposure=exposure).quantity
    slow = channel_quantity(rules, AMAZON, "S1", available, exposure=exposure).quantity
    assert 0 <= slow <= fast <= available
    assert available - slow <= 10  # the maximum holds


def test_the_merchants_floor_stands_in_for_a_rate_that_cannot_know_yet() -> None:
    from rule_engine.domain.adaptive import AdaptiveBuffer, Exposure

    launch = AdaptiveBuffer(95.0, 0, 10, floor_per_hour=18.0)  # one unit every 200 s
    unsold = Exposure.of_total(0.0, {"amazon": 150.0}, 120.0)
    assert launch.hidden(launch.expected(unsold, "amazon")) == 2  # as if it sold 18 an hour: 0.75 expected
    assert AdaptiveBuffer().hidden(AdaptiveBuffer().expected(unsold, "amazon")) == 0
    busy = Exposure.of_total(36 / 3600, {"amazon": 150.0}, 120.0)
    assert launch.rate(busy) == 36 / 3600  # a measured rate above the floor wins


def test_a_sale_is_an_order_movement_that_lowered_the_available_quantity() -> None:
    from rule_engine.domain.adaptive import sale_of

    types = {"shopify", "amazon"}
    assert sale_of("shopify:1001:1:placed", types, 10, 7) == ("shopify", 3)
    assert sale_of("amazon:111-2:9:shipped", types, 7, 7) is None  # a shipment leaves available as it was
    assert sale_of("shopify:1001:1:cancelled", types, 7, 10) is None  # a cancel gives units back
    assert sale_of("adjustment:42", types, 10, 7) is None  # the merchant's own correction
    assert sale_of("shopify:1001:1:placed", types, None, 7) is None  # first sight of the SKU
    assert sale_of("shopify", types, 10, 7) is None


def test_an_action_document_round_trips_with_its_parameters() -> None:
    from rule_engine.domain.adaptive import AdaptiveBuffer
    from rule_engine.domain.rules import Action

    stored = {"type": "adaptive", "value": 0, "confidence_pct": 99.0, "minimum": 1, "maximum": 6, "floor_per_hour": 2.5}
    action = Action.from_document(stored)
    assert action.adaptive == AdaptiveBuffer(99.0, 1, 6, 2.5)
    assert {"type": action.type, "value": action.value, **action.adaptive.document()} == stored
    assert Action.from_document({"type": "cap", "value": 4}) == Action("cap", 4)


def test_a_funnel_of_many_adaptive_rules_keeps_as_many_reasons_as_an_event_carries() -> None:
    import uuid

    from stocksync_common.contracts import ChannelQuantityChanged

    from rule_engine.domain.rules import MAX_REASONS, Condition, Funnel, Rule

    channel = uuid.uuid4()
    rules = [
        Rule(uuid.uuid4(), i, Condition("always"), Action("adaptive", adaptive=AdaptiveBuffer(95.0, 0, 0)))
        for i in range(MAX_REASONS + 5)
    ]
    decision = Funnel(rules, None).decide(channel, "X", 10)
    assert (decision.quantity, len(decision.rule_ids), len(decision.reasons)) == (10, MAX_REASONS + 5, MAX_REASONS)
    ChannelQuantityChanged(
        merchant_id=uuid.uuid4(),
        causation_id="test",
        connection_id=channel,
        sku="X",
        quantity=decision.quantity,
        version=1,
        stock_version=1,
        available=10,
        reasons=decision.reasons,
    )
