"""Pausing a failing connection, resuming it, its health, the push history's time
filter, and the drift check, against the channel sandboxes."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.e2e.channel_sandboxes import ChannelCase, ChannelSandboxes, case_of
from tests.e2e.conftest import Merchant, wait_for

GENERIC = case_of("generic")
READABLE = [case_of("woocommerce"), case_of("ebay")]


def test_a_connection_that_keeps_failing_is_paused_until_the_merchant_resumes_it(
    api: httpx.Client, merchant: Merchant, channel_sandboxes: ChannelSandboxes
) -> None:
    case = replace(GENERIC, settings={"pause_after_failures": 3, "pause_duration_s": 3600})
    skus = ["F-1", "F-2"]
    sandbox = channel_sandboxes.start(case, skus)
    sandbox.post("fail-next", {"count": 3, "status_code": 503})
    connection_id = channel_sandboxes.connect(sandbox, skus)
    channel_sandboxes.produce(connection_id, [(sku, 1, 9) for sku in skus])

    connection = wait_for(
        lambda: (c := api.get(f"/v1/connections/{connection_id}", headers=merchant.auth).json())["paused"] and c,
        timeout=60,
    )
    assert connection["pause_reason"].startswith("3 failed calls in a row")
    health = api.get(f"/v1/connections/{connection_id}/health", headers=merchant.auth).json()
    assert (health["status"], health["consecutive_failures"], health["pending"]) == ("paused", 3, 2)
    failed_calls = [call for call in sandbox.pushes() if call["status_code"] == 503]
    assert len(failed_calls) == 3
    # Each item of each failed call is one "retrying" row of the history.
    assert health["pushes"]["retrying"] == sum(len(call["items"]) for call in failed_calls)
    assert health["pushes"]["accepted"] == 0
    assert "HTTP 503" in health["last_error"]["channel_response"]
    assert sandbox.quantities() == {"F-1": 0, "F-2": 0}

    resumed = api.post(f"/v1/connections/{connection_id}/resume", headers=merchant.auth).json()
    assert resumed["paused"] is False
    wait_for(lambda: sandbox.quantities() == {"F-1": 9, "F-2": 9}, timeout=60)
    # The channel applies the batch just before the publisher commits its history.
    health = wait_for(
        lambda: (
            (h := api.get(f"/v1/connections/{connection_id}/health", headers=merchant.auth).json())["pending"] == 0
            and h
        )
    )
    assert (health["status"], health["consecutive_failures"], health["pending"]) == ("ok", 0, 0)
    assert health["pushes"]["accepted"] == 2


def test_a_paused_connection_resumes_by_itself_after_its_pause(
    api: httpx.Client, merchant: Merchant, channel_sandboxes: ChannelSandboxes
) -> None:
    case = replace(GENERIC, settings={"pause_after_failures": 2, "pause_duration_s": 2})
    sandbox = channel_sandboxes.start(case, ["G-1"])
    sandbox.post("fail-next", {"count": 2, "status_code": 500})
    connection_id = channel_sandboxes.connect(sandbox, ["G-1"])
    channel_sandboxes.produce(connection_id, [("G-1", 1, 5)])
    wait_for(lambda: sandbox.quantities() == {"G-1": 5}, timeout=60)
    connection = api.get(f"/v1/connections/{connection_id}", headers=merchant.auth).json()
    assert (connection["paused"], connection["resume_at"]) == (False, None)
    assert [p["status"] for p in channel_sandboxes.pushes(connection_id)] == ["retrying", "retrying", "accepted"]


def test_push_history_filters_by_time(channel_sandboxes: ChannelSandboxes) -> None:
    _, connection_id = channel_sandboxes.open(GENERIC, ["T-1"])
    before = datetime.now(UTC) - timedelta(seconds=1)
    channel_sandboxes.produce(connection_id, [("T-1", 1, 3)])
    wait_for(lambda: channel_sandboxes.pushes(connection_id, status="accepted"), timeout=60)
    after = datetime.now(UTC) + timedelta(seconds=1)
    assert [p["sku"] for p in channel_sandboxes.pushes(connection_id, since=before.isoformat())] == ["T-1"]
    assert channel_sandboxes.pushes(connection_id, since=after.isoformat()) == []
    assert channel_sandboxes.pushes(connection_id, until=before.isoformat()) == []


@pytest.mark.parametrize("case", READABLE, ids=[c.type for c in READABLE])
def test_drift_check_reports_a_quantity_changed_by_hand_on_the_channel(
    api: httpx.Client, merchant: Merchant, channel_sandboxes: ChannelSandboxes, case: ChannelCase
) -> None:
    skus = ["D-0", "D-1", "D-2"]
    sandbox, connection_id = channel_sandboxes.open(case, skus)
    channel_sandboxes.produce(connection_id, [(sku, 1, 8) for sku in skus])
    wait_for(lambda: len(channel_sandboxes.pushes(connection_id, status="accepted")) == 3, timeout=60)
    check = f"/v1/connections/{connection_id}/drift-checks"
    assert api.post(check, headers=merchant.auth).json() == []

    sandbox.post(f"listings/{case.sandbox_listing_id(1, 'D-1')}/quantity", {"quantity": 2})
    findings = api.post(check, headers=merchant.auth).json()
    assert [(f["sku"], f["sent_quantity"], f["channel_quantity"]) for f in findings] == [("D-1", 8, 2)]
    listed = api.get(f"/v1/connections/{connection_id}/drift", headers=merchant.auth).json()
    assert [(f["sku"], f["channel_quantity"]) for f in listed] == [("D-1", 2)]
    health = api.get(f"/v1/connections/{connection_id}/health", headers=merchant.auth).json()
    assert health["drift_findings"] == 1 and health["last_drift_check_at"] is not None


def test_drift_check_is_refused_for_a_channel_that_cannot_read_back(
    api: httpx.Client, merchant: Merchant, channel_sandboxes: ChannelSandboxes
) -> None:
    connection_id = channel_sandboxes.connect(channel_sandboxes.start(GENERIC), ["N-1"])
    answer = api.post(f"/v1/connections/{connection_id}/drift-checks", headers=merchant.auth)
    assert answer.status_code == 409
    assert "cannot read quantities back" in answer.json()["detail"]
