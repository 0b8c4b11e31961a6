"""The oversell simulator's invariants: seeded, conserving units, fair to every strategy."""

from __future__ import annotations

import random

import pytest
from bench.simulator.model import (
    Catalogue,
    ChannelSpec,
    LatencySampler,
    Scenario,
    Strategy,
    default_latency_table,
    simulate,
    strategies,
)

SMALL = Scenario(seed=3, hours=6, buyers_per_hour=400, catalogue=Catalogue(skus=150, max_stock=6))


def sampler(seed: int = 1) -> LatencySampler:
    values, grid = default_latency_table()
    return LatencySampler(values, grid, random.Random(seed))


@pytest.mark.parametrize("strategy", strategies((5, 60), buffer=3), ids=lambda s: s.name)
def test_a_seeded_run_is_repeatable(strategy: Strategy) -> None:
    first = simulate(SMALL, strategy, sampler())
    second = simulate(SMALL, strategy, sampler())
    assert first == second


@pytest.mark.parametrize("strategy", strategies((5, 15, 60), buffer=3), ids=lambda s: s.name)
def test_units_are_conserved(strategy: Strategy) -> None:
    outcome = simulate(SMALL, strategy, sampler())
    assert outcome.start_units == outcome.end_units + outcome.units_sold
    assert outcome.end_units >= 0
    assert outcome.oversold_units == sum(outcome.oversells_per_sku.values())
    assert outcome.cancelled_orders <= outcome.oversold_units  # one cancelled order misses at least one unit
    assert outcome.orders + outcome.turned_away == outcome.buyers


def test_every_strategy_sees_the_same_buyers() -> None:
    buyers = {simulate(SMALL, s, sampler()).buyers for s in strategies((5, 60), buffer=3)}
    assert buyers == {len(SMALL.demand())}


def test_the_demand_depends_on_the_seed_only() -> None:
    assert (
        SMALL.demand()
        == Scenario(seed=3, hours=6, buyers_per_hour=400, catalogue=Catalogue(skus=150, max_stock=6)).demand()
    )
    assert (
        SMALL.demand()
        != Scenario(seed=4, hours=6, buyers_per_hour=400, catalogue=Catalogue(skus=150, max_stock=6)).demand()
    )


def test_an_instant_sync_never_oversells() -> None:
    instant = Scenario(
        seed=5,
        hours=6,
        buyers_per_hour=800,
        catalogue=Catalogue(skus=100, max_stock=4),
        channels=(ChannelSpec("a", 0.5, 0.0), ChannelSpec("b", 0.5, 0.0)),
    )
    zero = LatencySampler([0.0, 0.0], [0.0, 100.0], random.Random(1))
    outcome = simulate(instant, Strategy("events", None, None), zero)
    assert outcome.units_sold > 0
    assert (outcome.oversold_units, outcome.cancelled_orders) == (0, 0)


def test_without_a_buffer_no_unit_is_held_back() -> None:
    for strategy in strategies((15,), buffer=3):
        outcome = simulate(SMALL, strategy, sampler())
        if strategy.buffer is None:
            assert outcome.unsold_because_of_buffer == 0


def test_slower_batches_oversell_more_than_the_event_path() -> None:
    busy = Scenario(seed=11, hours=12, buyers_per_hour=900, catalogue=Catalogue(skus=300, max_stock=5))
    outcomes = {s.name: simulate(busy, s, sampler()) for s in strategies((5, 60), buffer=3)}
    assert outcomes["batch every 60 min"].oversold_units > outcomes["batch every 5 min"].oversold_units
    assert outcomes["batch every 5 min"].oversold_units > outcomes["Stocksync events"].oversold_units


def test_the_buffer_rule_is_the_rule_engines_own() -> None:
    rules = Strategy("b", 300, 3).rules(SMALL.channels)
    from rule_engine.domain.rules import channel_quantity

    channel = SMALL.channels[0].connection_id
    assert [channel_quantity(rules, channel, "1", q).quantity for q in (5, 4, 3, 0)] == [5, 4, 0, 0]


def test_the_latency_sampler_stays_within_the_measured_range() -> None:
    values, grid = default_latency_table()
    draw = LatencySampler(values, grid, random.Random(9))
    samples = [draw() for _ in range(2000)]
    assert min(values) / 1000 <= min(samples) and max(samples) <= max(values) / 1000
