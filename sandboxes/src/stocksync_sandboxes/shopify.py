"""A sandbox Shopify store: the GraphQL Admin API for inventory, order webhooks, and a
control API for tests and the demo.

It checks requests as Shopify does (access token, schema of the API version in the URL,
250-item input arrays, global ids, compare-and-set and idempotency rules, the query-cost
leaky bucket) so that an adapter that passes against it is right against the real API.
Where a behaviour is not documented by Shopify, the code says "(unverified)".

Everything a store holds lives in one `ShopifyStore` kept on `app.state`, so several
stores can run in one process.

Run it: python -m stocksync_sandboxes.shopify --port 9101 --access-token T --webhook-secret S
"""

import argparse
import asyncio
import hmac
import itertools
import secrets
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

import httpx
import orjson
import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from stocksync_sandboxes.cost_bucket import LeakyBucket
from stocksync_sandboxes.marketplace_sandbox import TokenIssuer
from stocksync_sandboxes.shopify_admin_graphql import AdminGraphQL, Outcome, resolve_api_version
from stocksync_sandboxes.shopify_inventory import (
    CatalogItem,
    Inventory,
    InventoryLevel,
    SeedLevel,
    to_gid,
)
from stocksync_sandboxes.shopify_webhooks import (
    SANDBOX_RETRY_DELAYS,
    SHOPIFY_RESPONSE_TIMEOUT_SECONDS,
    CancelReason,
    Delivery,
    OrderLine,
    OrderTopic,
    WebhookEvent,
    WebhookSender,
    build_order,
    order_body,
    product_id_for_sku,
    sign_webhook,
    variant_id_for_sku,
    webhook_headers,
)

__all__ = [
    "ShopifySandboxSettings",
    "ShopifyStore",
    "build_order",
    "create_app",
    "main",
    "sign_webhook",
    "webhook_headers",
]

INVALID_TOKEN_MESSAGE = "[API] Invalid API key or access token (unrecognized login or wrong password)"


@dataclass(frozen=True)
class ShopifySandboxSettings:
    access_token: str
    webhook_secret: str
    shop_domain: str = "demo.myshopify.com"
    webhook_url: str | None = None
    bucket_size: float = 1000.0  # Shopify Standard plan
    restore_rate: float = 100.0  # points per second, Shopify Standard plan (Plus: 1000)
    # The API version of the app's webhook subscriptions, sent in X-Shopify-API-Version.
    webhook_api_version: str = "2026-10"
    # Shopify supports a stable version for at least 12 months. On 2026-11-26, 2026-01 is
    # the oldest still supported and 2027-01 the release candidate. (unverified dates)
    oldest_supported_api_version: str = "2026-01"
    newest_api_version: str = "2027-01"
    webhook_retry_delays: tuple[float, ...] = SANDBOX_RETRY_DELAYS
    webhook_timeout: float = SHOPIFY_RESPONSE_TIMEOUT_SECONDS
    first_order_number: int = 1001
    # Expiring offline tokens: with a client id, secret and refresh token the store also
    # issues access tokens at /admin/oauth/access_token that expire after token_lifetime_s,
    # and rotates the refresh token on each refresh (the previous one is refused).
    client_id: str | None = None
    client_secret: str | None = None
    refresh_token: str | None = None
    token_lifetime_s: float = 3600.0

    def __post_init__(self) -> None:
        if not self.access_token or not self.webhook_secret:
            raise ValueError("the access token and the webhook secret must not be empty")
        if any(delay < 0 for delay in self.webhook_retry_delays):
            raise ValueError("webhook retry delays must not be negative")


class OrderEventConflict(Exception):
    """The order event clashes with the store's state (answered 409)."""


class OrderEventInvalid(Exception):
    """The order event cannot be built from what was given (answered 422)."""


class InjectedFailure(StrEnum):
    """What `POST /_sandbox/fail-next` makes the next GraphQL calls answer."""

    HTTP_500 = "http_500"
    HTTP_503 = "http_503"
    HTTP_429 = "http_429"
    THROTTLED = "throttled"  # Shopify's HTTP 200 "Throttled" answer, nothing applied
    HTTP_500_AFTER_APPLY = "http_500_after_apply"  # applied, then the answer is lost
    HANG = "hang"  # no answer for HANG_S, past any client's timeout; nothing applied


# How long a "hang" holds the call before it answers 504: longer than the publisher's
# channel timeout (CHANNEL_TIMEOUT_S, 10 s by default), so the caller gives up first.
HANG_S = 30.0


@dataclass
class RequestCounts:
    accepted: int = 0
    replayed: int = 0
    rejected: int = 0
    throttled: int = 0
    queries: int = 0
    unauthorized: int = 0
    injected_failures: int = 0

    def record(self, outcome: Outcome) -> None:
        if outcome is Outcome.QUERY:
            self.queries += 1
        else:
            setattr(self, outcome.value, getattr(self, outcome.value) + 1)


@dataclass
class _StoredOrder:
    order_id: int
    order_number: int
    lines: tuple[OrderLine, ...]
    created_at: datetime
    cancelled_at: datetime | None = None
    cancel_reason: str | None = None
    fulfilled_at: datetime | None = None
    inventory_committed: bool = False

    def resource(self) -> dict[str, Any]:
        return build_order(
            order_id=self.order_id,
            order_number=self.order_number,
            lines=self.lines,
            created_at=self.created_at,
            cancelled_at=self.cancelled_at,
            cancel_reason=self.cancel_reason,
            fulfilled_at=self.fulfilled_at,
        )


# Shopify order ids are 13-digit numbers; the sandbox counts up from here.
_FIRST_ORDER_ID = 5_000_000_000_001


class ShopifyStore:
    """One sandbox store's whole state."""

    def __init__(
        self,
        settings: ShopifySandboxSettings,
        *,
        monotonic: Callable[[], float],
        wall_clock: Callable[[], float],
        webhook_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.wall_clock = wall_clock
        self.inventory = Inventory(wall_clock)
        self.bucket = LeakyBucket(settings.bucket_size, settings.restore_rate, monotonic)
        self.graphql = AdminGraphQL(self.inventory, self.bucket)
        self.webhooks = WebhookSender(
            shop_domain=settings.shop_domain,
            api_version=settings.webhook_api_version,
            secret=settings.webhook_secret,
            retry_delays=settings.webhook_retry_delays,
            timeout=settings.webhook_timeout,
            client=self.http_client,
            wall_clock=wall_clock,
        )
        self.counts = RequestCounts()
        self.pending_failures: deque[InjectedFailure] = deque()
        self.orders: dict[int, _StoredOrder] = {}
        self.events: dict[str, WebhookEvent] = {}
        self.deliveries: list[Delivery] = []
        self._webhook_transport = webhook_transport
        self._client: httpx.AsyncClient | None = None
        self._restart_numbering()

    def _restart_numbering(self) -> None:
        self._order_numbers = itertools.count(self.settings.first_order_number)
        # Real order ids never repeat: a restarted sandbox must not reuse them, or the
        # ledger would rightly take its new orders for replays of old ones.
        self._order_ids = itertools.count(_FIRST_ORDER_ID + int(time.time() * 1000) % 10**12 * 10)

    def http_client(self) -> httpx.AsyncClient:
        """One client for all deliveries, so a load test reuses connections."""
        if self._client is None:
            self._client = httpx.AsyncClient(transport=self._webhook_transport)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def reset(self) -> None:
        """Back to a new store with the settings' limits; the HTTP client stays open."""
        self.inventory.reset()
        self.bucket.reconfigure(size=self.settings.bucket_size, restore_rate=self.settings.restore_rate)
        self.bucket.fill()
        self.counts = RequestCounts()
        self.pending_failures.clear()
        self.orders.clear()
        self.events.clear()
        self.deliveries.clear()
        self._restart_numbering()

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.wall_clock(), UTC)

    def record_order_event(
        self,
        *,
        topic: str,
        lines: Sequence[OrderLine],
        order_id: int | None,
        event_id: str | None,
        cancel_reason: str,
        adjust_inventory: bool,
    ) -> tuple[_StoredOrder, WebhookEvent]:
        """Apply an order event to the store and freeze the webhook it triggers.

        Runs without awaiting, so the order's state and the inventory move together.
        """
        if event_id is not None and event_id in self.events:
            raise OrderEventConflict(f"event {event_id} exists: use /_sandbox/redeliver to resend it")
        order = self.orders.get(order_id) if order_id is not None else None
        if order is not None and topic == "orders/create":
            raise OrderEventConflict(f"order {order_id} exists")
        if order is not None and lines:
            raise OrderEventInvalid("line_items are only for a new order")
        now = self.now()
        if order is None:
            if not lines:
                raise OrderEventInvalid("a new order needs line_items")
            order = _StoredOrder(
                order_id=order_id if order_id is not None else self._next_order_id(),
                order_number=next(self._order_numbers),
                lines=tuple(lines),
                created_at=now,
            )
            self.orders[order.order_id] = order
            # An order for the sandbox's own store is created there first, so it takes stock
            # from available into committed, whatever topic announces it.
            if adjust_inventory:
                for line in order.lines:
                    self.inventory.commit_for_order(line.sku, line.quantity)
                order.inventory_committed = True
        if topic == "orders/cancelled" and order.cancelled_at is None:
            order.cancelled_at, order.cancel_reason = now, cancel_reason
            if order.inventory_committed and order.fulfilled_at is None:
                for line in order.lines:
                    self.inventory.release_for_order(line.sku, line.quantity)
        elif topic == "orders/fulfilled" and order.fulfilled_at is None:
            order.fulfilled_at = now
            if order.inventory_committed and order.cancelled_at is None:
                for line in order.lines:
                    self.inventory.ship_for_order(line.sku, line.quantity)
        event = WebhookEvent(
            event_id=event_id or str(uuid.uuid4()),
            topic=topic,
            order_id=order.order_id,
            body=order_body(order.resource()),
            triggered_at=now,
        )
        self.events[event.event_id] = event
        return order, event

    def _next_order_id(self) -> int:
        # Skip ids a caller chose for earlier orders.
        return next(order_id for order_id in self._order_ids if order_id not in self.orders)

    def webhook_url(self, override: str | None) -> str:
        url = override or self.settings.webhook_url
        if url is None:
            raise OrderEventConflict("no webhook URL: start with --webhook-url or pass webhook_url")
        return url


# --- control API bodies ------------------------------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SeedItem(_Body):
    inventory_item_id: str | int
    location_id: str | int
    sku: str = Field(min_length=1)
    available: int = 0
    committed: int = Field(0, ge=0)
    variant_id: int | None = None
    product_id: int | None = None
    title: str | None = None
    price: str = Field("10.00", pattern=r"^[0-9]+(\.[0-9]{1,2})?$")


class SeedItems(_Body):
    items: list[SeedItem]


class OrderLineIn(_Body):
    sku: str = Field(min_length=1)
    quantity: int = Field(gt=0)


class SendOrder(_Body):
    line_items: list[OrderLineIn] = []
    topic: OrderTopic = "orders/create"
    order_id: int | None = Field(None, gt=0)
    event_id: str | None = Field(None, min_length=1)
    webhook_url: str | None = None
    cancel_reason: CancelReason = "customer"
    # Whether the order moves the store's own stock, as a real Shopify order does.
    adjust_inventory: bool = True


class Redeliver(_Body):
    event_id: str
    webhook_url: str | None = None


class FailNext(_Body):
    count: int = Field(1, ge=1)
    mode: InjectedFailure = InjectedFailure.HTTP_500


class BucketConfig(_Body):
    restore_rate: float | None = Field(None, gt=0)
    bucket_size: float | None = Field(None, gt=0)
    currently_available: float | None = Field(None, ge=0)
    # Reads show an accepted quantity only this many seconds later (0: at once).
    display_delay_s: float | None = Field(None, ge=0, le=3600)


# --- the app -------------------------------------------------------------------------------


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def _store(request: Request) -> ShopifyStore:
    store: ShopifyStore = request.app.state.store
    return store


StoreDep = Annotated[ShopifyStore, Depends(_store)]


def _level_json(store: ShopifyStore, level: InventoryLevel) -> dict[str, Any]:
    item = store.inventory.catalog_item(level.inventory_item_id)
    return {
        "inventory_item_id": level.inventory_item_id,
        "location_id": level.location_id,
        "sku": None if item is None else item.sku,
        "available": level.available,
        "committed": level.committed,
        "on_hand": level.on_hand,
    }


def _failure_response(store: ShopifyStore, failure: InjectedFailure, headers: dict[str, str]) -> Response:
    if failure is InjectedFailure.THROTTLED:
        body = {
            "errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}],
            "extensions": {
                "cost": {
                    "requestedQueryCost": None,
                    "actualQueryCost": None,
                    "throttleStatus": store.bucket.status().as_json(),
                }
            },
        }
        return _json(200, body, headers)
    if failure is InjectedFailure.HTTP_429:
        # Shopify's REST-style rate-limit answer; GraphQL normally throttles with HTTP 200.
        message = "Exceeded 2 calls per second for api client. Reduce request rates to resume uninterrupted service."
        return _json(429, {"errors": message}, {**headers, "Retry-After": "2.0"})
    if failure is InjectedFailure.HTTP_503:
        return _json(503, {"errors": "Service Unavailable"}, headers)
    return _json(500, {"errors": "Internal Server Error"}, headers)


@dataclass(frozen=True)
class _GraphQLRequest:
    query: str
    variables: dict[str, Any] | None = None
    operation_name: str | None = None


async def _read_graphql_request(request: Request) -> _GraphQLRequest | None:
    """Read a GraphQL POST body the ways Shopify accepts it: JSON, or a bare query."""
    raw = await request.body()
    if request.headers.get("content-type", "").startswith("application/graphql"):
        return _GraphQLRequest(raw.decode(errors="replace"))
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
        return None
    variables = payload.get("variables")
    operation_name = payload.get("operationName")
    if variables is not None and not isinstance(variables, dict):
        return None
    return _GraphQLRequest(payload["query"], variables, operation_name if isinstance(operation_name, str) else None)


def create_app(
    settings: ShopifySandboxSettings,
    *,
    monotonic: Callable[[], float] | None = None,
    wall_clock: Callable[[], float] | None = None,
    webhook_transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """The sandbox store app. Clocks and the webhook transport are injectable for tests."""
    store = ShopifyStore(
        settings,
        monotonic=monotonic or time.monotonic,
        wall_clock=wall_clock or time.time,
        webhook_transport=webhook_transport,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await store.aclose()

    app = FastAPI(title=f"Shopify sandbox ({settings.shop_domain})", lifespan=lifespan)
    app.state.store = store
    expiring = TokenIssuer(settings.token_lifetime_s, monotonic or time.monotonic)
    app.state.expiring_tokens = expiring
    current_refresh = [settings.refresh_token]

    @app.post("/admin/oauth/access_token")
    async def refresh_access_token(request: Request) -> Response:
        """Shopify's refresh of an expiring offline token; the refresh token rotates."""
        form = await request.form()
        expected = (settings.client_id, settings.client_secret, current_refresh[0])
        given = (form.get("client_id"), form.get("client_secret"), form.get("refresh_token"))
        if form.get("grant_type") != "refresh_token" or None in expected or given != expected:
            store.counts.unauthorized += 1
            return _json(400, {"error": "invalid_request", "error_description": "invalid refresh token or client"})
        current_refresh[0] = secrets.token_urlsafe(24)
        return _json(
            200,
            {
                "access_token": expiring.issue(),
                "expires_in": settings.token_lifetime_s,
                "refresh_token": current_refresh[0],
                "refresh_token_expires_in": 7_776_000,
                "scope": "write_inventory",
            },
        )

    @app.exception_handler(OrderEventConflict)
    async def order_conflict(request: Request, error: OrderEventConflict) -> Response:
        return _json(409, {"detail": str(error)})

    @app.exception_handler(OrderEventInvalid)
    async def order_invalid(request: Request, error: OrderEventInvalid) -> Response:
        return _json(422, {"detail": str(error)})

    @app.post("/admin/api/{api_version}/graphql.json")
    async def admin_graphql(api_version: str, request: Request, store: StoreDep) -> Response:
        served = resolve_api_version(
            api_version,
            oldest_supported=store.settings.oldest_supported_api_version,
            newest=store.settings.newest_api_version,
        )
        if served is None:
            return _json(404, {"errors": "Not Found"})
        token = request.headers.get("X-Shopify-Access-Token", "")
        offline = hmac.compare_digest(token.encode(), store.settings.access_token.encode())
        if not offline and expiring.check(token) != "ok":
            store.counts.unauthorized += 1
            return _json(401, {"errors": INVALID_TOKEN_MESSAGE})
        request_id = str(uuid.uuid4())
        headers = {"X-Request-Id": request_id, "X-Shopify-API-Version": served}
        failure = store.pending_failures.popleft() if store.pending_failures else None
        if failure is not None:
            store.counts.injected_failures += 1
            if failure is InjectedFailure.HANG:
                await asyncio.sleep(HANG_S)
                return _json(504, {"errors": "Gateway Timeout"}, headers)
            if failure is not InjectedFailure.HTTP_500_AFTER_APPLY:
                return _failure_response(store, failure, headers)
        graphql_request = await _read_graphql_request(request)
        if graphql_request is None:
            return _json(400, {"errors": {"query": "Required parameter missing or invalid"}}, headers)
        answer = store.graphql.execute(
            api_version=served,
            query=graphql_request.query,
            variables=graphql_request.variables,
            operation_name=graphql_request.operation_name,
            request_id=request_id,
        )
        store.counts.record(answer.outcome)
        if failure is InjectedFailure.HTTP_500_AFTER_APPLY:
            return _failure_response(store, InjectedFailure.HTTP_500, headers)
        return _json(200, answer.body, headers)

    @app.get("/_sandbox/health")
    async def health(store: StoreDep) -> dict[str, Any]:
        return {"status": "ok", "shop_domain": store.settings.shop_domain}

    @app.get("/_sandbox/inventory")
    async def inventory(store: StoreDep) -> Response:
        return _json(200, {"levels": [_level_json(store, lvl) for lvl in store.inventory.levels()]})

    @app.post("/_sandbox/inventory-items")
    async def seed_inventory_items(body: SeedItems, store: StoreDep) -> Response:
        try:
            seeds = [_seed_level(item) for item in body.items]
        except ValueError as error:
            raise HTTPException(422, str(error)) from error
        store.inventory.seed(seeds)
        levels = [
            _level_json(store, lvl)
            for seed in seeds
            if (lvl := store.inventory.level(seed.item.inventory_item_id, seed.location_id)) is not None
        ]
        return _json(200, {"seeded": len(seeds), "levels": levels})

    @app.get("/_sandbox/changes")
    async def changes(store: StoreDep, since_seq: Annotated[int, Query(ge=0)] = 0) -> Response:
        listed = [change.as_json() for change in store.inventory.changes_since(since_seq)]
        return _json(200, {"changes": listed, "last_seq": store.inventory.last_seq})

    @app.get("/_sandbox/requests")
    async def requests(store: StoreDep) -> Response:
        counts = store.counts
        return _json(
            200,
            {
                "accepted": counts.accepted,
                "replayed": counts.replayed,
                "rejected": counts.rejected,
                "throttled": counts.throttled,
                "queries": counts.queries,
                "unauthorized": counts.unauthorized,
                "injected_failures": counts.injected_failures,
            },
        )

    @app.post("/_sandbox/reset")
    async def reset(store: StoreDep) -> Response:
        store.reset()
        return _json(200, {"reset": True})

    @app.post("/_sandbox/fail-next")
    async def fail_next(body: FailNext, store: StoreDep) -> Response:
        store.pending_failures.extend([body.mode] * body.count)
        return _json(200, {"pending_failures": [failure.value for failure in store.pending_failures]})

    @app.get("/_sandbox/config")
    async def get_config(store: StoreDep) -> Response:
        return _json(200, _config_json(store))

    @app.post("/_sandbox/config")
    async def set_config(body: BucketConfig, store: StoreDep) -> Response:
        store.bucket.reconfigure(
            size=body.bucket_size,
            restore_rate=body.restore_rate,
            currently_available=body.currently_available,
        )
        if body.display_delay_s is not None:
            store.inventory.display_delay_s = body.display_delay_s
        return _json(200, _config_json(store))

    @app.post("/_sandbox/orders")
    async def send_order(body: SendOrder, store: StoreDep) -> Response:
        url = store.webhook_url(body.webhook_url)
        catalog = store.inventory
        lines = [_order_line(catalog.catalog_item_for_sku(line.sku), line) for line in body.line_items]
        _, event = store.record_order_event(
            topic=body.topic,
            lines=lines,
            order_id=body.order_id,
            event_id=body.event_id,
            cancel_reason=body.cancel_reason,
            adjust_inventory=body.adjust_inventory,
        )
        delivery = await store.webhooks.deliver(event, url)
        store.deliveries.append(delivery)
        return _json(200, {"order": orjson.loads(event.body), **delivery.as_json()})

    @app.post("/_sandbox/redeliver")
    async def redeliver(body: Redeliver, store: StoreDep) -> Response:
        event = store.events.get(body.event_id)
        if event is None:
            raise HTTPException(404, f"no event {body.event_id}")
        delivery = await store.webhooks.deliver(event, store.webhook_url(body.webhook_url))
        store.deliveries.append(delivery)
        return _json(200, {"order": orjson.loads(event.body), **delivery.as_json()})

    @app.get("/_sandbox/webhooks")
    async def webhooks(store: StoreDep) -> Response:
        return _json(200, {"deliveries": [delivery.as_json() for delivery in store.deliveries]})

    return app


def _config_json(store: ShopifyStore) -> dict[str, Any]:
    status = store.bucket.status()
    return {
        "bucket_size": status.maximum_available,
        "restore_rate": status.restore_rate,
        "currently_available": status.currently_available,
        "display_delay_s": store.inventory.display_delay_s,
    }


def _seed_level(item: SeedItem) -> SeedLevel:
    catalog_item = CatalogItem(
        inventory_item_id=to_gid("InventoryItem", item.inventory_item_id),
        sku=item.sku,
        variant_id=item.variant_id or variant_id_for_sku(item.sku),
        product_id=item.product_id or product_id_for_sku(item.sku),
        title=item.title or item.sku,
        price=item.price,
    )
    return SeedLevel(
        item=catalog_item,
        location_id=to_gid("Location", item.location_id),
        available=item.available,
        committed=item.committed,
    )


def _order_line(item: CatalogItem | None, line: OrderLineIn) -> OrderLine:
    if item is None:
        return OrderLine(sku=line.sku, quantity=line.quantity)
    return OrderLine(
        sku=line.sku,
        quantity=line.quantity,
        variant_id=item.variant_id,
        product_id=item.product_id,
        title=item.title,
        price=item.price,
    )


# --- command line --------------------------------------------------------------------------


def _delays(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of seconds: {text!r}") from error


def parse_args(argv: Sequence[str] | None = None) -> tuple[ShopifySandboxSettings, argparse.Namespace]:
    defaults = ShopifySandboxSettings(access_token="-", webhook_secret="-")
    parser = argparse.ArgumentParser(
        prog="python -m stocksync_sandboxes shopify",
        description="A sandbox Shopify store (GraphQL Admin API inventory, order webhooks).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9101)
    parser.add_argument("--shop-domain", default=defaults.shop_domain)
    parser.add_argument("--access-token", required=True)
    parser.add_argument("--webhook-secret", required=True)
    parser.add_argument("--webhook-url", default=None)
    parser.add_argument("--restore-rate", type=float, default=defaults.restore_rate)
    parser.add_argument("--bucket-size", type=float, default=defaults.bucket_size)
    parser.add_argument("--webhook-api-version", default=defaults.webhook_api_version)
    parser.add_argument("--oldest-api-version", default=defaults.oldest_supported_api_version)
    parser.add_argument("--newest-api-version", default=defaults.newest_api_version)
    parser.add_argument(
        "--webhook-retry-delays",
        type=_delays,
        default=defaults.webhook_retry_delays,
        help="seconds before each retry, comma-separated (Shopify: 8 retries over 4 hours)",
    )
    parser.add_argument("--webhook-timeout", type=float, default=defaults.webhook_timeout)
    parser.add_argument("--client-id", default=None, help="expiring offline tokens: the app's client id")
    parser.add_argument("--client-secret", default=None, help="expiring offline tokens: the app's client secret")
    parser.add_argument("--refresh-token", default=None, help="expiring offline tokens: the first refresh token")
    parser.add_argument("--token-lifetime", type=float, default=defaults.token_lifetime_s)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    settings = replace(
        defaults,
        client_id=args.client_id,
        client_secret=args.client_secret,
        refresh_token=args.refresh_token,
        token_lifetime_s=args.token_lifetime,
        access_token=args.access_token,
        webhook_secret=args.webhook_secret,
        shop_domain=args.shop_domain,
        webhook_url=args.webhook_url,
        restore_rate=args.restore_rate,
        bucket_size=args.bucket_size,
        webhook_api_version=args.webhook_api_version,
        oldest_supported_api_version=args.oldest_api_version,
        newest_api_version=args.newest_api_version,
        webhook_retry_delays=args.webhook_retry_delays,
        webhook_timeout=args.webhook_timeout,
    )
    return settings, args


def main(argv: Sequence[str] | None = None) -> None:
    settings, args = parse_args(argv)
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level=args.log_level)


if __name__ == "__main__":
    main()
