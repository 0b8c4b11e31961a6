"""Every channel adapter against its sandbox, over the real broker and the publisher process.

Quantities are produced straight onto channel.quantity.v1 (the rule engine's output), so
each test controls versions exactly. Each sandbox checks requests as its channel does
and records every call, which is what the assertions read.
"""

from __future__ import annotations

import asyncio
import base64
import math
import os
import secrets
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from stocksync_common.contracts import ChannelQuantityChanged
from stocksync_common.kafka import encode_event
from stocksync_common.topics import CHANNEL_QUANTITY
from stocksync_embedded.stack import ManagedProcess, Stack

from tests.conftest import free_port
from tests.e2e.conftest import Merchant, wait_for

SECRET = secrets.token_hex(12)
SIGNING_SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


@dataclass(frozen=True)
class ChannelCase:
    type: str
    sandbox_args: list[str]
    credentials: dict[str, Any]
    settings: dict[str, Any]
    # How many items one call carries (1: one SKU per call).
    per_call: int
    # A word of the channel's own message for a listing it does not have.
    unknown_listing_message: str
    # Whether a per-SKU transient failure leaves the other SKUs of the call accepted.
    per_sku_failures: bool = True
    # The publisher path of the push, to tell pushes from reads in the sandbox's calls.
    push_operation: str = ""
    inbound: dict[str, Any] = field(default_factory=dict)

    def listing(self, index: int, sku: str) -> dict[str, Any]:
        return {"sku": sku, "product_id": 1000 + index} if self.type == "woocommerce" else {"sku": sku}

    def sandbox_listing_id(self, index: int, sku: str) -> str:
        return str(1000 + index) if self.type == "woocommerce" else sku

    def unknown_item_label(self, index: int, sku: str) -> str:
        """How the sandbox's call record names an item it has no listing for."""
        return f"id:{1000 + index}" if self.type == "woocommerce" else sku


# Test limits are higher than the channels' own so that a 300-SKU burst stays short;
# the adapters' defaults follow the channels (docs/channels.md).
CASES = [
    ChannelCase(
        "woocommerce",
        ["--consumer-key", "ck_test", "--consumer-secret", SECRET],
        {"consumer_key": "ck_test", "consumer_secret": SECRET},
        {},
        100,
        "Invalid ID.",
        push_operation="products/batch",
    ),
    ChannelCase(
        "amazon",
        [
            "--seller-id",
            "A2SELLER",
            *("--client-id", "amzn1.application-oa2-client.test", "--client-secret", SECRET),
            *("--refresh-token", "Atzr|" + SECRET, "--requests-per-second", "60", "--burst", "20"),
        ],
        {
            "seller_id": "A2SELLER",
            "marketplace_ids": ["A1PA6795UKMFR9"],
            "client_id": "amzn1.application-oa2-client.test",
            "client_secret": SECRET,
            "refresh_token": "Atzr|" + SECRET,
        },
        {"requests_per_second": 50, "burst": 10, "batch_limit": 50},
        1,
        "does not match any listing",
        push_operation="patchListingsItem",
        inbound={"api_key": "inbound-key-" + SECRET},
    ),
    ChannelCase(
        "ebay",
        [
            *("--client-id", "app-id", "--client-secret", SECRET, "--refresh-token", "v^1.1#" + SECRET),
            *("--requests-per-second", "50", "--burst", "20"),
        ],
        {"client_id": "app-id", "client_secret": SECRET, "refresh_token": "v^1.1#" + SECRET},
        {"skus_per_call": 25},
        25,
        "is not available in the system",
        push_operation="bulk_update_price_quantity",
    ),
    ChannelCase(
        "mirakl",
        [
            *("--api-key", SECRET, "--min-interval", "2", "--processing-delay", "0.2"),
            *("--status-interval", "0.3", "--report-interval", "0.6"),
        ],
        {"api_key": SECRET},
        {"min_interval_s": 2.5, "status_poll_interval_s": 0.5, "error_report_interval_s": 1.0},
        10_000,
        "The offer does not exist",
        per_sku_failures=False,
        push_operation="STO01",
    ),
    ChannelCase(
        "walmart",
        ["--client-id", "walmart-client", "--client-secret", SECRET, "--requests-per-second", "60", "--burst", "20"],
        {"client_id": "walmart-client", "client_secret": SECRET},
        {"requests_per_second": 50, "burst": 10, "batch_limit": 50},
        1,
        "could not be found",
        push_operation="inventory",
    ),
    ChannelCase(
        "generic",
        ["--signing-secret", SIGNING_SECRET],
        {"signing_secret": SIGNING_SECRET},
        {},
        100,
        "unknown SKU",
        per_sku_failures=False,
        push_operation="webhook",
    ),
]


@dataclass
class Sandbox:
    url: str
    process: ManagedProcess

    def get(self, path: str) -> Any:
        answer = httpx.get(f"{self.url}/_sandbox/{path}", timeout=10)
        answer.raise_for_status()
        return answer.json()

    def post(self, path: str, body: dict[str, Any]) -> Any:
        answer = httpx.post(f"{self.url}/_sandbox/{path}", json=body, timeout=10)
        answer.raise_for_status()
        return answer.json()

    def quantities(self) -> dict[str, int]:
        return {listing["sku"]: listing["quantity"] for listing in self.get("listings")["listings"]}

    def histories(self) -> dict[str, list[int]]:
        return {listing["sku"]: listing["history"] for listing in self.get("listings")["listings"]}

    def pushes(self, operation: str) -> list[dict[str, Any]]:
        return [call for call in self.get("calls")["calls"] if call["operation"] == operation]


@pytest.fixture
def start_sandbox(stack: Stack) -> Iterator[Callable[[ChannelCase], Sandbox]]:
    started: list[Sandbox] = []

    def start(case: ChannelCase) -> Sandbox:
        port = free_port()
        process = ManagedProcess(
            f"sandbox-{case.type}-{port}",
            [sys.executable, "-m", "stocksync_sandboxes", case.type, "--port", str(port), *case.sandbox_args],
            dict(os.environ),
            stack.home / "logs" / f"sandbox-{case.type}-{port}.log",
            f"http://127.0.0.1:{port}/_sandbox/health",
        )
        process.start()
        process.wait_ready()
        sandbox = Sandbox(f"http://127.0.0.1:{port}", process)
        started.append(sandbox)
        return sandbox

    yield start
    for sandbox in started:
        sandbox.process.stop()


def connect(
    api: httpx.Client,
    merchant: Merchant,
    case: ChannelCase,
    sandbox: Sandbox,
    skus: list[str],
    settings: dict[str, Any] | None = None,
    credentials: dict[str, Any] | None = None,
) -> str:
    base_url = f"{sandbox.url}/stocksync/quantities" if case.type == "generic" else sandbox.url
    given = {**case.credentials, **(credentials or {})}
    if case.type == "amazon":
        # Login with Amazon is its own host; the sandbox serves it beside the SP-API.
        given["token_url"] = f"{sandbox.url}/auth/o2/token"
    answer = api.post(
        "/v1/connections",
        headers=merchant.auth,
        json={
            "type": case.type,
            "name": f"{case.type} under test",
            "base_url": base_url,
            "credentials": given,
            "webhook_secret": "inbound-" + SECRET,
            "settings": {**case.settings, **(settings or {})},
            "inbound": case.inbound,
            "listings": [case.listing(i, sku) for i, sku in enumerate(skus)],
        },
    )
    assert answer.status_code == 201, answer.text
    connection_id: str = answer.json()["connection_id"]
    return connection_id


def seed(sandbox: Sandbox, case: ChannelCase, skus: list[str], leave_out: frozenset[str] = frozenset()) -> None:
    sandbox.post(
        "listings",
        {
            "listings": [
                {"sku": sku, "listing_id": case.sandbox_listing_id(i, sku), "quantity": 0}
                for i, sku in enumerate(skus)
                if sku not in leave_out
            ]
        },
    )


def produce(stack: Stack, merchant: Merchant, connection_id: str, changes: list[tuple[str, int, int]]) -> None:
    """Put (sku, version, quantity) changes on channel.quantity.v1, in order."""

    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap_servers, acks="all", linger_ms=5)
        await producer.start()
        try:
            for sku, version, quantity in changes:
                event = ChannelQuantityChanged(
                    merchant_id=uuid.UUID(merchant.merchant_id),
                    connection_id=uuid.UUID(connection_id),
                    sku=sku,
                    quantity=quantity,
                    version=version,
                    stock_version=version,
                    available=quantity,
                    causation_id=f"test:{sku}:{version}",
                )
                await producer.send(CHANNEL_QUANTITY.name, encode_event(event), key=CHANNEL_QUANTITY.key_of(event))
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(send())


def pushes(api: httpx.Client, merchant: Merchant, connection_id: str, **filters: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    after = 0
    while True:
        page = api.get(
            "/v1/pushes",
            headers=merchant.auth,
            params={"connection_id": connection_id, "after": after, "limit": 1000, **filters},
        ).json()
        found += page
        if len(page) < 1000:
            return found
        after = page[-1]["push_id"]


@pytest.mark.parametrize("case", CASES, ids=[c.type for c in CASES])
def test_a_burst_of_1000_changes_on_300_skus_arrives_in_the_fewest_calls_with_only_final_quantities(
    api: httpx.Client,
    merchant: Merchant,
    stack: Stack,
    start_sandbox: Callable[[ChannelCase], Sandbox],
    case: ChannelCase,
) -> None:
    skus = [f"SKU-{i:03d}" for i in range(300)]
    sandbox = start_sandbox(case)
    seed(sandbox, case, skus)
    connection_id = connect(api, merchant, case, sandbox, skus)
    # Paused while the burst arrives, so every SKU has coalesced before the first call.
    assert api.post(f"/v1/connections/{connection_id}/pause", headers=merchant.auth).json()["paused"] is True
    # 1,000 changes: every SKU gets versions 1..3, the first 100 a 4th; quantities fall.
    changes = [(sku, version, 100 - version) for version in (1, 2, 3) for sku in skus]
    changes += [(sku, 4, 96) for sku in skus[:100]]
    assert len(changes) == 1000
    produce(stack, merchant, connection_id, changes)
    final = {sku: 96 if i < 100 else 97 for i, sku in enumerate(skus)}

    def coalesced() -> bool:
        pending = api.get(
            f"/v1/connections/{connection_id}/pending", headers=merchant.auth, params={"limit": 10_000}
        ).json()
        return {p["sku"]: p["quantity"] for p in pending} == final

    wait_for(coalesced, timeout=60)
    assert api.post(f"/v1/connections/{connection_id}/resume", headers=merchant.auth).json()["paused"] is False
    wait_for(lambda: sandbox.quantities() == final, timeout=90)

    calls = sandbox.pushes(case.push_operation)
    assert len(calls) == math.ceil(300 / min(case.per_call, case.settings.get("batch_limit", case.per_call)))
    assert all(call["status_code"] < 300 for call in calls)
    # Only the newest quantity of each SKU was ever sent: nothing stale, nothing twice.
    assert sandbox.histories() == {sku: [quantity] for sku, quantity in final.items()}
    stats = sandbox.get("stats")
    assert (stats["rate_limited"], stats["early_retries"], stats["unauthorized"], stats["invalid"]) == (0, 0, 0, 0)
    # The channel applies a batch before the publisher's transaction commits its history.
    history = wait_for(lambda: len(h := pushes(api, merchant, connection_id, status="accepted")) == 300 and h)
    assert sorted((p["sku"], p["quantity"]) for p in history) == sorted(final.items())


@pytest.mark.parametrize("case", CASES, ids=[c.type for c in CASES])
def test_a_429_with_retry_after_is_honoured(
    api: httpx.Client,
    merchant: Merchant,
    stack: Stack,
    start_sandbox: Callable[[ChannelCase], Sandbox],
    case: ChannelCase,
) -> None:
    skus = [f"R-{i}" for i in range(5)]
    sandbox = start_sandbox(case)
    seed(sandbox, case, skus)
    sandbox.post("fail-next", {"count": 1, "status_code": 429, "retry_after": 2})
    connection_id = connect(api, merchant, case, sandbox, skus)
    produce(stack, merchant, connection_id, [(sku, 1, 7) for sku in skus])
    wait_for(lambda: sandbox.quantities() == dict.fromkeys(skus, 7), timeout=60)
    stats = sandbox.get("stats")
    assert (stats["injected_failures"], stats["early_retries"]) == (1, 0)
    retried = pushes(api, merchant, connection_id, status="retrying")
    assert retried and all(
        p["channel_response"].startswith("HTTP 429") or "Retry-After" in p["channel_response"] for p in retried
    )
    wait_for(lambda: {p["sku"] for p in pushes(api, merchant, connection_id, status="accepted")} == set(skus))


@pytest.mark.parametrize("case", [c for c in CASES if c.per_sku_failures], ids=lambda c: c.type)
def test_a_partial_failure_retries_only_the_failed_skus(
    api: httpx.Client,
    merchant: Merchant,
    stack: Stack,
    start_sandbox: Callable[[ChannelCase], Sandbox],
    case: ChannelCase,
) -> None:
    skus = [f"P-{i}" for i in range(10)]
    sandbox = start_sandbox(case)
    seed(sandbox, case, skus)
    sandbox.post("fail-skus", {"skus": ["P-3", "P-7"], "times": 1})
    connection_id = connect(api, merchant, case, sandbox, skus)
    produce(stack, merchant, connection_id, [(sku, 1, 11) for sku in skus])
    wait_for(lambda: sandbox.quantities() == dict.fromkeys(skus, 11), timeout=60)
    sent = Counter(item["sku"] for call in sandbox.pushes(case.push_operation) for item in call["items"])
    assert sent == {sku: 2 if sku in ("P-3", "P-7") else 1 for sku in skus}
    assert sandbox.histories() == {sku: [11] for sku in skus}
    retried = pushes(api, merchant, connection_id, status="retrying")
    assert sorted(p["sku"] for p in retried) == ["P-3", "P-7"]


@pytest.mark.parametrize("case", CASES, ids=[c.type for c in CASES])
def test_a_permanent_error_is_recorded_with_the_channels_message_and_not_retried(
    api: httpx.Client,
    merchant: Merchant,
    stack: Stack,
    start_sandbox: Callable[[ChannelCase], Sandbox],
    case: ChannelCase,
) -> None:
    skus = [f"X-{i}" for i in range(6)]
    sandbox = start_sandbox(case)
    seed(sandbox, case, skus, leave_out=frozenset({"X-2"}))
    connection_id = connect(api, merchant, case, sandbox, skus)
    produce(stack, merchant, connection_id, [(sku, 1, 4) for sku in skus])
    rejected = wait_for(lambda: pushes(api, merchant, connection_id, status="rejected"), timeout=60)
    wait_for(lambda: len(pushes(api, merchant, connection_id, status="accepted")) == 5, timeout=60)
    assert [p["sku"] for p in rejected] == ["X-2"]
    assert case.unknown_listing_message in rejected[0]["channel_response"]
    assert sandbox.quantities() == {sku: 4 for sku in skus if sku != "X-2"}
    sent = Counter(item["sku"] for call in sandbox.pushes(case.push_operation) for item in call["items"])
    assert sent[case.unknown_item_label(2, "X-2")] == 1


TOKEN_CASES = [c for c in CASES if c.type in ("amazon", "ebay", "walmart")]


@pytest.mark.parametrize("case", TOKEN_CASES, ids=[c.type for c in TOKEN_CASES])
def test_pushes_continue_across_access_token_expiry(
    api: httpx.Client,
    merchant: Merchant,
    stack: Stack,
    start_sandbox: Callable[[ChannelCase], Sandbox],
    case: ChannelCase,
) -> None:
    skus = ["TOK-1", "TOK-2"]
    lifetime = 4.0
    sandbox = start_sandbox(replace(case, sandbox_args=[*case.sandbox_args, "--token-lifetime", str(lifetime)]))
    seed(sandbox, case, skus)
    connection_id = connect(api, merchant, case, sandbox, skus)
    produce(stack, merchant, connection_id, [("TOK-1", 1, 3)])
    wait_for(lambda: sandbox.quantities()["TOK-1"] == 3)
    first_token_at = sandbox.get("stats")["tokens_issued"]
    # Past the first token's life, the next quantities still go through.
    time.sleep(lifetime + 1)
    produce(stack, merchant, connection_id, [("TOK-2", 1, 4), ("TOK-1", 2, 5)])
    wait_for(lambda: sandbox.quantities() == {"TOK-1": 5, "TOK-2": 4}, timeout=60)
    stats = sandbox.get("stats")
    assert first_token_at == 1 and stats["tokens_issued"] >= 2
    assert (stats["unauthorized"], stats["rate_limited"]) == (0, 0)
    accepted = pushes(api, merchant, connection_id, status="accepted")
    assert sorted((p["sku"], p["quantity"]) for p in accepted) == [("TOK-1", 3), ("TOK-1", 5), ("TOK-2", 4)]
    health = api.get(f"/v1/connections/{connection_id}/health", headers=merchant.auth).json()
    assert health["credentials"]["error"] is None and health["credentials"]["token_expires_at"] is not None


def test_credentials_that_cannot_refresh_are_a_connection_error_and_no_sku_is_rejected(
    api: httpx.Client,
    merchant: Merchant,
    stack: Stack,
    start_sandbox: Callable[[ChannelCase], Sandbox],
) -> None:
    case = next(c for c in CASES if c.type == "walmart")
    sandbox = start_sandbox(case)
    seed(sandbox, case, ["CRED-1"])
    connection_id = connect(api, merchant, case, sandbox, ["CRED-1"], credentials={"client_secret": "revoked-secret"})
    produce(stack, merchant, connection_id, [("CRED-1", 1, 8)])

    def refused() -> dict[str, Any] | None:
        health: dict[str, Any] = api.get(f"/v1/connections/{connection_id}/health", headers=merchant.auth).json()
        return health if (health["credentials"] or {}).get("error") else None

    health = wait_for(refused, timeout=60)
    assert "token refresh refused: HTTP 401" in health["credentials"]["error"]
    assert health["status"] in ("failing", "paused")
    # The quantity waits for the merchant to fix the credentials; no SKU is blamed for it.
    pending = api.get(f"/v1/connections/{connection_id}/pending", headers=merchant.auth).json()
    assert [(p["sku"], p["quantity"]) for p in pending] == [("CRED-1", 8)]
    assert pushes(api, merchant, connection_id) == []
    assert sandbox.quantities() == {"CRED-1": 0}


def test_a_woocommerce_product_not_managing_stock_is_reported_never_accepted(
    api: httpx.Client,
    merchant: Merchant,
    stack: Stack,
    start_sandbox: Callable[[ChannelCase], Sandbox],
) -> None:
    case = next(c for c in CASES if c.type == "woocommerce")
    skus = ["WOO-M", "WOO-U"]
    sandbox = start_sandbox(case)
    seed(sandbox, case, skus)
    sandbox.post("stock-management", {"product_id": 1001, "manage_stock": False})
    connection_id = connect(api, merchant, case, sandbox, skus, settings={"manage_stock": False})
    produce(stack, merchant, connection_id, [("WOO-M", 1, 12), ("WOO-U", 1, 12)])
    rejected = wait_for(lambda: pushes(api, merchant, connection_id, status="rejected"), timeout=60)
    assert [p["sku"] for p in rejected] == ["WOO-U"]
    assert "does not manage stock" in rejected[0]["channel_response"]
    accepted = wait_for(lambda: pushes(api, merchant, connection_id, status="accepted"), timeout=60)
    assert [(p["sku"], p["quantity"]) for p in accepted] == [("WOO-M", 12)]
    assert sandbox.quantities() == {"WOO-M": 12, "WOO-U": 0}


def test_skus_the_connection_does_not_list_are_summarised_not_written_per_change(
    api: httpx.Client,
    merchant: Merchant,
    stack: Stack,
    start_sandbox: Callable[[ChannelCase], Sandbox],
) -> None:
    case = next(c for c in CASES if c.type == "woocommerce")
    sandbox = start_sandbox(case)
    seed(sandbox, case, ["MAP-1"])
    connection_id = connect(api, merchant, case, sandbox, ["MAP-1"])
    produce(stack, merchant, connection_id, [("MAP-1", 1, 2), ("NOMAP-1", 1, 5), ("NOMAP-2", 1, 6)])
    wait_for(lambda: pushes(api, merchant, connection_id, status="accepted"), timeout=60)
    unmapped = wait_for(
        lambda: len(u := api.get(f"/v1/connections/{connection_id}/unmapped", headers=merchant.auth).json()) == 2 and u,
        timeout=60,
    )
    produce(stack, merchant, connection_id, [("NOMAP-1", 2, 4)])
    again = wait_for(
        lambda: (
            (u := api.get(f"/v1/connections/{connection_id}/unmapped", headers=merchant.auth).json())[0]["changes"] == 2
            and u
        ),
        timeout=60,
    )
    assert [(u["sku"], u["changes"], u["last_quantity"]) for u in unmapped] == [("NOMAP-1", 1, 5), ("NOMAP-2", 1, 6)]
    assert [(u["sku"], u["changes"], u["last_quantity"]) for u in again] == [("NOMAP-1", 2, 4), ("NOMAP-2", 1, 6)]
    assert {p["sku"] for p in pushes(api, merchant, connection_id)} == {"MAP-1"}
    health = api.get(f"/v1/connections/{connection_id}/health", headers=merchant.auth).json()
    assert health["unmapped_skus"] == 2


@pytest.mark.parametrize(
    ("channel", "credentials", "settings", "field"),
    [
        ("amazon", {"seller_id": "S", "marketplace_ids": ["M"], "access_token": "Atza|x"}, {}, "client_id"),
        ("ebay", {"access_token": "v^1.1#x"}, {}, "refresh_token"),
        ("walmart", {"client_id": "c"}, {}, "client_secret"),
        ("shopify", {"client_id": "c", "client_secret": "s"}, {}, "credentials"),
        (
            "ebay",
            {"client_id": "c", "client_secret": "s", "refresh_token": "r"},
            {"skus_per_call": 26},
            "skus_per_call",
        ),
        ("woocommerce", {"consumer_key": "k", "consumer_secret": "s"}, {"manage_stock": "maybe"}, "manage_stock"),
        ("mirakl", {"api_key": "k"}, {"status_poll_interval_s": 0}, "status_poll_interval_s"),
    ],
)
def test_a_connection_with_credentials_or_settings_of_the_wrong_shape_is_a_422_naming_the_field(
    api: httpx.Client,
    merchant: Merchant,
    channel: str,
    credentials: dict[str, Any],
    settings: dict[str, Any],
    field: str,
) -> None:
    answer = api.post(
        "/v1/connections",
        headers=merchant.auth,
        json={
            "type": channel,
            "name": "wrong shape",
            "base_url": "https://example.invalid",
            "credentials": credentials,
            "webhook_secret": "inbound-" + SECRET,
            "settings": settings,
        },
    )
    assert answer.status_code == 422, answer.text
    assert any(field in ".".join(map(str, error["loc"])) for error in answer.json()["detail"]), answer.text
    listed = api.get("/v1/connections", headers=merchant.auth).json()
    assert [c for c in listed if c["name"] == "wrong shape"] == []
