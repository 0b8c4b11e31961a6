"""Merchants are kept apart without an existence oracle.

Walks every operation of the gateway's merged OpenAPI document with a second merchant's
key: on the first merchant's ids (connection, rule, delivery, SKU) it must answer exactly
what it answers for ids nobody has, lists must not show the first merchant's resources,
and nothing of the first merchant may change. An operation the probe does not know fails
the test: a new route is probed from the day it exists.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import orjson

from stocksync_common.topics import ORDERS
from stocksync_embedded.stack import Stack
from stocksync_sandboxes import generic_orders

from tests.e2e.conftest import Merchant, new_merchant, wait_for
from tests.e2e.test_poison_events import LONG_SKU, _order_line, dead_letters, put_on_every_partition

RULE = {"name": "iso", "condition": {"op": "always"}, "action": {"type": "set", "value": 0}}
# Bodies that would change a resource if the caller owned it.
BODIES: dict[tuple[str, str], Any] = {
    ("put", "/v1/rules/{rule_id}"): RULE,
    ("patch", "/v1/rules/{rule_id}"): {"enabled": False},
    ("post", "/v1/connections/{connection_id}/webhook-secrets"): {"secret": "intruder-secret-0001"},
    ("post", "/v1/connections/{connection_id}/pause"): {"reason": "intruder"},
    ("post", "/v1/stock/adjustments"): {"sku": "{sku}", "delta": -1, "reason": "probe", "actor": "intruder"},
    ("post", "/v1/rules"): {**RULE, "channels": ["{connection_id}"]},
    ("post", "/v1/rules/preview"): {"rule_id": "{rule_id}", "delete": True},
    ("put", "/v1/connections/{connection_id}/locations"): {"locations": ["intruder"]},
}
# Operations that read the caller's own collection, filtered by an id of the caller's choice.
FILTERS: dict[tuple[str, str], dict[str, str]] = {
    ("get", "/v1/pushes"): {"connection_id": "{connection_id}", "sku": "{sku}"},
    ("get", "/v1/deliveries"): {"connection_id": "{connection_id}"},
    ("get", "/v1/oversells"): {"sku": "{sku}"},
    ("get", "/v1/stock"): {"after": "{sku}"},
    ("get", "/v1/pushes/published"): {"sku": "{sku}"},
}
# Not merchant-scoped, with why.
UNSCOPED = {
    # Admin only: a merchant key is refused whatever the body (checked below).
    ("post", "/v1/merchants"),
    ("get", "/v1/admin/dead-letters"),
    ("post", "/v1/admin/dead-letters/{dead_letter_id}/replay"),
    ("get", "/v1/admin/backlog/order-ingest"),
    ("get", "/v1/admin/backlog/stock-ledger"),
    ("get", "/v1/admin/backlog/rule-engine"),
    ("get", "/v1/admin/backlog/channel-publisher"),
    # Create in the caller's own namespace (checked below: the owner's are unchanged).
    ("post", "/v1/stock/snapshots"),
    ("post", "/v1/stock/imports"),
    ("post", "/v1/connections"),
    ("post", "/v1/api-keys"),
    # Bundles are defined in the caller's namespace: PUT defines one when the caller has none.
    ("post", "/v1/bundles"),
    ("post", "/v1/bundles/import"),
    ("put", "/v1/bundles/{sku}"),
    # Authenticated by the channel's signature, not by a key: an intruder cannot sign.
    ("post", "/webhooks/{channel_type}/{connection_id}"),
}


def _fill(template: Any, ids: dict[str, str]) -> Any:
    text = orjson.dumps(template).decode()
    for name, value in ids.items():
        text = text.replace("{" + name + "}", value.replace("\\", "\\\\").replace('"', '\\"'))
    return orjson.loads(text)


def _path(template: str, ids: dict[str, str]) -> str:
    for name, value in ids.items():
        template = template.replace("{" + name + "}", _quote(value))
    return template


def _quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


def _answer(response: httpx.Response, ids: dict[str, str]) -> tuple[int, str]:
    """Status and body with the probed ids replaced by their names: what a caller learns."""
    text = response.text
    for name, value in ids.items():
        text = text.replace(value, f"<{name}>")
    return response.status_code, text


def _owner_resources(api: httpx.Client, owner: Merchant, stack: Stack) -> dict[str, str]:
    secret = generic_orders.new_secret()
    connection = api.post(
        "/v1/connections",
        headers=owner.auth,
        json={
            "type": "generic",
            "name": "isolation probe",
            "base_url": "http://127.0.0.1:9",
            "credentials": {"signing_secret": generic_orders.new_secret()},
            "webhook_secret": secret,
        },
    )
    assert connection.status_code == 201, connection.text
    connection_id = connection.json()["connection_id"]
    sku = f"ISO/{uuid.uuid4().hex[:6]} 50% blé"
    snapshot = api.post("/v1/stock/snapshots", headers=owner.auth, json={"items": [{"sku": sku, "on_hand": 5}]})
    assert snapshot.status_code == 200 and snapshot.json()["applied"] == 1, snapshot.text
    rule = api.post("/v1/rules", headers=owner.auth, json={**RULE, "channels": [connection_id]})
    assert rule.status_code == 201, rule.text

    body = orjson.dumps(
        {
            "type": "order.created",
            "timestamp": "2026-01-01T00:00:00Z",
            "data": {"order_id": "ISO-1", "lines": [{"line_id": "1", "sku": sku, "quantity": 1}]},
        }
    )

    def deliver() -> str | None:
        headers = generic_orders.sign(f"msg_{uuid.uuid4().hex}", int(time.time()), body, [secret])
        answer = api.post(f"/webhooks/generic/{connection_id}", content=body, headers=headers)
        return str(answer.json()["delivery_id"]) if answer.status_code == 200 else None

    delivery_id = wait_for(deliver, timeout=60, interval=0.5)
    key = api.post("/v1/api-keys", headers=owner.auth, json={"name": "isolation probe"})
    assert key.status_code == 201, key.text
    job = api.post(
        "/v1/stock/imports", headers={**owner.auth, "Content-Type": "text/csv"}, content=f'sku,on_hand\n"{sku}",5\n'
    )
    assert job.status_code == 202, job.text
    # A dead letter of the owner's: an order line no ledger can store.
    put_on_every_partition(stack, ORDERS, [_order_line(owner.merchant_id, LONG_SKU)])
    letter = wait_for(lambda: dead_letters(api, owner, topic="orders.v1", replayed="false"), timeout=120)
    return {
        "connection_id": connection_id,
        "rule_id": rule.json()["rule_id"],
        "delivery_id": delivery_id,
        "job_id": job.json()["job_id"],
        "dead_letter_id": letter[0]["dead_letter_id"],
        "key_id": key.json()["key_id"],
        "sku": sku,
    }


def test_another_merchants_resources_answer_exactly_as_unknown_ones_on_every_route(
    api: httpx.Client, merchant: Merchant, stack: Stack
) -> None:
    owner = merchant
    intruder = new_merchant(api, stack, "intruder")
    theirs = _owner_resources(api, owner, stack)
    nobodys = {
        "connection_id": str(uuid.uuid4()),
        "rule_id": str(uuid.uuid4()),
        "delivery_id": str(uuid.uuid4()),
        "job_id": str(uuid.uuid4()),
        "dead_letter_id": str(uuid.uuid4()),
        "key_id": uuid.uuid4().hex[:16],
        "sku": f"NOBODY/{uuid.uuid4().hex[:6]} 50% blé",
    }
    stock_url = f"/v1/stock/{_quote(theirs['sku'])}"
    # The order's reservation reaches the ledger asynchronously: wait for it first.
    wait_for(lambda: api.get(stock_url, headers=owner.auth).json()["reserved"] == 1)
    before = {
        "rule": api.get(f"/v1/rules/{theirs['rule_id']}", headers=owner.auth).json(),
        "connection": _connection_settings(api, owner, theirs["connection_id"]),
        "stock": api.get(stock_url, headers=owner.auth).json(),
    }
    assert before["stock"]["sku"] == theirs["sku"]  # the SKU round-trips, "/", "%" and all

    document = api.get("/openapi.json").json()
    probed = 0
    for template, item in document["paths"].items():
        for method in item:
            operation = (method, template)
            if operation in UNSCOPED:
                continue
            has_ids = "{" in template or operation in BODIES or operation in FILTERS
            if not has_ids:
                # A list of the caller's own resources: none of the owner's show.
                answer = api.request(method, template, headers=intruder.auth)
                # A POST without ids acts on the caller's own collection (replay all: 202).
                assert answer.status_code == (200 if method == "get" else 202), (operation, answer.text)
                for value in theirs.values():
                    assert value not in answer.text, (operation, value)
                probed += 1
                continue
            assert "{" not in template or any("{" + name + "}" in template for name in theirs), (
                f"the isolation probe does not know {operation}: give it an owner's resource"
            )
            answers = []
            for ids in (theirs, nobodys):
                answer = api.request(
                    method,
                    _path(template, ids),
                    headers=intruder.auth,
                    params=_fill(FILTERS.get(operation, {}), ids),
                    json=_fill(BODIES[operation], ids) if operation in BODIES else None,
                )
                assert answer.status_code < 500, (operation, answer.text)
                answers.append(_answer(answer, ids))
            assert answers[0] == answers[1], (operation, answers)
            if "{" in template and template != "/v1/stock/{sku}/ledger":
                assert answers[0][0] == 404, (operation, answers[0])
            probed += 1
    assert probed >= 25

    assert api.get(f"/v1/rules/{theirs['rule_id']}", headers=owner.auth).json() == before["rule"]
    assert _connection_settings(api, owner, theirs["connection_id"]) == before["connection"]
    assert api.get(stock_url, headers=owner.auth).json() == before["stock"]
    # The owner's key was neither revoked nor rotated by the intruder's attempts.
    keys = {k["key_id"]: k for k in api.get("/v1/api-keys", headers=owner.auth).json()["items"]}
    assert (keys[theirs["key_id"]]["state"], keys[theirs["key_id"]]["replaced_by"]) == ("active", None)
    # The owner's dead letter was not replayed by anyone, and admin routes refuse a merchant key.
    owners = {d["dead_letter_id"]: d for d in dead_letters(api, owner, topic="orders.v1")}
    assert owners[theirs["dead_letter_id"]]["replayed_at"] is None
    for method, template in sorted(UNSCOPED):
        if template.startswith(("/v1/admin/", "/v1/merchants")):
            refused = api.request(method, _path(template, theirs), headers=intruder.auth, json={"name": "x"})
            assert refused.status_code in (401, 403), (method, template, refused.text)


def _connection_settings(api: httpx.Client, owner: Merchant, connection_id: str) -> dict[str, Any]:
    answer = api.get(f"/v1/connections/{connection_id}", headers=owner.auth).json()
    return {key: answer[key] for key in ("name", "active", "paused", "pause_reason", "listings")}


def test_the_gateway_never_hands_one_callers_session_cookie_to_another(stack: Stack, merchant: Merchant) -> None:
    """The gateway's client to the services is shared by every caller: a cookie one answer
    set (a console session) must reach that caller only, never ride along with the next."""
    with httpx.Client(base_url=stack.base_url, timeout=30) as browser:
        form = browser.get("/console/sign-in")
        csrf = form.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        signed_in = browser.post("/console/sign-in", data={"csrf": csrf, "api_key": merchant.api_key})
        assert signed_in.status_code == 303 and signed_in.headers["location"].endswith("/console/channels")
        assert browser.get("/console/channels").status_code == 200
    # Another caller, no cookie of its own: signed out, whatever the gateway saw before.
    with httpx.Client(base_url=stack.base_url, timeout=30) as stranger:
        events = stranger.get("/console/channels", headers={"X-Console-Fragment": "1"})
        assert events.status_code == 401, events.text
        page = stranger.get("/console/channels")
        assert page.status_code == 303 and page.headers["location"].endswith("/console/sign-in")
