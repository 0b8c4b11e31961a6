"""The services as separate processes over the session's PostgreSQL and broker."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from stocksync_embedded.stack import Stack

from tests.e2e.channel_sandboxes import ChannelSandboxes, SandboxProcesses, SandboxShopify
from tests.e2e.otlp import TraceReceiver


@pytest.fixture(scope="session")
def traces() -> Iterator[TraceReceiver]:
    """The OTLP/HTTP receiver the session's services export their spans to."""
    receiver = TraceReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="session")
def stack(infrastructure: Stack, traces: TraceReceiver) -> Iterator[Stack]:
    # Tracing on, as an operator turns it on (docs/operations.md): each service process
    # exports over OTLP/HTTP; a short batch delay so a test sees its spans soon.
    infrastructure.extra_env.update({"OTEL_EXPORTER_OTLP_ENDPOINT": traces.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "200"})
    # The adaptive buffer's estimators, quick enough for a test (test_adaptive_buffer.py):
    # a delay is measured after 3 samples read back every 0.25 s, and a rate decays in a minute.
    infrastructure.extra_env.update(
        {
            "DISPLAY_DELAY_MIN_SAMPLES": "3",
            "DISPLAY_PROBE_INTERVAL_S": "0.25",
            "DISPLAY_DELAY_ANNOUNCE_INTERVAL_S": "0",
            "ADAPTIVE_RATE_TAU_S": "60",
        }
    )
    infrastructure.start_services()
    yield infrastructure
    for name in list(infrastructure.processes):
        infrastructure.processes.pop(name).stop()


@pytest.fixture(scope="session")
def api(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.base_url, timeout=30) as client:
        yield client


@dataclass
class Merchant:
    merchant_id: str
    api_key: str

    @property
    def auth(self) -> dict[str, str]:
        return {"X-API-Key": self.api_key}


def new_merchant(api: httpx.Client, stack: Stack, name: str) -> Merchant:
    answer = api.post("/v1/merchants", json={"name": name}, headers={"Authorization": f"Bearer {stack.admin_token}"})
    assert answer.status_code == 201, answer.text
    return Merchant(answer.json()["merchant_id"], answer.json()["api_key"])


@pytest.fixture
def merchant(api: httpx.Client, stack: Stack) -> Merchant:
    return new_merchant(api, stack, "test merchant")


@pytest.fixture
def sandbox_processes(stack: Stack) -> Iterator[SandboxProcesses]:
    """The test's sandbox processes, stopped after it."""
    processes = SandboxProcesses(stack.home / "logs")
    yield processes
    processes.stop()


@pytest.fixture
def sandbox_shopify(sandbox_processes: SandboxProcesses) -> Callable[[], SandboxShopify]:
    return sandbox_processes.shopify


@pytest.fixture
def channel_sandboxes(
    api: httpx.Client, merchant: Merchant, stack: Stack, sandbox_processes: SandboxProcesses
) -> ChannelSandboxes:
    return ChannelSandboxes(api, merchant, stack, sandbox_processes)


def connect_shopify(
    api: httpx.Client,
    merchant: Merchant,
    sandbox: SandboxShopify,
    name: str,
    listings: list[dict[str, Any]],
    **extra: Any,
) -> str:
    """The merchant's connection to a sandbox Shopify store: its id."""
    answer = api.post(
        "/v1/connections",
        headers=merchant.auth,
        json={
            "type": "shopify",
            "name": name,
            "base_url": sandbox.url,
            "credentials": {"access_token": sandbox.access_token},
            "webhook_secret": sandbox.webhook_secret,
            "listings": listings,
            **extra,
        },
    )
    assert answer.status_code == 201, answer.text
    connection_id: str = answer.json()["connection_id"]
    return connection_id


def webhook_url(api: httpx.Client, connection_id: str, channel: str = "shopify") -> str:
    return f"{str(api.base_url).rstrip('/')}/webhooks/{channel}/{connection_id}"


def wait_until_ingest_knows(url: str) -> None:
    """order-ingest learns of a connection through connections.v1: the connection's webhook
    `url` answers 404 until then, and an unsigned delivery 401 after."""
    wait_for(lambda: httpx.post(url, content=b"{}", timeout=10).status_code == 401, timeout=30)


def wait_for(predicate: Callable[[], Any], timeout: float = 60.0, interval: float = 0.05) -> Any:
    # The bound only matters when something is wrong: on a loaded 2-core machine a
    # correct pipeline has taken over 20 s (speed is measured by `make bench`).
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)
