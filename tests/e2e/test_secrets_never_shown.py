"""Secrets stay secret: no API answer and no log line ever holds a credential, webhook
secret or API key the test created, and their columns hold them only encrypted."""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid

import asyncpg
import httpx

from stocksync_embedded.stack import Stack
from stocksync_sandboxes import generic_orders

from tests.e2e.conftest import Merchant, wait_for


def test_no_answer_log_or_column_holds_a_secret_in_clear(api: httpx.Client, merchant: Merchant, stack: Stack) -> None:
    webhook_secret, rotated = generic_orders.new_secret(), generic_orders.new_secret()
    signing_secret, amazon_token = generic_orders.new_secret(), f"Atzr|{secrets.token_hex(16)}"
    amazon_client_secret = f"amzn1.oa2-cs.v1.{secrets.token_hex(16)}"
    amazon_inbound_key = secrets.token_hex(16)
    created = [webhook_secret, rotated, signing_secret, amazon_token, amazon_client_secret, amazon_inbound_key]
    answers: list[httpx.Response] = []

    def call(method: str, url: str, **kwargs: object) -> httpx.Response:
        answer = api.request(method, url, headers=merchant.auth, **kwargs)  # type: ignore[arg-type]
        answers.append(answer)
        return answer

    generic = call(
        "POST",
        "/v1/connections",
        json={
            "type": "generic",
            "name": "secret scan",
            "base_url": "http://127.0.0.1:9",
            "credentials": {"signing_secret": signing_secret},
            "webhook_secret": webhook_secret,
        },
    )
    assert generic.status_code == 201, generic.text
    connection_id = generic.json()["connection_id"]
    amazon = call(
        "POST",
        "/v1/connections",
        json={
            "type": "amazon",
            "name": "secret scan amazon",
            "base_url": "http://127.0.0.1:9",
            "credentials": {
                "seller_id": "S1",
                "marketplace_ids": ["M1"],
                "client_id": "amzn1.application-oa2-client.scan",
                "client_secret": amazon_client_secret,
                "refresh_token": amazon_token,
            },
            "inbound": {"api_key": amazon_inbound_key},
        },
    )
    assert amazon.status_code == 201, amazon.text
    # Refused bodies do not echo what they were sent.
    refused = call(
        "POST",
        "/v1/connections",
        json={"type": "generic", "name": "x", "base_url": "nope", "credentials": {"signing_secret": amazon_token}},
    )
    assert refused.status_code == 422
    assert call("POST", f"/v1/connections/{connection_id}/webhook-secrets", json={"secret": rotated}).status_code == 200
    call("GET", f"/v1/connections/{connection_id}")
    call("GET", "/v1/connections")
    call("GET", f"/v1/connections/{connection_id}/health")
    # API keys: shown once at creation and rotation, never in a list or any other answer.
    key = call("POST", "/v1/api-keys", json={"name": "secret scan"})
    assert key.status_code == 201, key.text
    rotated_key = api.post(f"/v1/api-keys/{key.json()['key_id']}/rotate", headers=merchant.auth, json={})
    assert rotated_key.status_code == 201, rotated_key.text
    api_keys = [key.json()["api_key"], rotated_key.json()["api_key"]]
    call("GET", "/v1/api-keys")
    call("POST", f"/v1/api-keys/{rotated_key.json()['key_id']}/revoke")
    answers.remove(key)  # the two answers that show a key, once

    body = (
        b'{"type": "order.created", "timestamp": "2026-01-01T00:00:00Z", '
        b'"data": {"order_id": "S-1", "lines": [{"line_id": "1", "sku": "SECRET-SCAN", "quantity": 1}]}}'
    )

    def deliver() -> bool:
        headers = generic_orders.sign(f"msg_{uuid.uuid4().hex}", int(time.time()), body, [rotated])
        answer = api.post(f"/webhooks/generic/{connection_id}", content=body, headers=headers)
        answers.append(answer)
        return answer.status_code == 200

    wait_for(deliver, timeout=60, interval=0.5)
    call("GET", "/v1/deliveries", params={"connection_id": connection_id})

    for answer in answers:
        for secret in [*created, *api_keys, merchant.api_key]:
            assert secret not in answer.text, (answer.request.url, answer.text)
    logs = sorted((stack.home / "logs").glob("*.log"))
    assert logs
    for path in logs:
        text = path.read_text(errors="replace")
        for secret in [*created, *api_keys, merchant.api_key, stack.admin_token]:
            assert secret not in text, f"{path.name} holds a secret"

    stored = asyncio.run(_stored_secret_columns(stack))
    assert stored and all(secret not in stored for secret in [*created, *api_keys, merchant.api_key])
    assert "fernet:" in stored


async def _stored_secret_columns(stack: Stack) -> str:
    assert stack.database_url
    conn = await asyncpg.connect(stack.database_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        rows = await conn.fetch(
            "SELECT credentials::text || webhook_secrets::text || inbound::text AS s FROM channel_publisher.connections"
        )
        ingest = await conn.fetch(
            "SELECT webhook_secrets::text || channel_api::text || inbound::text AS s FROM order_ingest.connections"
        )
        keys = await conn.fetch("SELECT key_id || digest AS s FROM stock_ledger.api_keys")
        tokens = await conn.fetch(
            "SELECT coalesce(access_token, '') || coalesce(refresh_token, '') AS s FROM channel_publisher.access_tokens"
        )
    finally:
        await conn.close()
    return " ".join(row["s"] for row in [*rows, *ingest, *keys, *tokens])
