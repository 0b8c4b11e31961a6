"""The generic receiver checks Standard Webhooks signatures over the raw body."""

from __future__ import annotations

import base64
import time

import orjson
from fastapi.testclient import TestClient

from stocksync_sandboxes.generic import GenericSandboxSettings, create_app, expected_signature

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
BODY = orjson.dumps(
    {
        "type": "inventory.quantities.updated",
        "timestamp": 1,
        "data": {
            "quantities": [
                {"sku": "A", "location": "default", "quantity": 2, "version": 1},
                {"sku": "Z", "location": "default", "quantity": 2, "version": 1},
            ]
        },
    }
)


def receiver() -> TestClient:
    client = TestClient(create_app(GenericSandboxSettings(SECRET)))
    client.post("/_sandbox/listings", json={"listings": [{"sku": "A"}]})
    return client


def headers(message_id: str = "msg_1", timestamp: int | None = None, secret: str = SECRET) -> dict[str, str]:
    ts = str(timestamp if timestamp is not None else int(time.time()))
    signature = expected_signature(secret, message_id, ts, BODY).decode()
    return {"webhook-id": message_id, "webhook-timestamp": ts, "webhook-signature": f"v1,bogus v1,{signature}"}


def test_a_signed_webhook_applies_and_names_unknown_skus() -> None:
    client = receiver()
    answer = client.post("/stocksync/quantities", content=BODY, headers=headers())
    assert answer.json() == {"rejected": [{"sku": "Z", "location": "default", "message": "unknown SKU Z"}]}
    assert client.get("/_sandbox/listings").json()["listings"][0]["history"] == [2]


def test_a_bad_signature_or_an_old_timestamp_is_401() -> None:
    client = receiver()
    other = "whsec_" + base64.b64encode(b"another key, not the right one!!").decode()
    assert client.post("/q", content=BODY, headers=headers(secret=other)).status_code == 401
    assert client.post("/q", content=BODY, headers=headers(timestamp=int(time.time()) - 301)).status_code == 401


def test_a_redelivery_with_the_same_webhook_id_is_not_applied_twice() -> None:
    client = receiver()
    client.post("/q", content=BODY, headers=headers("msg_9"))
    client.post("/q", content=BODY, headers=headers("msg_9"))
    assert client.get("/_sandbox/listings").json()["listings"][0]["history"] == [2]
