"""The embedded runner's supervision: the restart backoff (doubling, capped, reset after a
healthy run) and which processes a broker restart takes with it."""

from __future__ import annotations

from pathlib import Path

from stocksync_embedded.stack import SERVICES, Backoff, ManagedProcess, Ports, Stack


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


def test_a_broker_restart_takes_every_instance_of_every_service_not_only_the_first(tmp_path: Path) -> None:
    stack = Stack(tmp_path, Ports.free())
    names = ["gateway", "stock-ledger #2", "order-ingest", "stock-ledger", "order-ingest #2", "sandbox C1"]
    for name in names:
        stack.processes[name] = ManagedProcess(name, ["true"], {}, tmp_path / f"{name}.log")
    stack.instance_ports.update({("stock-ledger", 1): 1, ("order-ingest", 1): 2})
    # The services stopped and started again around a new broker: each instance, in SERVICES order.
    order = [service for service, _ in SERVICES]
    expected = sorted(
        ["order-ingest", "order-ingest #2", "stock-ledger", "stock-ledger #2"],
        key=lambda name: (order.index(name.split(" #")[0]), name),
    )
    assert [p.name for p in stack.service_processes()] == expected
