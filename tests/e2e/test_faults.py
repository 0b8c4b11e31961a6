"""Fault injection over the real broker and database, with order traffic running.

One supervised Stocksync of its own (bench.faults.FaultStack: own PostgreSQL, broker,
services, gateway, two sandbox Shopify stores, a safety-stock rule on C2) serves every
test here, so the session's shared stack is untouched. Each test sends signed orders at
20/s while something crashes, resends what got no 2xx as a marketplace does, and ends
with the account: every accepted unit reserved in the ledger exactly once, C1 showing
the ledger's available and C2 the rule applied to it. The long version is `make soak`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from bench.faults import (
    FaultStack,
    Figures,
    broker_outage,
    channel_errors,
    kill_service,
    kill_services_at_random,
    restart_postgres,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def faults(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultStack]:
    stack = FaultStack(Path(tmp_path_factory.mktemp("faults"))).start()
    yield stack
    stack.stop()


def assert_nothing_lost(figures: Figures) -> None:
    assert figures.orders_sent > 0
    # Every order was acknowledged in the end (marketplaces resend what got no 2xx)...
    assert figures.orders_accepted == figures.orders_sent, figures
    # ...and every accepted unit is reserved exactly once, and every channel is right.
    assert figures.units_lost == 0, figures
    assert figures.units_double_counted == 0, figures
    assert figures.channels_right, figures


def test_finding_3_the_stock_ledger_sigkilled_under_20_orders_per_s_loses_no_accepted_unit(
    faults: FaultStack,
) -> None:
    figures = faults.run("stock-ledger SIGKILL", kill_service("stock-ledger"), before_s=3, after_s=4)
    assert_nothing_lost(figures)
    # The runner restarted the ledger instead of stopping the stack.
    assert "stock-ledger" in figures.restarts
    assert faults.stack.broker is not None and faults.stack.broker.running


def test_the_broker_frozen_then_replaced_by_an_empty_one_loses_no_accepted_unit(faults: FaultStack) -> None:
    # While the broker answers nothing, webhooks are still accepted (on the PostgreSQL
    # commit); the new broker it is replaced by gets the retained outbox rows again.
    cluster_before = faults.stack.broker.cluster_id if faults.stack.broker else None
    figures = faults.run("broker frozen 10 s, then a new empty broker", broker_outage(10.0), before_s=2, after_s=3)
    assert_nothing_lost(figures)
    assert "broker" in figures.restarts
    assert faults.stack.broker is not None and faults.stack.broker.cluster_id != cluster_before


def test_services_sigkilled_at_random_moments_lose_no_accepted_unit(faults: FaultStack) -> None:
    figures = faults.run("3 random SIGKILLs", kill_services_at_random(3, seed=11), before_s=2, after_s=3)
    assert_nothing_lost(figures)
    assert len(figures.restarts) >= 3


def test_postgres_restarted_under_load_the_services_recover_without_a_restart(faults: FaultStack) -> None:
    pids = {name: faults.stack.processes[name].process.pid for name in ("order-ingest", "stock-ledger")}  # type: ignore[union-attr]
    figures = faults.run("PostgreSQL restarted", restart_postgres, before_s=2, after_s=3)
    assert_nothing_lost(figures)
    assert figures.restarts == ["postgres"]
    assert {name: faults.stack.processes[name].process.pid for name in pids} == pids  # type: ignore[union-attr]


def test_a_channel_answering_500_then_429_then_hanging_past_the_timeout_ends_right(faults: FaultStack) -> None:
    figures = faults.run("C2 answers 500 x2, 429 x2, then hangs x2", channel_errors(2), before_s=2, after_s=3)
    assert_nothing_lost(figures)
    assert figures.restarts == []
    # C1 kept receiving new quantities while C2 failed and hung (its drain is its own).
    assert faults.observations["other_channel_changes_during_fault"] > 0
