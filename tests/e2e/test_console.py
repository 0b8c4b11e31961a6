"""The merchant console in a real browser (Debian's chromium, driven by Playwright) against the running stack.

One shop is set up for the module: two Shopify stores (C1, C2) and a WooCommerce store (W)
that has no listing for SKU B, so it refuses B's updates with its own message. SKU A has
on_hand 5 and SKU LOW on_hand 2. Each test saves a screenshot under tests/e2e/screenshots/.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from stocksync_embedded.stack import Stack

from tests.e2e.channel_sandboxes import ChannelSandboxes, Sandbox, SandboxProcesses, SandboxShopify, case_of
from tests.e2e.conftest import Merchant, connect_shopify, new_merchant, wait_for

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).parent / "screenshots"
ITEMS = {
    "C1": ("gid://shopify/InventoryItem/101", "gid://shopify/Location/1"),
    "C2": ("gid://shopify/InventoryItem/201", "gid://shopify/Location/2"),
}
WOO = case_of("woocommerce")

# Under load a correct pipeline has taken over 20 s end to end (tests/e2e/conftest.wait_for).
expect.set_options(timeout=60_000)


@dataclass
class Shop:
    merchant: Merchant
    c1: SandboxShopify
    c2: SandboxShopify
    woo: Sandbox
    ids: dict[str, str]


@pytest.fixture(scope="module")
def shop(stack: Stack, api: httpx.Client) -> Iterator[Shop]:
    merchant = new_merchant(api, stack, "console shop")
    processes = SandboxProcesses(stack.home / "logs")
    stores: dict[str, SandboxShopify] = {}
    ids: dict[str, str] = {}
    try:
        for name in ("C1", "C2"):
            stores[name] = processes.shopify()
            item, location = ITEMS[name]
            listings = [
                {"sku": sku, "inventory_item_id": f"{item}{i}", "location_id": location}
                for i, sku in enumerate(("A", "B", "LOW"))
            ]
            ids[name] = connect_shopify(api, merchant, stores[name], name, listings)
        channels = ChannelSandboxes(api, merchant, stack, processes)
        woo = channels.start(WOO, ["A", "B", "LOW"], leave_out=frozenset({"B"}))
        ids["W"] = channels.connect(woo, ["A", "B", "LOW"])
        snapshot = api.post(
            "/v1/stock/snapshots",
            headers=merchant.auth,
            json={"items": [{"sku": "A", "on_hand": 5}, {"sku": "B", "on_hand": 5}, {"sku": "LOW", "on_hand": 2}]},
        )
        assert snapshot.status_code == 200, snapshot.text
        # Every channel has A's first quantity before a test looks at it.
        wait_for(lambda: stores["C2"].changes() and woo.quantities().get("A") == 5)
        yield Shop(merchant, stores["C1"], stores["C2"], woo, ids)
    finally:
        processes.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail("/usr/bin/chromium is missing: `make test` installs Debian's chromium package")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    yield context
    context.close()


def shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def sign_in(page: Page, base_url: str, api_key: str) -> None:
    page.goto(f"{base_url}/console/sign-in")
    page.get_by_label("API key").fill(api_key)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{base_url}/console/channels")


def signed_in_page(context: BrowserContext, base_url: str, api_key: str) -> Page:
    page = context.new_page()
    sign_in(page, base_url, api_key)
    return page


def serious_violations(page: Page) -> list[dict[str, Any]]:
    results = Axe().run(page)
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:3]}
        for v in results.response["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def ensure_seed_rule(api: httpx.Client, shop: Shop) -> None:
    rules = api.get("/v1/rules", headers=shop.merchant.auth).json()
    if not any(r["channels"] == [shop.ids["C2"]] for r in rules):
        rule = {
            "name": "Buffer C2",
            "channels": [shop.ids["C2"]],
            "condition": {"op": "<=", "value": 3},
            "action": {"type": "set", "value": 0},
        }
        answer = api.post("/v1/rules", headers=shop.merchant.auth, json=rule)
        assert answer.status_code == 201, answer.text


def test_a_wrong_api_key_gets_a_clear_message_and_no_session(stack: Stack, context: BrowserContext) -> None:
    page = context.new_page()
    page.goto(f"{stack.base_url}/console/channels")
    expect(page).to_have_url(f"{stack.base_url}/console/sign-in")
    page.get_by_label("API key").fill("sk_not_a_real_key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("This API key is not accepted")
    assert not [c for c in context.cookies() if c["name"] == "stocksync_console"]
    shot(page, "console-wrong-key")


def test_a_revoked_api_key_is_refused_at_sign_in_with_a_clear_message(
    stack: Stack, shop: Shop, context: BrowserContext, api: httpx.Client
) -> None:
    created = api.post("/v1/api-keys", headers=shop.merchant.auth, json={"name": "console, revoked"})
    assert created.status_code == 201, created.text
    key = created.json()
    revoked = api.post(f"/v1/api-keys/{key['key_id']}/revoke", headers=shop.merchant.auth)
    assert revoked.status_code == 200, revoked.text
    page = context.new_page()
    page.goto(f"{stack.base_url}/console/sign-in")
    page.get_by_label("API key").fill(key["api_key"])
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("it has been revoked or rotated")
    assert not [c for c in context.cookies() if c["name"] == "stocksync_console"]


def test_the_session_cookie_is_sealed_httponly_strict_and_sign_out_ends_it(
    stack: Stack, shop: Shop, context: BrowserContext
) -> None:
    page = signed_in_page(context, stack.base_url, shop.merchant.api_key)
    (cookie,) = [c for c in context.cookies() if c["name"] == "stocksync_console"]
    assert (cookie["httpOnly"], cookie["sameSite"], cookie["path"]) == (True, "Strict", "/console")
    assert shop.merchant.api_key not in cookie["value"]
    assert shop.merchant.api_key not in page.url
    assert page.evaluate("JSON.stringify(localStorage) + JSON.stringify(sessionStorage)") == "{}{}"
    expect(page.locator(f'tr[data-connection="{shop.ids["C1"]}"]')).to_contain_text("C1")
    shot(page, "console-channels")
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(f"{stack.base_url}/console/sign-in")
    page.goto(f"{stack.base_url}/console/channels")
    expect(page).to_have_url(f"{stack.base_url}/console/sign-in")
    # A state-changing form posted without the session's CSRF token changes nothing.
    sign_in(page, stack.base_url, shop.merchant.api_key)
    forged = page.request.post(
        f"{stack.base_url}/console/channels/{shop.ids['C1']}/pause", form={"csrf": "forged"}, max_redirects=0
    )
    assert forged.status == 403
    assert (
        httpx.get(f"{stack.base_url}/v1/connections/{shop.ids['C1']}", headers=shop.merchant.auth).json()["paused"]
        is False
    )


def test_create_the_seed_rule_on_one_channel_with_its_preview(
    stack: Stack, shop: Shop, context: BrowserContext, api: httpx.Client
) -> None:
    page = signed_in_page(context, stack.base_url, shop.merchant.api_key)
    page.goto(f"{stack.base_url}/console/rules/new?channel={shop.ids['C2']}")
    page.get_by_label("Name").fill("Buffer C2")
    page.get_by_label("Condition").select_option("<=")
    page.get_by_label("Value", exact=True).fill("3")
    # Live validation: the API's own field error while the action's N is missing.
    expect(page.locator("#rule-errors")).to_contain_text("action.value")
    expect(page.locator("#action_value")).to_have_attribute("aria-invalid", "true")
    page.get_by_label("Action").select_option("set")
    page.get_by_label("N", exact=True).fill("0")
    page.get_by_role("button", name="Preview").click()
    preview = page.locator("#rule-preview")
    # LOW (available 2) goes from 2 to 0 on C2; A and B (5) are above the threshold.
    expect(preview.locator("#preview-summary")).to_contain_text("Saving changes 1 channel quantity on 1 SKU")
    row = preview.locator("tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("C2 (shopify)")
    expect(row.locator("th")).to_have_text("LOW")
    expect(row.locator("td").nth(3)).to_have_text("0")
    shot(page, "console-rule-preview")
    page.get_by_role("button", name="Save rule").click()
    expect(page.get_by_role("status")).to_contain_text("set the value to 0 when quantity <= 3, all products, on C2")
    rules = api.get("/v1/rules", headers=shop.merchant.auth).json()
    (saved,) = [r for r in rules if r["name"] == "Buffer C2"]
    assert (saved["channels"], saved["condition"]["op"], saved["condition"]["value"], saved["action"]) == (
        [shop.ids["C2"]],
        "<=",
        3,
        {"type": "set", "value": 0},
    )
    expect(page.locator(".history")).to_contain_text("created")
    page.goto(f"{stack.base_url}/console/rules?channel={shop.ids['C2']}")
    expect(page.locator("#rules")).to_contain_text("Buffer C2")
    page.goto(f"{stack.base_url}/console/rules?channel={shop.ids['C1']}")
    expect(page.locator("#rules")).not_to_contain_text("Buffer C2")


def test_an_order_changes_the_other_channels_rows_and_history_without_reloading(
    stack: Stack, shop: Shop, context: BrowserContext, api: httpx.Client
) -> None:
    ensure_seed_rule(api, shop)
    stock = signed_in_page(context, stack.base_url, shop.merchant.api_key)
    stock.goto(f"{stack.base_url}/console/stock?q=A")
    row = stock.locator('tr[data-sku="A"]')
    expect(row.locator(f'td[data-connection="{shop.ids["C2"]}"]')).to_contain_text("5")
    history = context.new_page()
    history.goto(f"{stack.base_url}/console/channels/{shop.ids['C2']}?sku=A")
    for page in (stock, history):
        page.evaluate("window.__notReloaded = true")
        # The pages listen to the console's server-sent events (there is no polling).
        expect(page.locator("html")).to_have_attribute("data-live", "open")

    webhook = f"{stack.base_url}/webhooks/shopify/{shop.ids['C1']}"
    order = shop.c1.order(webhook, [{"sku": "A", "quantity": 2}])
    assert order["status_code"] == 200, order

    # Available 3: C2's rule publishes 0, WooCommerce (no rule) 3.
    expect(row.locator(f'td[data-connection="{shop.ids["C2"]}"]')).to_contain_text("0")
    expect(row.locator(f'td[data-connection="{shop.ids["W"]}"]')).to_contain_text("3")
    expect(row.locator("td").nth(2)).to_have_text("3")  # available
    expect(history.locator("#update-history tbody tr").first).to_contain_text("accepted")
    first = history.locator("#update-history tbody tr").first
    expect(first.locator("td.num").first).to_have_text("0")
    expect(first).to_contain_text("shopify:")  # why: the order that caused it
    for page in (stock, history):
        assert page.evaluate("window.__notReloaded") is True
        # What changed them: a fragment fetched because the event stream said so.
        assert int(page.evaluate("document.documentElement.dataset.liveRefreshes || '0'")) >= 1
    shot(stock, "console-stock-after-order")
    shot(history, "console-c2-history")


def test_a_channel_refusing_an_update_shows_in_its_error_list(
    stack: Stack, shop: Shop, context: BrowserContext
) -> None:
    page = signed_in_page(context, stack.base_url, shop.merchant.api_key)
    page.goto(f"{stack.base_url}/console/channels/{shop.ids['W']}")
    groups = page.locator("#error-groups")
    expect(groups).to_contain_text(WOO.unknown_listing_message)
    expect(groups.locator("tbody tr").first).to_contain_text("B")
    expect(groups.locator("tbody tr").first).to_contain_text("rejected")
    page.get_by_label("SKU").fill("A")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#errors-title + p")).to_have_text("No error in this period.")
    shot(page, "console-channel-errors")


def test_another_merchants_data_is_never_visible(stack: Stack, shop: Shop, browser: Browser, api: httpx.Client) -> None:
    other = new_merchant(api, stack, "another shop")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = signed_in_page(context, stack.base_url, other.api_key)
        expect(page.locator("main")).to_contain_text("No channel connected yet")
        for name, connection_id in shop.ids.items():
            assert connection_id not in page.content(), name
        answer = page.goto(f"{stack.base_url}/console/channels/{shop.ids['C1']}")
        assert answer is not None and answer.status == 404
        expect(page.locator("main")).not_to_contain_text("C1")
        page.goto(f"{stack.base_url}/console/stock")
        expect(page.locator("#stock-table")).to_contain_text("No SKU found.")
        answer = page.goto(f"{stack.base_url}/console/stock/A")
        assert answer is not None and answer.status == 404
        page.goto(f"{stack.base_url}/console/rules")
        expect(page.locator("#rules")).not_to_contain_text("Buffer C2")
        page.goto(f"{stack.base_url}/console/orders")
        expect(page.locator("#deliveries")).to_contain_text("No delivery yet.")
        shot(page, "console-other-merchant")
    finally:
        context.close()


PAGES = ["channels", "channel", "rules", "rules/new", "stock", "stock/A", "locations", "orders", "live"]


@pytest.mark.parametrize("width", [1280, 390])
def test_every_page_passes_axe_and_reads_at_desktop_and_phone_width(
    stack: Stack, shop: Shop, browser: Browser, width: int
) -> None:
    context = browser.new_context(viewport={"width": width, "height": 900})
    try:
        page = context.new_page()
        page.goto(f"{stack.base_url}/console/sign-in")
        assert serious_violations(page) == []
        sign_in(page, stack.base_url, shop.merchant.api_key)
        for name in PAGES:
            path = f"channels/{shop.ids['C2']}" if name == "channel" else name
            page.goto(f"{stack.base_url}/console/{path}")
            assert serious_violations(page) == [], name
            # Nothing wider than the window but the tables, which scroll in their own box.
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 1, (name, overflow)
        shot(page, f"console-live-{width}")
    finally:
        context.close()


def test_the_console_is_usable_with_the_keyboard_alone(stack: Stack, shop: Shop, context: BrowserContext) -> None:
    page = context.new_page()
    page.goto(f"{stack.base_url}/console/sign-in")
    # The key field has the focus: type and press Enter.
    expect(page.locator("#api_key")).to_be_focused()
    page.keyboard.type(shop.merchant.api_key)
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{stack.base_url}/console/channels")
    # The skip link first, then the navigation: Channels, Rules, Stock.
    page.keyboard.press("Tab")
    expect(page.locator(".skip")).to_be_focused()
    for _ in range(3):
        page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Stock")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{stack.base_url}/console/stock")
    expect(page.locator('tr[data-sku="LOW"]')).to_contain_text("low")


def test_the_api_additions_the_console_reads(shop: Shop, api: httpx.Client) -> None:
    auth = shop.merchant.auth
    wait_for(lambda: {p["sku"] for p in published(api, shop, ["A", "LOW"])} == {"A", "LOW"})
    # Repeated ?sku= parameters all reach the publisher, through the gateway too.
    rows = published(api, shop, ["A", "LOW", "NOT-A-SKU"])
    assert {r["sku"] for r in rows} == {"A", "LOW"}
    assert {r["connection_id"] for r in rows} <= set(shop.ids.values())
    assert all(r["quantity"] >= 0 and isinstance(r["rule_ids"], list) for r in rows)
    assert api.get("/v1/pushes/published", headers=auth).status_code == 422
    assert api.get("/v1/pushes/published", headers=auth, params={"sku": "a\x00b"}).status_code == 422

    newest = api.get("/v1/pushes", headers=auth, params={"order": "desc", "limit": 5}).json()
    ids = [p["push_id"] for p in newest]
    assert ids == sorted(ids, reverse=True) and len(ids) >= 2
    older = api.get("/v1/pushes", headers=auth, params={"order": "desc", "before": ids[0]}).json()
    assert older and all(p["push_id"] < ids[0] for p in older)
    assert api.get("/v1/pushes", headers=auth, params={"order": "sideways"}).status_code == 422

    page = api.get("/v1/stock", headers=auth, params={"sku_prefix": "LO"}).json()
    assert [i["sku"] for i in page["items"]] == ["LOW"]
    assert api.get("/v1/stock", headers=auth, params={"sku_prefix": "\x01"}).status_code == 422


def published(api: httpx.Client, shop: Shop, skus: list[str]) -> list[dict[str, Any]]:
    answer = api.get("/v1/pushes/published", headers=shop.merchant.auth, params=[("sku", s) for s in skus])
    assert answer.status_code == 200, answer.text
    rows: list[dict[str, Any]] = answer.json()
    return rows


def test_the_stock_table_sorts_by_a_column_on_the_server_and_pages_in_that_order(
    stack: Stack, shop: Shop, context: BrowserContext, api: httpx.Client
) -> None:
    page = signed_in_page(context, stack.base_url, shop.merchant.api_key)
    page.goto(f"{stack.base_url}/console/stock")
    page.get_by_role("link", name="Available").click()
    expect(page.locator("th[aria-sort='ascending']")).to_contain_text("Available")
    rows = page.locator("#stock-table tbody tr")
    available = [int(v) for v in rows.evaluate_all("rows => rows.map(r => r.querySelectorAll('td')[2].textContent)")]
    assert available == sorted(available) and available[0] == 2  # LOW first
    expect(rows.first).to_have_attribute("data-sku", "LOW")
    page.get_by_role("link", name="Available").click()  # again: the other way
    expect(page.locator("th[aria-sort='descending']")).to_contain_text("Available")
    expect(rows.last).to_have_attribute("data-sku", "LOW")
    shot(page, "console-stock-sorted")

    auth = shop.merchant.auth
    first = api.get("/v1/stock", headers=auth, params={"sort": "available", "order": "desc", "limit": 1}).json()
    assert first["next_after"] is None and first["next_cursor"]
    second = api.get(
        "/v1/stock",
        headers=auth,
        params={"sort": "available", "order": "desc", "limit": 5, "cursor": first["next_cursor"]},
    ).json()
    every = [*first["items"], *second["items"]]
    keys = [(-i["available"], i["sku"]) for i in every]
    assert keys == sorted(keys) and {i["sku"] for i in every} == {"A", "B", "LOW"}
    # A cursor of another sort, a made-up one and `after` with a sort other than SKU: 422.
    for params in (
        {"sort": "on_hand", "cursor": first["next_cursor"]},
        {"sort": "available", "order": "desc", "cursor": "bm90IGEgY3Vyc29y"},
        {"sort": "available", "after": "A"},
        {"sort": "colour"},
    ):
        answer = api.get("/v1/stock", headers=auth, params=params)
        assert answer.status_code == 422, (params, answer.text)


def test_the_event_stream_needs_a_session_and_says_it_is_ready(
    stack: Stack, shop: Shop, context: BrowserContext
) -> None:
    # Streamed, so that a stream answered by mistake fails at once instead of running on.
    with httpx.stream(
        "GET", f"{stack.base_url}/console/events", headers={"X-Console-Fragment": "1"}, timeout=30
    ) as signed_out:
        assert signed_out.status_code == 401
        assert signed_out.headers["content-type"].startswith("application/json")
    page = signed_in_page(context, stack.base_url, shop.merchant.api_key)
    expect(page.locator("html")).to_have_attribute("data-live", "open")


def test_the_locations_page_shows_where_each_channel_sells_from_and_the_bundles(
    stack: Stack, shop: Shop, context: BrowserContext, api: httpx.Client
) -> None:
    made = api.put(
        "/v1/bundles/PAIR-OF-A", headers=shop.merchant.auth, json={"components": [{"sku": "A", "quantity": 2}]}
    )
    assert made.status_code in (200, 201), made.text
    page = signed_in_page(context, stack.base_url, shop.merchant.api_key)
    page.get_by_role("link", name="Locations").click()
    expect(page).to_have_url(f"{stack.base_url}/console/locations")
    row = page.locator("tr", has=page.get_by_role("rowheader", name="default"))
    expect(row).to_contain_text("C1")
    expect(row).to_contain_text("C2")
    bundle = page.locator("tr", has=page.get_by_role("rowheader", name="PAIR-OF-A"))
    expect(bundle).to_contain_text("2 × A")
    expect(bundle).to_contain_text("default: ")
    page.get_by_role("link", name="default", exact=True).click()
    expect(page).to_have_url(f"{stack.base_url}/console/stock?location=default")
    expect(page.locator('tr[data-sku="A"]')).to_be_visible()
    page.goto(f"{stack.base_url}/console/stock?location=nowhere")
    expect(page.locator("#stock-table")).to_contain_text("No SKU found.")
    page.goto(f"{stack.base_url}/console/channels/{shop.ids['C2']}")
    expect(page.locator(".facts")).to_contain_text("default")
