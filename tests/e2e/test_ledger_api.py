"""The stock API through the gateway: imports, adjustments, stock, ledger, oversells."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer

from stocksync_common.contracts import OrderLineMoved
from stocksync_common.db import make_engine
from stocksync_common.kafka import encode_event
from stocksync_common.topics import ORDERS
from stocksync_embedded.stack import Stack

from tests.e2e.conftest import Merchant, new_merchant, wait_for


def stock(api: httpx.Client, merchant: Merchant, sku: str) -> dict[str, int]:
    answer = api.get(f"/v1/stock/{sku}", headers=merchant.auth)
    assert answer.status_code == 200, answer.text
    body: dict[str, int] = answer.json()
    return body


def test_csv_upload_applies_good_rows_reports_bad_ones_by_line_and_ignores_stale_ones(
    api: httpx.Client, merchant: Merchant
) -> None:
    now = datetime.now(UTC)
    first = api.post(
        "/v1/stock/snapshots",
        headers={**merchant.auth, "Content-Type": "text/csv"},
        content=f"sku,on_hand,as_of\nA,5,{now.isoformat()}\nB,3,\n".encode(),
    )
    assert first.status_code == 200, first.text
    assert (first.json()["applied"], first.json()["rejected"]) == (2, 0)
    older = (now - timedelta(minutes=5)).isoformat()
    second = api.post(
        "/v1/stock/snapshots",
        headers={**merchant.auth, "Content-Type": "text/csv"},
        content=f"sku,on_hand,as_of\nA,99,{older}\nB,-2,\nC,x,\nC,4,\n".encode(),
    )
    assert second.status_code == 200, second.text
    body = second.json()
    assert (body["applied"], body["ignored_stale"], body["rejected"]) == (1, 1, 2)
    assert [(e["line"], e["field"]) for e in body["errors"]] == [(3, "on_hand"), (4, "on_hand")]
    assert (stock(api, merchant, "A")["on_hand"], stock(api, merchant, "B")["on_hand"]) == (5, 3)
    assert stock(api, merchant, "C")["on_hand"] == 4


def test_json_lines_upload_and_unsupported_content_type(api: httpx.Client, merchant: Merchant) -> None:
    lines = b'{"sku": "J1", "on_hand": 7, "brand": "Acme", "tags": ["new"]}\n{"sku": "J2"}\n'
    answer = api.post(
        "/v1/stock/snapshots", headers={**merchant.auth, "Content-Type": "application/x-ndjson"}, content=lines
    )
    assert answer.status_code == 200, answer.text
    assert (answer.json()["applied"], answer.json()["errors"]) == (
        1,
        [{"line": 2, "field": "on_hand", "message": "Field required"}],
    )
    refused = api.post("/v1/stock/snapshots", headers={**merchant.auth, "Content-Type": "text/plain"}, content=b"J1 7")
    assert refused.status_code == 415
    assert stock(api, merchant, "J1")["on_hand"] == 7


def test_adjustment_changes_on_hand_with_reason_and_who_and_a_replay_changes_nothing(
    api: httpx.Client, merchant: Merchant
) -> None:
    api.post("/v1/stock/snapshots", headers=merchant.auth, json={"items": [{"sku": "ADJ", "on_hand": 5}]})
    adjustment = {
        "sku": "ADJ",
        "delta": -2,
        "reason": "damaged",
        "actor": "warehouse@example.com",
        "adjustment_id": str(uuid.uuid4()),
    }
    first = api.post("/v1/stock/adjustments", headers=merchant.auth, json=adjustment)
    assert first.status_code == 201, first.text
    assert (first.json()["duplicate"], first.json()["stock"]["on_hand"]) == (False, 3)
    replay = api.post("/v1/stock/adjustments", headers=merchant.auth, json=adjustment)
    assert (replay.status_code, replay.json()["duplicate"], replay.json()["stock"]["on_hand"]) == (200, True, 3)
    entries = api.get("/v1/stock/ADJ/ledger", headers=merchant.auth).json()["entries"]
    assert [(e["kind"], e["delta_on_hand"], e["reason"], e["actor"]) for e in entries] == [
        ("snapshot", 5, None, None),
        ("adjustment", -2, "damaged", "warehouse@example.com"),
    ]


def test_adjustment_below_zero_or_of_zero_gets_422_naming_delta_and_changes_nothing(
    api: httpx.Client, merchant: Merchant
) -> None:
    api.post("/v1/stock/snapshots", headers=merchant.auth, json={"items": [{"sku": "NEG", "on_hand": 1}]})
    before = stock(api, merchant, "NEG")
    for delta in (-2, 0):
        answer = api.post(
            "/v1/stock/adjustments",
            headers=merchant.auth,
            json={"sku": "NEG", "delta": delta, "reason": "x", "actor": "y"},
        )
        assert answer.status_code == 422
        assert answer.json()["detail"][0]["loc"] == ["body", "delta"]
    assert stock(api, merchant, "NEG") == before


def test_stock_list_pages_by_sku_and_filters_low_available(api: httpx.Client, merchant: Merchant) -> None:
    api.post(
        "/v1/stock/snapshots",
        headers=merchant.auth,
        json={"items": [{"sku": "L1", "on_hand": 1}, {"sku": "L2", "on_hand": 10}, {"sku": "L3", "on_hand": 2}]},
    )
    low = api.get("/v1/stock", headers=merchant.auth, params={"available_at_most": 2}).json()
    assert [item["sku"] for item in low["items"]] == ["L1", "L3"]
    page = api.get("/v1/stock", headers=merchant.auth, params={"limit": 2}).json()
    assert ([i["sku"] for i in page["items"]], page["next_after"]) == (["L1", "L2"], "L2")
    rest = api.get("/v1/stock", headers=merchant.auth, params={"limit": 2, "after": "L2"}).json()
    assert ([i["sku"] for i in rest["items"]], rest["next_after"]) == (["L3"], None)


def test_another_merchants_stock_is_invisible(api: httpx.Client, merchant: Merchant, stack: Stack) -> None:
    api.post("/v1/stock/snapshots", headers=merchant.auth, json={"items": [{"sku": "MINE", "on_hand": 1}]})
    other = new_merchant(api, stack, "other")
    assert api.get("/v1/stock/MINE", headers=other.auth).status_code == 404
    assert api.get("/v1/stock", headers=other.auth).json()["items"] == []


def send_order_line(stack: Stack, merchant: Merchant, sku: str, quantity: int) -> None:
    event = OrderLineMoved(
        merchant_id=uuid.UUID(merchant.merchant_id),
        connection_id=uuid.uuid4(),
        channel_type="shopify",
        external_order_id=f"order-{uuid.uuid4().hex[:8]}",
        line_id="1",
        sku=sku,
        movement="placed",
        quantity=quantity,
        received_at=datetime.now(UTC),
        causation_id="test",
    )

    async def produce() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap_servers, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(ORDERS.name, encode_event(event), key=ORDERS.key_of(event))
        finally:
            await producer.stop()

    asyncio.run(produce())


def reconcile(stack: Stack, merchant: Merchant) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stock_ledger", "reconcile", "--merchant", merchant.merchant_id],
        env=stack.service_env("stock-ledger"),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_order_beyond_available_is_applied_and_listed_as_an_open_oversell(
    api: httpx.Client, merchant: Merchant, stack: Stack
) -> None:
    api.post("/v1/stock/snapshots", headers=merchant.auth, json={"items": [{"sku": "OV", "on_hand": 1}]})
    assert api.get("/v1/oversells", headers=merchant.auth).json() == []
    send_order_line(stack, merchant, "OV", 3)
    wait_for(lambda: stock(api, merchant, "OV")["reserved"] == 3, timeout=30)
    assert stock(api, merchant, "OV")["available"] == -2
    oversells = api.get("/v1/oversells", headers=merchant.auth).json()
    assert [(o["sku"], o["available"], o["oversold"], o["resolved_at"]) for o in oversells] == [("OV", -2, 2, None)]
    metrics = httpx.get(f"{stack.service_url('stock-ledger')}/metrics", timeout=10).text
    assert "stocksync_oversells_total" in metrics
    # A delivery of 2 units brings available back to 0: the oversell is resolved.
    api.post(
        "/v1/stock/adjustments",
        headers=merchant.auth,
        json={"sku": "OV", "delta": 2, "reason": "delivery", "actor": "tester"},
    )
    assert api.get("/v1/oversells", headers=merchant.auth).json() == []
    resolved = api.get("/v1/oversells", headers=merchant.auth, params={"status": "resolved"}).json()
    assert resolved[0]["resolved_at"] is not None


def test_reconcile_exits_0_when_ledger_rows_and_events_agree_and_1_after_tampering(
    api: httpx.Client, merchant: Merchant, stack: Stack
) -> None:
    api.post("/v1/stock/snapshots", headers=merchant.auth, json={"items": [{"sku": "R", "on_hand": 4}]})
    send_order_line(stack, merchant, "R", 1)
    wait_for(lambda: stock(api, merchant, "R")["reserved"] == 1, timeout=30)
    # The relay publishes right after the commit; until then the outbox counts as emitted.
    clean = reconcile(stack, merchant)
    assert clean.returncode == 0, clean.stdout + clean.stderr

    async def tamper() -> None:
        engine = make_engine(stack.database_url or "", pool_size=1)
        async with engine.begin() as conn:
            await conn.execute(
                sa.text("UPDATE stock_ledger.stock_items SET on_hand = on_hand + 1 WHERE merchant_id = :m"),
                {"m": uuid.UUID(merchant.merchant_id)},
            )
        await engine.dispose()

    asyncio.run(tamper())
    tampered = reconcile(stack, merchant)
    assert tampered.returncode == 1
    assert "ledger_sum_on_hand: " in tampered.stdout and "expected 4, found 5" in tampered.stdout
