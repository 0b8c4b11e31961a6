"""The sandbox Shopify store behaves as the real Admin API and webhooks do.

The store runs in-process through httpx's ASGI transport with a fake monotonic clock, so
throttling is tested by moving time rather than sleeping. Webhooks go over real HTTP to
the receiver of conftest.py, so signatures are checked over the bytes that arrived.
"""

import base64
import hashlib
import hmac
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson
import pytest

from stocksync_sandboxes import __main__ as sandboxes_cli
from stocksync_sandboxes.shopify import ShopifySandboxSettings, create_app, parse_args, sign_webhook
from stocksync_sandboxes.shopify_webhooks import OrderLine, build_order

from .conftest import WebhookReceiver

TOKEN = "shpat_sandbox_token"
SECRET = "sandbox-webhook-secret"
SHOP = "demo-c1.myshopify.com"
LOCATION = "gid://shopify/Location/9"
ITEM_A = "gid://shopify/InventoryItem/101"
ITEM_B = "gid://shopify/InventoryItem/102"

# The mutation as an adapter sends it to API versions from 2026-04 on.
SET_QUANTITIES = """
mutation SetAvailable($input: InventorySetQuantitiesInput!, $idempotencyKey: String!) {
  inventorySetQuantities(input: $input) @idempotent(key: $idempotencyKey) {
    inventoryAdjustmentGroup {
      createdAt
      reason
      changes(quantityNames: ["available"]) { name delta quantityAfterChange item { id } location { id } }
    }
    userErrors { field message code }
  }
}
"""

# The form of API versions up to 2026-01: compare-and-set skipped with ignoreCompareQuantity.
SET_QUANTITIES_2026_01 = """
mutation ($input: InventorySetQuantitiesInput!) {
  inventorySetQuantities(input: $input) {
    inventoryAdjustmentGroup { changes { name delta quantityAfterChange } }
    userErrors { field message code }
  }
}
"""


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@asynccontextmanager
async def open_store(
    clock: FakeClock | None = None, wall_clock: FakeClock | None = None, **overrides: Any
) -> AsyncIterator[httpx.AsyncClient]:
    # Quick retries keep webhook tests short; a test may still choose its own.
    overrides = {"webhook_retry_delays": (0.01, 0.01, 0.01), **overrides}
    settings = ShopifySandboxSettings(access_token=TOKEN, webhook_secret=SECRET, shop_domain=SHOP, **overrides)
    app = create_app(settings, monotonic=clock or FakeClock(), wall_clock=wall_clock)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"https://{SHOP}") as client,
    ):
        yield client


async def seed(client: httpx.AsyncClient, *levels: tuple[str, str, int]) -> None:
    items = [
        {"inventory_item_id": item, "location_id": LOCATION, "sku": sku, "available": available}
        for item, sku, available in levels
    ]
    answer = await client.post("/_sandbox/inventory-items", json={"items": items})
    assert answer.status_code == 200, answer.text


def quantity(item: str, value: Any, **extra: Any) -> dict[str, Any]:
    return {"inventoryItemId": item, "locationId": LOCATION, "quantity": value, "changeFromQuantity": None, **extra}


async def graphql(
    client: httpx.AsyncClient,
    query: str,
    variables: dict[str, Any] | None = None,
    *,
    version: str = "2026-10",
    token: str | None = TOKEN,
) -> httpx.Response:
    headers = {} if token is None else {"X-Shopify-Access-Token": token}
    return await client.post(
        f"/admin/api/{version}/graphql.json", json={"query": query, "variables": variables or {}}, headers=headers
    )


async def set_available(
    client: httpx.AsyncClient,
    quantities: list[dict[str, Any]],
    *,
    key: str | None = None,
    token: str | None = TOKEN,
) -> httpx.Response:
    variables = {
        "input": {"name": "available", "reason": "correction", "quantities": quantities},
        "idempotencyKey": key or str(uuid.uuid4()),
    }
    return await graphql(client, SET_QUANTITIES, variables, token=token)


async def set_available_2026_01(
    client: httpx.AsyncClient, value: int, version: str, *, ignore_compare_quantity: bool = True
) -> httpx.Response:
    """Set ITEM_A's available quantity as an adapter did up to API version 2026-01: no
    changeFromQuantity, the compare-and-set skipped with ignoreCompareQuantity (unless told not to)."""
    skip = {"ignoreCompareQuantity": True} if ignore_compare_quantity else {}
    quantities = [{"inventoryItemId": ITEM_A, "locationId": LOCATION, "quantity": value}]
    variables = {"input": {"name": "available", "reason": "correction", **skip, "quantities": quantities}}
    return await graphql(client, SET_QUANTITIES_2026_01, variables, version=version)


async def available_by_sku(client: httpx.AsyncClient) -> dict[str | None, int]:
    levels = (await client.get("/_sandbox/inventory")).json()["levels"]
    return {level["sku"]: level["available"] for level in levels}


async def applied_changes(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    changes: list[dict[str, Any]] = (await client.get("/_sandbox/changes")).json()["changes"]
    return changes


async def request_counts(client: httpx.AsyncClient) -> dict[str, int]:
    counts: dict[str, int] = (await client.get("/_sandbox/requests")).json()
    return counts


# --- authentication ------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("token", ["not-the-token", None])
async def test_a_wrong_or_missing_access_token_gets_shopifys_401_and_nothing_is_applied(token: str | None) -> None:
    async with open_store() as client:
        await seed(client, (ITEM_A, "A", 5))

        answer = await set_available(client, [quantity(ITEM_A, 9)], token=token)

        assert answer.status_code == 401
        assert answer.json() == {
            "errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"
        }
        assert await available_by_sku(client) == {"A": 5}
        assert (await request_counts(client))["unauthorized"] == 1


# --- display lag ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_with_a_display_delay_reads_show_an_accepted_quantity_only_that_much_later() -> None:
    wall = FakeClock(1_800_000_000.0)
    read = (
        'query { q: inventoryItem(id: "' + ITEM_A + '") { inventoryLevel(locationId: "' + LOCATION + '") '
        '{ quantities(names: ["available", "on_hand"]) { name quantity } } } }'
    )

    async def shown(client: httpx.AsyncClient) -> dict[str, int]:
        body = (await graphql(client, read)).json()
        return {q["name"]: q["quantity"] for q in body["data"]["q"]["inventoryLevel"]["quantities"]}

    async with open_store(wall_clock=wall) as client:
        await seed(client, (ITEM_A, "A", 5))
        config = await client.post("/_sandbox/config", json={"display_delay_s": 10})
        assert config.json()["display_delay_s"] == 10
        assert (await set_available(client, [quantity(ITEM_A, 9)])).status_code == 200
        wall.advance(4)
        assert (await set_available(client, [quantity(ITEM_A, 7)])).status_code == 200
        # Applied at once (the control API), shown later (the Admin API a storefront reads).
        assert await available_by_sku(client) == {"A": 7}
        assert await shown(client) == {"available": 5, "on_hand": 5}
        wall.advance(6.5)
        assert await shown(client) == {"available": 9, "on_hand": 9}
        wall.advance(4)
        assert await shown(client) == {"available": 7, "on_hand": 7}
        assert (await client.post("/_sandbox/config", json={"display_delay_s": -1})).status_code == 422


# --- inventorySetQuantities ----------------------------------------------------------------


@pytest.mark.asyncio
async def test_setting_available_answers_with_the_adjustment_group_and_records_the_change() -> None:
    async with open_store() as client:
        await seed(client, (ITEM_A, "A", 5))

        answer = await set_available(client, [quantity(ITEM_A, 8)], key="key-1")

        assert answer.status_code == 200
        body = answer.json()
        payload = body["data"]["inventorySetQuantities"]
        assert payload["userErrors"] == []
        assert payload["inventoryAdjustmentGroup"]["reason"] == "correction"
        assert payload["inventoryAdjustmentGroup"]["changes"] == [
            {
                "name": "available",
                "delta": 3,
                "quantityAfterChange": 8,
                "item": {"id": ITEM_A},
                "location": {"id": LOCATION},
            }
        ]
        assert body["extensions"]["cost"] == {
            "requestedQueryCost": 11,
            "actualQueryCost": 11,
            "throttleStatus": {"maximumAvailable": 1000.0, "currentlyAvailable": 989.0, "restoreRate": 100.0},
        }
        assert answer.headers["X-Shopify-API-Version"] == "2026-10"
        [change] = await applied_changes(client)
        assert change["seq"] == 1
        assert change["request_id"] == answer.headers["X-Request-Id"]
        assert isinstance(change["received_at"], float)
        assert (change["inventory_item_id"], change["location_id"], change["sku"]) == (ITEM_A, LOCATION, "A")
        assert (change["name"], change["quantity"], change["delta"], change["idempotency_key"]) == (
            "available",
            8,
            3,
            "key-1",
        )
        levels = (await client.get("/_sandbox/inventory")).json()["levels"]
        assert levels == [
            {
                "inventory_item_id": ITEM_A,
                "location_id": LOCATION,
                "sku": "A",
                "available": 8,
                "committed": 0,
                "on_hand": 8,
            }
        ]
        assert (await request_counts(client))["accepted"] == 1


@pytest.mark.asyncio
async def test_the_answer_holds_only_the_fields_the_mutation_selected() -> None:
    async with open_store() as client:
        query = """mutation ($input: InventorySetQuantitiesInput!, $key: String!) {
          inventorySetQuantities(input: $input) @idempotent(key: $key) { userErrors { code } }
        }"""
        variables = {
            "input": {"name": "available", "reason": "correction", "quantities": [quantity(ITEM_A, 1)]},
            "key": "k",
        }

        answer = await graphql(client, query, variables)

        assert answer.json()["data"] == {"inventorySetQuantities": {"userErrors": []}}


@pytest.mark.asyncio
async def test_changes_are_listed_in_order_with_rising_sequence_numbers_and_receive_times() -> None:
    async with open_store() as client:
        await set_available(client, [quantity(ITEM_A, 1), quantity(ITEM_B, 2)])
        await set_available(client, [quantity(ITEM_A, 3)])

        changes = await applied_changes(client)
        since_two = (await client.get("/_sandbox/changes", params={"since_seq": 2})).json()

        assert [(c["seq"], c["inventory_item_id"], c["quantity"]) for c in changes] == [
            (1, ITEM_A, 1),
            (2, ITEM_B, 2),
            (3, ITEM_A, 3),
        ]
        assert changes[0]["received_at"] <= changes[1]["received_at"] <= changes[2]["received_at"]
        assert [c["seq"] for c in since_two["changes"]] == [3]
        assert since_two["last_seq"] == 3


@pytest.mark.asyncio
async def test_251_quantities_are_refused_with_max_input_size_exceeded_and_nothing_is_applied() -> None:
    async with open_store() as client:
        quantities = [quantity(f"gid://shopify/InventoryItem/{n}", 1) for n in range(1, 252)]

        answer = await set_available(client, quantities)

        assert answer.status_code == 200
        body = answer.json()
        assert "data" not in body
        [error] = body["errors"]
        assert error["message"] == "The input array size of 251 is greater than the maximum allowed of 250."
        assert error["extensions"]["code"] == "MAX_INPUT_SIZE_EXCEEDED"
        assert error["path"] == ["inventorySetQuantities", "input", "quantities"]
        assert await applied_changes(client) == []
        assert (await request_counts(client))["rejected"] == 1


@pytest.mark.asyncio
async def test_250_quantities_are_applied_in_one_call() -> None:
    async with open_store() as client:
        quantities = [quantity(f"gid://shopify/InventoryItem/{n}", n) for n in range(1, 251)]

        answer = await set_available(client, quantities)

        assert answer.json()["data"]["inventorySetQuantities"]["userErrors"] == []
        assert answer.json()["extensions"]["cost"]["requestedQueryCost"] == 260
        assert len(await applied_changes(client)) == 250


@pytest.mark.asyncio
async def test_an_unknown_inventory_item_gives_a_user_error_and_nothing_of_the_call_is_applied() -> None:
    async with open_store() as client:
        await seed(client, (ITEM_A, "A", 5))

        answer = await set_available(client, [quantity(ITEM_A, 9), quantity("gid://shopify/InventoryItem/999", 3)])

        payload = answer.json()["data"]["inventorySetQuantities"]
        assert payload["inventoryAdjustmentGroup"] is None
        assert payload["userErrors"] == [
            {
                "field": ["input", "quantities", "1", "inventoryItemId"],
                "message": "The specified inventory item could not be found.",
                "code": "INVALID_INVENTORY_ITEM",
            }
        ]
        assert await available_by_sku(client) == {"A": 5}
        assert await applied_changes(client) == []
        assert (await request_counts(client))["rejected"] == 1


@pytest.mark.asyncio
async def test_an_unknown_location_and_a_duplicate_pair_are_user_errors_too() -> None:
    async with open_store() as client:
        await seed(client, (ITEM_A, "A", 5), (ITEM_B, "B", 5))
        elsewhere = dict(quantity(ITEM_B, 1), locationId="gid://shopify/Location/77")

        answer = await set_available(client, [quantity(ITEM_A, 1), quantity(ITEM_A, 2), elsewhere])

        codes = [(e["field"], e["code"]) for e in answer.json()["data"]["inventorySetQuantities"]["userErrors"]]
        assert codes == [
            (["input", "quantities", "1"], "NO_DUPLICATE_INVENTORY_ITEM_ID_GROUP_ID_PAIR"),
            (["input", "quantities", "2", "locationId"], "INVALID_LOCATION"),
        ]
        assert await available_by_sku(client) == {"A": 5, "B": 5}


@pytest.mark.asyncio
async def test_without_seeded_items_any_well_formed_gid_is_accepted_from_zero() -> None:
    async with open_store() as client:
        answer = await set_available(client, [quantity("gid://shopify/InventoryItem/424242", 4)])

        [change] = answer.json()["data"]["inventorySetQuantities"]["inventoryAdjustmentGroup"]["changes"]
        assert (change["delta"], change["quantityAfterChange"]) == (4, 4)


@pytest.mark.asyncio
async def test_a_malformed_global_id_is_refused_before_anything_runs() -> None:
    async with open_store() as client:
        answer = await set_available(client, [quantity("101", 4)])

        body = answer.json()
        assert "data" not in body
        assert body["errors"][0]["message"] == "Invalid global id '101'"
        assert body["errors"][0]["path"] == ["inventorySetQuantities", "input", "quantities", 0, "inventoryItemId"]
        assert await applied_changes(client) == []


@pytest.mark.asyncio
@pytest.mark.parametrize("bad_quantity", ["7", 7.5, None, True])
async def test_a_quantity_that_is_not_an_integer_is_refused_as_an_invalid_variable(bad_quantity: Any) -> None:
    async with open_store() as client:
        answer = await set_available(client, [quantity(ITEM_A, bad_quantity)])

        body = answer.json()
        assert "data" not in body
        assert body["errors"][0]["extensions"]["code"] == "INVALID_VARIABLE"
        assert "quantity" in body["errors"][0]["message"]
        assert await applied_changes(client) == []


@pytest.mark.asyncio
async def test_a_name_other_than_available_or_on_hand_and_an_unknown_reason_are_user_errors() -> None:
    async with open_store() as client:
        variables = {
            "input": {"name": "committed", "reason": "because", "quantities": [quantity(ITEM_A, 1)]},
            "idempotencyKey": "k",
        }

        answer = await graphql(client, SET_QUANTITIES, variables)

        errors = answer.json()["data"]["inventorySetQuantities"]["userErrors"]
        assert [(e["field"], e["code"]) for e in errors] == [
            (["input", "name"], "INVALID_NAME"),
            (["input", "reason"], "INVALID_REASON"),
        ]


@pytest.mark.asyncio
async def test_setting_on_hand_moves_available_by_the_same_delta() -> None:
    async with open_store() as client:
        await seed(client, (ITEM_A, "A", 5))
        variables = {
            "input": {"name": "on_hand", "reason": "correction", "quantities": [quantity(ITEM_A, 2)]},
            "idempotencyKey": "k",
        }

        await graphql(client, SET_QUANTITIES, variables)

        [level] = (await client.get("/_sandbox/inventory")).json()["levels"]
        assert (level["on_hand"], level["available"]) == (2, 2)


@pytest.mark.asyncio
async def test_a_stale_change_from_quantity_refuses_the_whole_call() -> None:
    async with open_store() as client:
        await seed(client, (ITEM_A, "A", 5), (ITEM_B, "B", 5))

        answer = await set_available(
            client, [quantity(ITEM_A, 1, changeFromQuantity=5), quantity(ITEM_B, 1, changeFromQuantity=4)]
        )

        assert answer.json()["data"]["inventorySetQuantities"]["userErrors"] == [
            {
                "field": ["input", "quantities", "1", "changeFromQuantity"],
                "message": "The changeFromQuantity argument no longer matches the persisted quantity.",
                "code": "CHANGE_FROM_QUANTITY_STALE",
            }
        ]
        assert await available_by_sku(client) == {"A": 5, "B": 5}


# --- API versions ----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_from_2026_04_ignore_compare_quantity_no_longer_exists() -> None:
    async with open_store() as client:
        answer = await set_available_2026_01(client, 1, "2026-04")

        [error] = answer.json()["errors"]
        assert error["extensions"]["code"] == "INVALID_VARIABLE"
        assert "ignoreCompareQuantity" in error["message"]
        assert await applied_changes(client) == []


@pytest.mark.asyncio
async def test_from_2026_04_the_idempotent_directive_is_mandatory() -> None:
    async with open_store() as client:
        query = """mutation ($input: InventorySetQuantitiesInput!) {
          inventorySetQuantities(input: $input) { userErrors { code } }
        }"""
        variables = {"input": {"name": "available", "reason": "correction", "quantities": [quantity(ITEM_A, 1)]}}

        answer = await graphql(client, query, variables)

        body = answer.json()
        assert body["data"] == {"inventorySetQuantities": None}
        assert body["errors"][0]["message"] == "The @idempotent directive is required for this mutation."
        assert await applied_changes(client) == []


@pytest.mark.asyncio
async def test_from_2026_04_every_quantity_must_pass_change_from_quantity_even_as_null() -> None:
    async with open_store() as client:
        without = {"inventoryItemId": ITEM_A, "locationId": LOCATION, "quantity": 1}

        answer = await set_available(client, [without])

        [error] = answer.json()["data"]["inventorySetQuantities"]["userErrors"]
        assert error["field"] == ["input", "quantities", "0", "changeFromQuantity"]
        assert error["code"] == "COMPARE_QUANTITY_REQUIRED"
        assert await applied_changes(client) == []


@pytest.mark.asyncio
async def test_in_2026_01_ignore_compare_quantity_still_skips_the_check() -> None:
    async with open_store() as client:
        await seed(client, (ITEM_A, "A", 5))

        answer = await set_available_2026_01(client, 7, "2026-01")

        payload = answer.json()["data"]["inventorySetQuantities"]
        assert payload["userErrors"] == []
        assert {"name": "available", "delta": 2, "quantityAfterChange": 7} in payload["inventoryAdjustmentGroup"][
            "changes"
        ]


@pytest.mark.asyncio
async def test_in_2026_01_leaving_out_both_compare_quantity_and_ignore_compare_quantity_is_a_user_error() -> None:
    async with open_store() as client:
        answer = await set_available_2026_01(client, 7, "2026-01", ignore_compare_quantity=False)

        [error] = answer.json()["data"]["inventorySetQuantities"]["userErrors"]
        assert error["code"] == "COMPARE_QUANTITY_REQUIRED"
        assert error["field"] == ["input", "quantities", "0", "compareQuantity"]


@pytest.mark.asyncio
async def test_a_retired_api_version_is_served_by_the_oldest_supported_one() -> None:
    async with open_store() as client:
        answer = await set_available_2026_01(client, 7, "2025-01")

        assert answer.headers["X-Shopify-API-Version"] == "2026-01"
        assert answer.json()["data"]["inventorySetQuantities"]["userErrors"] == []


@pytest.mark.asyncio
@pytest.mark.parametrize("version", ["2026-02", "2030-01", "latest"])
async def test_an_api_version_that_does_not_exist_is_not_found(version: str) -> None:
    async with open_store() as client:
        answer = await graphql(client, "{ location { id } }", version=version)

        assert answer.status_code == 404


# --- idempotency -----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_retry_with_the_same_idempotency_key_returns_the_first_answer_and_applies_once() -> None:
    async with open_store() as client:
        await seed(client, (ITEM_A, "A", 5))

        first = await set_available(client, [quantity(ITEM_A, 8)], key="push-1")
        retry = await set_available(client, [quantity(ITEM_A, 8)], key="push-1")

        assert retry.json()["data"] == first.json()["data"]
        assert len(await applied_changes(client)) == 1
        counts = await request_counts(client)
        assert (counts["accepted"], counts["replayed"]) == (1, 1)


@pytest.mark.asyncio
async def test_an_idempotency_key_reused_with_other_parameters_is_refused() -> None:
    async with open_store() as client:
        await set_available(client, [quantity(ITEM_A, 8)], key="push-1")

        answer = await set_available(client, [quantity(ITEM_A, 9)], key="push-1")

        [error] = answer.json()["data"]["inventorySetQuantities"]["userErrors"]
        assert error["code"] == "IDEMPOTENCY_KEY_PARAMETER_MISMATCH"
        assert [c["quantity"] for c in await applied_changes(client)] == [8]


# --- other documents -------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_document_other_than_the_inventory_operations_gets_a_graphql_error() -> None:
    async with open_store() as client:
        answer = await graphql(client, "{ shop { name } }")

        assert answer.status_code == 200
        assert answer.json()["errors"][0]["message"] == "Cannot query field 'shop' on type 'QueryRoot'."
        assert "data" not in answer.json()


@pytest.mark.asyncio
async def test_a_mutation_sent_as_a_query_gets_a_graphql_error() -> None:
    async with open_store() as client:
        document = SET_QUANTITIES.replace("mutation", "query", 1)

        answer = await graphql(client, document, {"input": {}, "idempotencyKey": "k"})

        assert "Cannot query field 'inventorySetQuantities' on type 'QueryRoot'." in [
            error["message"] for error in answer.json()["errors"]
        ]


@pytest.mark.asyncio
async def test_the_available_quantity_can_be_read_back_for_drift_checks() -> None:
    async with open_store() as client:
        await seed(client, (ITEM_A, "A", 5))
        query = """query ($item: ID!, $location: ID!) {
          inventoryItem(id: $item) {
            sku
            inventoryLevel(locationId: $location) { quantities(names: ["available", "on_hand"]) { name quantity } }
          }
        }"""

        answer = await graphql(client, query, {"item": ITEM_A, "location": LOCATION})

        assert answer.json()["data"] == {
            "inventoryItem": {
                "sku": "A",
                "inventoryLevel": {
                    "quantities": [{"name": "available", "quantity": 5}, {"name": "on_hand", "quantity": 5}]
                },
            }
        }
        assert (await request_counts(client))["queries"] == 1


# --- throttling ------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_call_is_throttled_once_the_bucket_lacks_its_cost_and_passes_after_the_restore() -> None:
    clock = FakeClock()
    # Each one-quantity call costs 11: two fit in 30 points, leaving 8; 4 points come back a second.
    async with open_store(clock, bucket_size=30, restore_rate=4) as client:
        assert (await set_available(client, [quantity(ITEM_A, 1)])).json()["data"]
        assert (await set_available(client, [quantity(ITEM_A, 2)])).json()["data"]

        throttled = await set_available(client, [quantity(ITEM_A, 3)])
        clock.advance(0.5)  # 10 points: still short of 11
        still_throttled = await set_available(client, [quantity(ITEM_A, 3)])
        clock.advance(0.25)  # 11 points
        passed = await set_available(client, [quantity(ITEM_A, 3)])

        assert throttled.status_code == 200
        assert throttled.json() == {
            "errors": [
                {
                    "message": "Throttled",
                    "extensions": {"code": "THROTTLED", "documentation": "https://shopify.dev/api/usage/rate-limits"},
                }
            ],
            "extensions": {
                "cost": {
                    "requestedQueryCost": 11,
                    "actualQueryCost": None,
                    "throttleStatus": {"maximumAvailable": 30.0, "currentlyAvailable": 8.0, "restoreRate": 4.0},
                }
            },
        }
        assert still_throttled.json()["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] == 10.0
        assert passed.json()["data"]["inventorySetQuantities"]["userErrors"] == []
        assert passed.json()["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] == 0.0
        assert [c["quantity"] for c in await applied_changes(client)] == [1, 2, 3]
        counts = await request_counts(client)
        assert (counts["accepted"], counts["throttled"]) == (3, 2)


@pytest.mark.asyncio
async def test_the_bucket_refills_up_to_its_size_and_no_further() -> None:
    clock = FakeClock()
    async with open_store(clock, bucket_size=30, restore_rate=4) as client:
        await set_available(client, [quantity(ITEM_A, 1)])
        clock.advance(3600)

        config = (await client.get("/_sandbox/config")).json()

        assert config == {"bucket_size": 30.0, "restore_rate": 4.0, "currently_available": 30.0, "display_delay_s": 0.0}


@pytest.mark.asyncio
async def test_a_call_costlier_than_the_whole_bucket_is_refused_rather_than_throttled() -> None:
    async with open_store(bucket_size=30, restore_rate=4) as client:
        answer = await set_available(client, [quantity(f"gid://shopify/InventoryItem/{n}", 1) for n in range(1, 26)])

        [error] = answer.json()["errors"]
        assert error["extensions"]["code"] == "MAX_COST_EXCEEDED"
        assert error["message"] == "Query cost is 35, which exceeds the single query max cost limit (30)."
        assert await applied_changes(client) == []


@pytest.mark.asyncio
async def test_the_restore_rate_and_bucket_size_can_change_at_run_time() -> None:
    clock = FakeClock()
    async with open_store(clock) as client:
        answer = await client.post(
            "/_sandbox/config", json={"bucket_size": 20, "restore_rate": 2, "currently_available": 5}
        )
        assert answer.json() == {
            "bucket_size": 20.0,
            "restore_rate": 2.0,
            "currently_available": 5.0,
            "display_delay_s": 0.0,
        }

        throttled = await set_available(client, [quantity(ITEM_A, 1)])
        clock.advance(3)  # 5 + 3 * 2 = 11
        passed = await set_available(client, [quantity(ITEM_A, 1)])

        assert throttled.json()["errors"][0]["message"] == "Throttled"
        assert passed.json()["extensions"]["cost"]["throttleStatus"] == {
            "maximumAvailable": 20.0,
            "currentlyAvailable": 0.0,
            "restoreRate": 2.0,
        }


# --- injected failures -----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_fail_next_makes_the_next_calls_fail_without_applying_then_the_store_recovers() -> None:
    async with open_store() as client:
        await client.post("/_sandbox/fail-next", json={"count": 2, "mode": "http_500"})

        first = await set_available(client, [quantity(ITEM_A, 1)])
        second = await set_available(client, [quantity(ITEM_A, 1)])
        third = await set_available(client, [quantity(ITEM_A, 1)])

        assert (first.status_code, second.status_code, third.status_code) == (500, 500, 200)
        assert len(await applied_changes(client)) == 1


@pytest.mark.asyncio
async def test_injected_throttling_and_429_answer_as_shopify_does() -> None:
    async with open_store() as client:
        await client.post("/_sandbox/fail-next", json={"mode": "throttled"})
        await client.post("/_sandbox/fail-next", json={"mode": "http_429"})

        throttled = await set_available(client, [quantity(ITEM_A, 1)])
        too_many = await set_available(client, [quantity(ITEM_A, 1)])

        assert throttled.status_code == 200
        assert throttled.json()["errors"][0]["extensions"]["code"] == "THROTTLED"
        assert too_many.status_code == 429
        assert too_many.headers["Retry-After"] == "2.0"
        assert await applied_changes(client) == []


@pytest.mark.asyncio
async def test_an_answer_lost_after_the_change_was_applied_is_not_applied_twice_on_a_keyed_retry() -> None:
    async with open_store() as client:
        await client.post("/_sandbox/fail-next", json={"mode": "http_500_after_apply"})

        lost = await set_available(client, [quantity(ITEM_A, 4)], key="push-7")
        retry = await set_available(client, [quantity(ITEM_A, 4)], key="push-7")

        assert lost.status_code == 500
        assert retry.json()["data"]["inventorySetQuantities"]["userErrors"] == []
        assert len(await applied_changes(client)) == 1


@pytest.mark.asyncio
async def test_reset_empties_the_store() -> None:
    async with open_store() as client:
        await seed(client, (ITEM_A, "A", 5))
        await set_available(client, [quantity(ITEM_A, 4)])

        await client.post("/_sandbox/reset")

        assert (await client.get("/_sandbox/inventory")).json() == {"levels": []}
        assert (await client.get("/_sandbox/changes")).json() == {"changes": [], "last_seq": 0}
        assert set((await request_counts(client)).values()) == {0}


@pytest.mark.asyncio
async def test_two_stores_in_one_process_keep_separate_state() -> None:
    async with open_store() as first, open_store() as second:
        await set_available(first, [quantity(ITEM_A, 4)])

        assert len(await applied_changes(first)) == 1
        assert await applied_changes(second) == []


# --- order webhooks --------------------------------------------------------------------------


def independent_signature(body: bytes) -> str:
    return base64.b64encode(hmac.new(SECRET.encode(), body, hashlib.sha256).digest()).decode()


@pytest.mark.asyncio
async def test_an_order_webhook_carries_shopifys_headers_and_a_signature_over_the_exact_bytes_received(
    webhook_receiver: WebhookReceiver,
) -> None:
    async with open_store(webhook_url=webhook_receiver.url) as client:
        await seed(client, (ITEM_A, "A", 5))

        answer = await client.post(
            "/_sandbox/orders", json={"line_items": [{"sku": "A", "quantity": 2}, {"sku": "B", "quantity": 1}]}
        )

        sent = answer.json()
        assert sent["status_code"] == 200
        assert sent["body"] == "ok"
        assert isinstance(sent["sent_at"], float)
        [received] = webhook_receiver.received
        headers = received.headers
        assert hmac.compare_digest(headers["x-shopify-hmac-sha256"], independent_signature(received.body))
        assert headers["x-shopify-topic"] == "orders/create"
        assert headers["x-shopify-shop-domain"] == SHOP
        assert headers["x-shopify-api-version"] == "2026-10"
        assert headers["x-shopify-event-id"] == sent["event_id"]
        assert uuid.UUID(headers["x-shopify-webhook-id"])
        assert headers["x-shopify-triggered-at"].endswith("Z")
        assert headers["content-type"] == "application/json"
        order = orjson.loads(received.body)
        assert order == sent["order"]
        assert (order["name"], order["cancelled_at"], order["cancel_reason"]) == ("#1001", None, None)
        assert [(line["sku"], line["quantity"], line["fulfillable_quantity"]) for line in order["line_items"]] == [
            ("A", 2, 2),
            ("B", 1, 1),
        ]
        assert all(
            isinstance(line[key], int) for line in order["line_items"] for key in ("id", "variant_id", "product_id")
        )


@pytest.mark.asyncio
async def test_a_redelivery_resends_the_same_bytes_with_the_same_event_id(webhook_receiver: WebhookReceiver) -> None:
    async with open_store(webhook_url=webhook_receiver.url) as client:
        sent = (await client.post("/_sandbox/orders", json={"line_items": [{"sku": "A", "quantity": 1}]})).json()

        again = await client.post("/_sandbox/redeliver", json={"event_id": sent["event_id"]})

        assert again.json()["event_id"] == sent["event_id"]
        first, duplicate = webhook_receiver.received
        assert duplicate.body == first.body
        assert duplicate.headers["x-shopify-event-id"] == first.headers["x-shopify-event-id"] == sent["event_id"]
        assert duplicate.headers["x-shopify-hmac-sha256"] == first.headers["x-shopify-hmac-sha256"]
        assert duplicate.headers["x-shopify-triggered-at"] == first.headers["x-shopify-triggered-at"]
        assert duplicate.headers["x-shopify-webhook-id"] != first.headers["x-shopify-webhook-id"]


@pytest.mark.asyncio
async def test_a_receiver_answering_non_2xx_gets_retries_of_the_same_event(webhook_receiver: WebhookReceiver) -> None:
    webhook_receiver.answer_with(500, 503)
    async with open_store(webhook_url=webhook_receiver.url) as client:
        sent = (await client.post("/_sandbox/orders", json={"line_items": [{"sku": "A", "quantity": 1}]})).json()

        assert [attempt["status_code"] for attempt in sent["attempts"]] == [500, 503, 200]
        assert (sent["delivered"], sent["status_code"]) == (True, 200)
        deliveries = webhook_receiver.received
        assert len({d.body for d in deliveries}) == 1
        assert {d.headers["x-shopify-event-id"] for d in deliveries} == {sent["event_id"]}
        assert len({d.headers["x-shopify-webhook-id"] for d in deliveries}) == 3
        assert all(d.headers["x-shopify-hmac-sha256"] == independent_signature(d.body) for d in deliveries)


@pytest.mark.asyncio
async def test_retries_stop_after_the_configured_count(webhook_receiver: WebhookReceiver) -> None:
    webhook_receiver.answer_with(500, 500, 500, 500, 500)
    async with open_store(webhook_url=webhook_receiver.url) as client:
        sent = (await client.post("/_sandbox/orders", json={"line_items": [{"sku": "A", "quantity": 1}]})).json()

        assert (sent["delivered"], sent["status_code"], len(sent["attempts"])) == (False, 500, 4)
        assert len(webhook_receiver.received) == 4


@pytest.mark.asyncio
async def test_an_unreachable_receiver_is_reported_not_raised() -> None:
    async with open_store(webhook_url="http://127.0.0.1:9/unreachable", webhook_retry_delays=()) as client:
        sent = (await client.post("/_sandbox/orders", json={"line_items": [{"sku": "A", "quantity": 1}]})).json()

        assert (sent["delivered"], sent["status_code"]) == (False, None)
        assert sent["attempts"][0]["error"]


@pytest.mark.asyncio
async def test_a_cancellation_resends_the_same_order_with_cancelled_at_and_nothing_left_to_fulfil(
    webhook_receiver: WebhookReceiver,
) -> None:
    async with open_store(webhook_url=webhook_receiver.url) as client:
        created = (await client.post("/_sandbox/orders", json={"line_items": [{"sku": "A", "quantity": 2}]})).json()
        order_id = created["order"]["id"]

        cancelled = (
            await client.post(
                "/_sandbox/orders",
                json={"topic": "orders/cancelled", "order_id": order_id, "cancel_reason": "customer"},
            )
        ).json()

        order = cancelled["order"]
        assert cancelled["event_id"] != created["event_id"]
        assert (order["id"], order["name"]) == (order_id, created["order"]["name"])
        assert order["cancelled_at"] is not None
        assert order["cancel_reason"] == "customer"
        [line] = order["line_items"]
        assert line["id"] == created["order"]["line_items"][0]["id"]
        assert (line["quantity"], line["fulfillable_quantity"]) == (2, 0)
        assert webhook_receiver.received[1].headers["x-shopify-topic"] == "orders/cancelled"


@pytest.mark.asyncio
async def test_an_order_commits_the_stores_stock_and_its_cancellation_restocks_it(
    webhook_receiver: WebhookReceiver,
) -> None:
    async with open_store(webhook_url=webhook_receiver.url) as client:
        await seed(client, (ITEM_A, "A", 5))

        created = (await client.post("/_sandbox/orders", json={"line_items": [{"sku": "A", "quantity": 2}]})).json()
        [after_order] = (await client.get("/_sandbox/inventory")).json()["levels"]
        await client.post("/_sandbox/orders", json={"topic": "orders/cancelled", "order_id": created["order"]["id"]})
        [after_cancel] = (await client.get("/_sandbox/inventory")).json()["levels"]

        assert (after_order["available"], after_order["committed"], after_order["on_hand"]) == (3, 2, 5)
        assert (after_cancel["available"], after_cancel["committed"], after_cancel["on_hand"]) == (5, 0, 5)


@pytest.mark.asyncio
async def test_an_order_without_a_webhook_url_is_refused_and_leaves_no_trace() -> None:
    async with open_store() as client:
        answer = await client.post("/_sandbox/orders", json={"line_items": [{"sku": "A", "quantity": 1}]})

        assert answer.status_code == 409
        assert (await client.get("/_sandbox/webhooks")).json() == {"deliveries": []}


def test_sign_webhook_matches_an_independent_hmac_for_str_and_bytes_secrets() -> None:
    body = b'{"id":1,"line_items":[]}'

    assert sign_webhook(SECRET, body) == independent_signature(body)
    assert sign_webhook(SECRET.encode(), body) == independent_signature(body)


def test_build_order_gives_the_same_ids_when_an_order_is_rebuilt() -> None:
    from datetime import UTC, datetime

    created_at = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    lines = [OrderLine(sku="A", quantity=1), OrderLine(sku="B", quantity=3, price="2.50")]

    first = build_order(order_id=7, order_number=1001, lines=lines, created_at=created_at)
    again = build_order(order_id=7, order_number=1001, lines=lines, created_at=created_at)

    assert first == again
    assert first["total_price"] == "17.50"
    assert (
        first["line_items"][1]["variant_id"]
        == build_order(order_id=8, order_number=1002, lines=lines[1:], created_at=created_at)["line_items"][0][
            "variant_id"
        ]
    )


# --- command line ----------------------------------------------------------------------------


def test_the_command_line_builds_the_settings() -> None:
    settings, args = parse_args(
        [
            "--port", "9101", "--shop-domain", SHOP, "--access-token", TOKEN, "--webhook-secret", SECRET,
            "--webhook-url", "http://127.0.0.1:8000/hook", "--restore-rate", "50", "--bucket-size", "500",
            "--webhook-retry-delays", "0.1,0.2",
        ]
    )  # fmt: skip

    assert (args.host, args.port) == ("127.0.0.1", 9101)
    assert (settings.shop_domain, settings.access_token, settings.webhook_secret) == (SHOP, TOKEN, SECRET)
    assert (settings.restore_rate, settings.bucket_size) == (50.0, 500.0)
    assert settings.webhook_retry_delays == (0.1, 0.2)
    assert settings.webhook_url == "http://127.0.0.1:8000/hook"


def test_the_package_entry_point_dispatches_on_the_channel_name(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as unknown:
        sandboxes_cli.main(["nosuchchannel"])
    with pytest.raises(SystemExit) as shopify_help:
        sandboxes_cli.main(["shopify", "--help"])

    assert "shopify" in str(unknown.value.code)
    assert shopify_help.value.code == 0
    assert "--access-token" in capsys.readouterr().out
