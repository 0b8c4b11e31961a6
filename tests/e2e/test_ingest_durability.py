"""Behaviour that needs a Stocksync of its own: the broker stopped, rate limits, polling.

This module starts its own database, broker, stock-ledger, channel-publisher and
order-ingest (own ports), because it stops the broker and shortens limits that the session
stack keeps at their defaults. Merchant API keys are legacy keys issued offline (signed
with the stack's API_KEY_SECRET, accepted until LEGACY_API_KEYS_UNTIL).
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from stocksync_common.auth import issue_api_key
from stocksync_embedded.stack import Stack

from tests.conftest import PrivateDatabase, own_infrastructure
from tests.e2e.conftest import webhook_url
from tests.e2e.test_ingest_channels import (
    OrderEvents,
    Sandboxes,
    create_connection,
    line,
    reading_orders,
    served_sandboxes,
)

RATE_LIMIT = 3
MIRAKL_INTERVAL_S = 2.0


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory: pytest.TempPathFactory, private_database: PrivateDatabase) -> Iterator[Stack]:
    with own_infrastructure(
        Path(tmp_path_factory.mktemp("ingest-own-stack")),
        private_database,
        WEBHOOK_RATE_LIMIT=str(RATE_LIMIT),
        WEBHOOK_RATE_PERIOD_S="60",
        MIRAKL_POLL_INTERVAL_OVERRIDE_S=str(MIRAKL_INTERVAL_S),
        MIRAKL_POLL_OVERLAP_S="30",
        POLLER_TICK_S="0.5",
    ) as stack:
        # The stock-ledger verifies the merchants' API keys for the other services.
        for service in ("stock-ledger", "channel-publisher", "order-ingest"):
            stack.start_service(service).wait_ready()
        yield stack


@pytest.fixture(scope="module")
def own_sandboxes() -> Iterator[Sandboxes]:
    with served_sandboxes(mirakl_min_call_interval_s=MIRAKL_INTERVAL_S) as made:
        yield made


@pytest.fixture(scope="module")
def publisher(own_stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=own_stack.service_url("channel-publisher"), timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def ingest(own_stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=own_stack.service_url("order-ingest"), timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def auth(own_stack: Stack) -> dict[str, str]:
    return {"X-API-Key": issue_api_key(own_stack.api_key_secret, uuid.uuid4())}


@pytest.fixture(scope="module")
def own_events(own_stack: Stack) -> Iterator[OrderEvents]:
    with reading_orders(own_stack) as events:
        yield events


@pytest.fixture(scope="module")
def connect_generic(
    publisher: httpx.Client, ingest: httpx.Client, auth: dict[str, str], own_sandboxes: Sandboxes
) -> Callable[[], tuple[str, str]]:
    """Makes a generic connection that order-ingest knows: its id and its webhook URL."""

    def connect() -> tuple[str, str]:
        connection_id = create_connection(publisher, auth, "generic", own_sandboxes, ingest)
        return connection_id, webhook_url(ingest, connection_id, "generic")

    return connect


def test_with_the_broker_unreachable_a_webhook_is_accepted_on_commit_and_its_events_are_published_once_it_is_back(
    own_stack: Stack,
    ingest: httpx.Client,
    auth: dict[str, str],
    own_sandboxes: Sandboxes,
    own_events: OrderEvents,
    connect_generic: Callable[[], tuple[str, str]],
) -> None:
    connection_id, url = connect_generic()
    # The broker is frozen (SIGSTOP), not restarted: the embedded broker keeps records in
    # memory, so a restart would drop its topics, which a real Kafka does not do. Frozen,
    # it accepts connections and answers nothing: the worst case for a producer.
    assert own_stack.broker is not None and own_stack.broker._process is not None
    broker_pid = own_stack.broker._process.pid
    os.kill(broker_pid, signal.SIGSTOP)
    try:
        sent = own_sandboxes.send(
            "generic", webhook_url=url, order_id="DOWN-1", lines=[line("DUR", 2, "1"), line("DUR-2", 1, "2")]
        )
        assert sent["status_code"] == 200, sent
        answer = httpx.Response(200, content=sent["body"]).json()
        # Acknowledged because it is committed in PostgreSQL: no wait for the broker.
        assert answer["status"] == "accepted" and answer["events"] == 2
        [delivery] = ingest.get("/v1/deliveries", headers=auth, params={"connection_id": connection_id}).json()
        assert delivery["events_produced"] == 2
        assert ingest.get("/readyz").status_code == 503
        time.sleep(3)
        assert own_events.movements(connection_id) == []
    finally:
        os.kill(broker_pid, signal.SIGCONT)
    assert own_events.wait_for(connection_id, 2, settle_s=2.0) == {"1": [("placed", 2)], "2": [("placed", 1)]}


def test_over_the_rate_limit_a_connection_gets_429_with_retry_after_and_nothing_is_produced(
    own_sandboxes: Sandboxes, own_events: OrderEvents, connect_generic: Callable[[], tuple[str, str]]
) -> None:
    connection_id, url = connect_generic()
    _, other_url = connect_generic()
    # connect_generic spent one request of each connection's budget on its probe.
    answers = [
        own_sandboxes.send("generic", webhook_url=url, order_id=f"R-{n}", lines=[line("RL", 1, "1")])
        for n in range(RATE_LIMIT + 1)
    ]
    assert [a["status_code"] for a in answers] == [200] * (RATE_LIMIT - 1) + [429, 429]
    refused = httpx.post(url, content=b"{}")
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    # Another connection has its own budget.
    other = own_sandboxes.send("generic", webhook_url=other_url, order_id="R-x", lines=[line("RL", 1, "1")])
    assert other["status_code"] == 200
    assert own_events.wait_for(connection_id, RATE_LIMIT - 1, settle_s=1.5) == {"1": [("placed", 1)] * (RATE_LIMIT - 1)}


def test_mirakl_orders_are_polled_with_an_overlapping_start_update_date_and_become_movements_once(
    publisher: httpx.Client,
    ingest: httpx.Client,
    auth: dict[str, str],
    own_sandboxes: Sandboxes,
    own_events: OrderEvents,
) -> None:
    first = own_sandboxes.send("mirakl", order_id="M-1-A", lines=[line("MIR-1", 2, "M-1-A-1")])
    connection_id = create_connection(publisher, auth, "mirakl", own_sandboxes)
    assert own_events.wait_for(connection_id, 1, settle_s=0) == {"M-1-A-1": [("placed", 2)]}

    own_sandboxes.send("mirakl", order_id="M-1-A", state="CANCELED", lines=[line("MIR-1", 2, "M-1-A-1")])
    own_sandboxes.send("mirakl", order_id="M-2-A", state="SHIPPED", lines=[line("MIR-2", 3, "M-2-A-1", cancelled=1)])
    movements = own_events.wait_for(connection_id, 5, settle_s=2 * MIRAKL_INTERVAL_S + 1)
    assert movements == {
        "M-1-A-1": [("placed", 2), ("cancelled", 2)],
        "M-2-A-1": [("placed", 3), ("shipped", 2), ("cancelled", 1)],
    }
    calls = httpx.get(f"{own_sandboxes.url}/mirakl/_sandbox/or11-calls").json()["calls"]
    assert len(calls) >= 3
    # The second call starts a little before the newest update the first one returned.
    assert datetime.fromisoformat(calls[1]["start_update_date"]) < datetime.fromisoformat(first["last_updated_date"])
    deliveries = ingest.get("/v1/deliveries", headers=auth, params={"connection_id": connection_id}).json()
    assert {d["topic"] for d in deliveries} == {"OR11"}
    assert sum(d["events_produced"] for d in deliveries) == 5
