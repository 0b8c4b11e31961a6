"""The embedded runner's restart backoff: doubling, capped, reset after a healthy run."""

from __future__ import annotations

from stocksync_embedded.stack import Backoff


def test_restarts_back_off_exponentially_up_to_the_cap() -> None:
    backoff = Backoff(initial_s=1.0, max_s=8.0, healthy_after_s=60.0)
    assert [backoff.next_delay("stock-ledger", 0.5) for _ in range(6)] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_a_process_that_ran_healthy_long_enough_restarts_at_once_again() -> None:
    backoff = Backoff(initial_s=1.0, max_s=8.0, healthy_after_s=60.0)
    for _ in range(4):
        backoff.next_delay("broker", 1.0)
    assert backoff.next_delay("broker", 61.0) == 1.0


def test_each_process_has_its_own_backoff() -> None:
    backoff = Backoff(initial_s=1.0, max_s=30.0)
    backoff.next_delay("rule-engine", 0.0)
    backoff.next_delay("rule-engine", 0.0)
    assert backoff.next_delay("order-ingest", 0.0) == 1.0
