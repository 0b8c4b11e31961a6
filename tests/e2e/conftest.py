"""The services as separate processes over the session's PostgreSQL and broker."""

from __future__ import annotations

import os
import secrets
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from stocksync_embedded.stack import ManagedProcess, Stack

from tests.conftest import free_port
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


@pytest.fixture
def merchant(api: httpx.Client, stack: Stack) -> Merchant:
    answer = api.post(
        "/v1/merchants", json={"name": "test merchant"}, headers={"Authorization": f"Bearer {stack.admin_token}"}
    )
    assert answer.status_code == 201, answer.text
    return Merchant(answer.json()["merchant_id"], answer.json()["api_key"])


@dataclass
class SandboxShopify:
    url: str
    access_token: str
    webhook_secret: str
    process: ManagedProcess

    def changes(self) -> list[dict[str, Any]]:
        answer = httpx.get(f"{self.url}/_sandbox/changes", timeout=10)
        answer.raise_for_status()
        changes: list[dict[str, Any]] = answer.json()["changes"]
        return changes

    def quantities(self, inventory_item_id: str) -> list[int]:
        return [c["quantity"] for c in self.changes() if c["inventory_item_id"] == inventory_item_id]

    def order(self, webhook_url: str, line_items: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        answer = httpx.post(
            f"{self.url}/_sandbox/orders",
            json={"line_items": line_items, "webhook_url": webhook_url, **extra},
            timeout=30,
        )
        answer.raise_for_status()
        result: dict[str, Any] = answer.json()
        return result

    def configure(self, **config: Any) -> dict[str, Any]:
        answer = httpx.post(f"{self.url}/_sandbox/config", json=config, timeout=10)
        answer.raise_for_status()
        result: dict[str, Any] = answer.json()
        return result

    def redeliver(self, event_id: str, webhook_url: str) -> dict[str, Any]:
        answer = httpx.post(
            f"{self.url}/_sandbox/redeliver", json={"event_id": event_id, "webhook_url": webhook_url}, timeout=30
        )
        answer.raise_for_status()
        result: dict[str, Any] = answer.json()
        return result


@pytest.fixture
def sandbox_shopify(stack: Stack) -> Iterator[Callable[[], SandboxShopify]]:
    started: list[SandboxShopify] = []

    def start() -> SandboxShopify:
        port = free_port()
        token, secret = secrets.token_hex(12), secrets.token_hex(12)
        process = ManagedProcess(
            f"sandbox-shopify-{port}",
            [
                sys.executable,
                "-m",
                "stocksync_sandboxes",
                "shopify",
                "--port",
                str(port),
                "--access-token",
                token,
                "--webhook-secret",
                secret,
            ],
            dict(os.environ),
            stack.home / "logs" / f"sandbox-shopify-{port}.log",
            f"http://127.0.0.1:{port}/_sandbox/health",
        )
        process.start()
        process.wait_ready()
        sandbox = SandboxShopify(f"http://127.0.0.1:{port}", token, secret, process)
        started.append(sandbox)
        return sandbox

    yield start
    for sandbox in started:
        sandbox.process.stop()


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
