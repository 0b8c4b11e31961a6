"""Every channel adapter against its sandbox, over the real broker and the publisher process.

Quantities are produced straight onto channel.quantity.v1 (the rule engine's output), so
each test controls versions exactly. Each sandbox checks requests as its channel does
and records every call, which is what the assertions read.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import replace
from typing import Any

import httpx
import pytest

from tests.e2e.channel_sandboxes import CASES, SECRET, ChannelCase, ChannelSandboxes, case_of
from tests.e2e.conftest import Merchant, wait_for


@pytest.mark.parametrize("case", CASES, ids=[c.type for c in CASES])
def test_a_burst_of_1000_changes_on_300_skus_arrives_in_the_fewest_calls_with_only_final_quantities(
    api: httpx.Client, merchant: Merchant, channel_sandboxes: ChannelSandboxes, case: ChannelCase
) -> None:
    skus = [f"SKU-{i:03d}" for i in range(300)]
    sandbox, connection_id = channel_sandboxes.open(case, skus)
    # Paused while the burst arrives, so every SKU has coalesced before the first call.
    assert api.post(f"/v1/connections/{connection_id}/pause", headers=merchant.auth).json()["paused"] is True
    # 1,000 changes: every SKU gets versions 1..3, the first 100 a 4th; quantities fall.
    changes = [(sku, version, 100 - version) for version in (1, 2, 3) for sku in skus]
    changes += [(sku, 4, 96) for sku in skus[:100]]
    assert len(changes) == 1000
    channel_sandboxes.produce(connection_id, changes)
    final = {sku: 96 if i < 100 else 97 for i, sku in enumerate(skus)}

    def coalesced() -> bool:
        pending = api.get(
            f"/v1/connections/{connection_id}/pending", headers=merchant.auth, params={"limit": 10_000}
        ).json()
        return {p["sku"]: p["quantity"] for p in pending} == final

    wait_for(coalesced, timeout=60)
    assert api.post(f"/v1/connections/{connection_id}/resume", headers=merchant.auth).json()["paused"] is False
    wait_for(lambda: sandbox.quantities() == final, timeout=90)

    calls = sandbox.pushes()
    assert len(calls) == math.ceil(300 / min(case.per_call, case.settings.get("batch_limit", case.per_call)))
    assert all(call["status_code"] < 300 for call in calls)
    # Only the newest quantity of each SKU was ever sent: nothing stale, nothing twice.
    assert sandbox.histories() == {sku: [quantity] for sku, quantity in final.items()}
    stats = sandbox.get("stats")
    assert (stats["rate_limited"], stats["early_retries"], stats["unauthorized"], stats["invalid"]) == (0, 0, 0, 0)
    # The channel applies a batch before the publisher's transaction commits its history.
    history = wait_for(lambda: len(h := channel_sandboxes.pushes(connection_id, status="accepted")) == 300 and h)
    assert sorted((p["sku"], p["quantity"]) for p in history) == sorted(final.items())


@pytest.mark.parametrize("case", CASES, ids=[c.type for c in CASES])
def test_a_429_with_retry_after_is_honoured(channel_sandboxes: ChannelSandboxes, case: ChannelCase) -> None:
    skus = [f"R-{i}" for i in range(5)]
    sandbox = channel_sandboxes.start(case, skus)
    sandbox.post("fail-next", {"count": 1, "status_code": 429, "retry_after": 2})
    connection_id = channel_sandboxes.connect(sandbox, skus)
    channel_sandboxes.produce(connection_id, [(sku, 1, 7) for sku in skus])
    wait_for(lambda: sandbox.quantities() == dict.fromkeys(skus, 7), timeout=60)
    stats = sandbox.get("stats")
    assert (stats["injected_failures"], stats["early_retries"]) == (1, 0)
    retried = channel_sandboxes.pushes(connection_id, status="retrying")
    assert retried and all(
        p["channel_response"].startswith("HTTP 429") or "Retry-After" in p["channel_response"] for p in retried
    )
    wait_for(lambda: {p["sku"] for p in channel_sandboxes.pushes(connection_id, status="accepted")} == set(skus))


@pytest.mark.parametrize("case", [c for c in CASES if c.per_sku_failures], ids=lambda c: c.type)
def test_a_partial_failure_retries_only_the_failed_skus(channel_sandboxes: ChannelSandboxes, case: ChannelCase) -> None:
    skus = [f"P-{i}" for i in range(10)]
    sandbox = channel_sandboxes.start(case, skus)
    sandbox.post("fail-skus", {"skus": ["P-3", "P-7"], "times": 1})
    connection_id = channel_sandboxes.connect(sandbox, skus)
    channel_sandboxes.produce(connection_id, [(sku, 1, 11) for sku in skus])
    wait_for(lambda: sandbox.quantities() == dict.fromkeys(skus, 11), timeout=60)
    sent = Counter(item["sku"] for call in sandbox.pushes() for item in call["items"])
    assert sent == {sku: 2 if sku in ("P-3", "P-7") else 1 for sku in skus}
    assert sandbox.histories() == {sku: [11] for sku in skus}
    retried = channel_sandboxes.pushes(connection_id, status="retrying")
    assert sorted(p["sku"] for p in retried) == ["P-3", "P-7"]


@pytest.mark.parametrize("case", CASES, ids=[c.type for c in CASES])
def test_a_permanent_error_is_recorded_with_the_channels_message_and_not_retried(
    channel_sandboxes: ChannelSandboxes, case: ChannelCase
) -> None:
    skus = [f"X-{i}" for i in range(6)]
    sandbox = channel_sandboxes.start(case, skus, leave_out=frozenset({"X-2"}))
    connection_id = channel_sandboxes.connect(sandbox, skus)
    channel_sandboxes.produce(connection_id, [(sku, 1, 4) for sku in skus])
    rejected = wait_for(lambda: channel_sandboxes.pushes(connection_id, status="rejected"), timeout=60)
    wait_for(lambda: len(channel_sandboxes.pushes(connection_id, status="accepted")) == 5, timeout=60)
    assert [p["sku"] for p in rejected] == ["X-2"]
    assert case.unknown_listing_message in rejected[0]["channel_response"]
    assert sandbox.quantities() == {sku: 4 for sku in skus if sku != "X-2"}
    sent = Counter(item["sku"] for call in sandbox.pushes() for item in call["items"])
    assert sent[case.unknown_item_label(2, "X-2")] == 1


TOKEN_CASES = [c for c in CASES if c.type in ("amazon", "ebay", "walmart")]


@pytest.mark.parametrize("case", TOKEN_CASES, ids=[c.type for c in TOKEN_CASES])
def test_pushes_continue_across_access_token_expiry(
    api: httpx.Client, merchant: Merchant, channel_sandboxes: ChannelSandboxes, case: ChannelCase
) -> None:
    skus = ["TOK-1", "TOK-2"]
    lifetime = 4.0
    short_lived = replace(case, sandbox_args=[*case.sandbox_args, "--token-lifetime", str(lifetime)])
    sandbox, connection_id = channel_sandboxes.open(short_lived, skus)
    channel_sandboxes.produce(connection_id, [("TOK-1", 1, 3)])
    wait_for(lambda: sandbox.quantities()["TOK-1"] == 3)
    first_token_at = sandbox.get("stats")["tokens_issued"]
    # Past the first token's life, the next quantities still go through.
    time.sleep(lifetime + 1)
    channel_sandboxes.produce(connection_id, [("TOK-2", 1, 4), ("TOK-1", 2, 5)])
    wait_for(lambda: sandbox.quantities() == {"TOK-1": 5, "TOK-2": 4}, timeout=60)
    stats = sandbox.get("stats")
    assert first_token_at == 1 and stats["tokens_issued"] >= 2
    assert (stats["unauthorized"], stats["rate_limited"]) == (0, 0)
    accepted = channel_sandboxes.pushes(connection_id, status="accepted")
    assert sorted((p["sku"], p["quantity"]) for p in accepted) == [("TOK-1", 3), ("TOK-1", 5), ("TOK-2", 4)]
    health = api.get(f"/v1/connections/{connection_id}/health", headers=merchant.auth).json()
    assert health["credentials"]["error"] is None and health["credentials"]["token_expires_at"] is not None


def test_credentials_that_cannot_refresh_are_a_connection_error_and_no_sku_is_rejected(
    api: httpx.Client, merchant: Merchant, channel_sandboxes: ChannelSandboxes
) -> None:
    sandbox = channel_sandboxes.start(case_of("walmart"), ["CRED-1"])
    connection_id = channel_sandboxes.connect(sandbox, ["CRED-1"], credentials={"client_secret": "revoked-secret"})
    channel_sandboxes.produce(connection_id, [("CRED-1", 1, 8)])

    def refused() -> dict[str, Any] | None:
        health: dict[str, Any] = api.get(f"/v1/connections/{connection_id}/health", headers=merchant.auth).json()
        return health if (health["credentials"] or {}).get("error") else None

    health = wait_for(refused, timeout=60)
    assert "token refresh refused: HTTP 401" in health["credentials"]["error"]
    assert health["status"] in ("failing", "paused")
    # The quantity waits for the merchant to fix the credentials; no SKU is blamed for it.
    pending = api.get(f"/v1/connections/{connection_id}/pending", headers=merchant.auth).json()
    assert [(p["sku"], p["quantity"]) for p in pending] == [("CRED-1", 8)]
    assert channel_sandboxes.pushes(connection_id) == []
    assert sandbox.quantities() == {"CRED-1": 0}


def test_a_woocommerce_product_not_managing_stock_is_reported_never_accepted(
    channel_sandboxes: ChannelSandboxes,
) -> None:
    skus = ["WOO-M", "WOO-U"]
    sandbox = channel_sandboxes.start(case_of("woocommerce"), skus)
    sandbox.post("stock-management", {"product_id": 1001, "manage_stock": False})
    connection_id = channel_sandboxes.connect(sandbox, skus, settings={"manage_stock": False})
    channel_sandboxes.produce(connection_id, [("WOO-M", 1, 12), ("WOO-U", 1, 12)])
    rejected = wait_for(lambda: channel_sandboxes.pushes(connection_id, status="rejected"), timeout=60)
    assert [p["sku"] for p in rejected] == ["WOO-U"]
    assert "does not manage stock" in rejected[0]["channel_response"]
    accepted = wait_for(lambda: channel_sandboxes.pushes(connection_id, status="accepted"), timeout=60)
    assert [(p["sku"], p["quantity"]) for p in accepted] == [("WOO-M", 12)]
    assert sandbox.quantities() == {"WOO-M": 12, "WOO-U": 0}


def test_skus_the_connection_does_not_list_are_summarised_not_written_per_change(
    api: httpx.Client, merchant: Merchant, channel_sandboxes: ChannelSandboxes
) -> None:
    _, connection_id = channel_sandboxes.open(case_of("woocommerce"), ["MAP-1"])
    channel_sandboxes.produce(connection_id, [("MAP-1", 1, 2), ("NOMAP-1", 1, 5), ("NOMAP-2", 1, 6)])
    wait_for(lambda: channel_sandboxes.pushes(connection_id, status="accepted"), timeout=60)
    unmapped = wait_for(
        lambda: len(u := api.get(f"/v1/connections/{connection_id}/unmapped", headers=merchant.auth).json()) == 2 and u,
        timeout=60,
    )
    channel_sandboxes.produce(connection_id, [("NOMAP-1", 2, 4)])
    again = wait_for(
        lambda: (
            (u := api.get(f"/v1/connections/{connection_id}/unmapped", headers=merchant.auth).json())[0]["changes"] == 2
            and u
        ),
        timeout=60,
    )
    assert [(u["sku"], u["changes"], u["last_quantity"]) for u in unmapped] == [("NOMAP-1", 1, 5), ("NOMAP-2", 1, 6)]
    assert [(u["sku"], u["changes"], u["last_quantity"]) for u in again] == [("NOMAP-1", 2, 4), ("NOMAP-2", 1, 6)]
    assert {p["sku"] for p in channel_sandboxes.pushes(connection_id)} == {"MAP-1"}
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
