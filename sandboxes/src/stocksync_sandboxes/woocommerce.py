"""A sandbox WooCommerce store: the REST API v3 calls the publisher makes, checked as
WooCommerce checks them.

- Auth: consumer key and secret as HTTP basic (401 `woocommerce_rest_cannot_view` else).
- `POST /wp-json/wc/v3/products/batch`: at most 100 objects over create/update/delete
  (413 `rest_request_entity_too_large` else); each update object needs an `id`; each gets
  its own answer: the product, or `{id, error: {code, message, data: {status}}}`
  (`woocommerce_rest_product_invalid_id` for an unknown id). Only `update` is served.
- Stock management per product, as WC_REST_Products_Controller applies it: an update's
  `manage_stock` is applied first; `stock_quantity` is then applied only to a product
  that manages stock, and dropped silently otherwise (the answer shows `manage_stock:
  false, stock_quantity: null`). Products manage stock unless turned off with
  `POST /_sandbox/stock-management {product_id, manage_stock: false}`.
- `GET /wp-json/wc/v3/products?include=1,2&per_page=100`: the products, for read-back.
- No rate limit by default (WooCommerce documents none); `--requests-per-second` puts one
  in front, as many hosts do, answering 429 with Retry-After.
- Orders: `POST /_sandbox/orders {webhook_url, lines, ...}` sends an `order.created` or
  `order.updated` webhook signed with `--webhook-secret` (woocommerce_orders.py): give it
  the Stocksync connection's `webhook_secret`. Without it a random secret signs, and
  Stocksync refuses the orders (401).

Run it: python -m stocksync_sandboxes woocommerce --port 9201 --consumer-key ck --consumer-secret cs \
    --webhook-secret S
"""

from __future__ import annotations

import argparse
import base64
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import uvicorn
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict

from stocksync_sandboxes import woocommerce_orders
from stocksync_sandboxes.marketplace_sandbox import Listing, Marketplace

MAX_BATCH_OBJECTS = 100


@dataclass(frozen=True)
class WooCommerceSandboxSettings:
    consumer_key: str
    consumer_secret: str
    requests_per_second: float | None = None
    burst: int = 10
    # Signs the order webhooks; None: a random one (the receiver will refuse them).
    webhook_secret: str | None = None


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message, "data": {"status": status}}, status)


class StockManagement(BaseModel):
    model_config = ConfigDict(extra="forbid")
    product_id: int
    manage_stock: bool


def _product(listing: Listing, unmanaged: set[str]) -> dict[str, Any]:
    managed = listing.listing_id not in unmanaged
    return {
        "id": int(listing.listing_id),
        "sku": listing.sku,
        "manage_stock": managed,
        "stock_quantity": listing.quantity if managed else None,
        "stock_status": "instock" if not managed or listing.quantity > 0 else "outofstock",
    }


def create_app(settings: WooCommerceSandboxSettings) -> FastAPI:
    market = Marketplace("woocommerce", requests_per_second=settings.requests_per_second, burst=settings.burst)
    app = FastAPI(title="WooCommerce sandbox")
    app.state.market = market
    app.include_router(market.control_router())
    # Product ids whose stock management is off.
    unmanaged: set[str] = set()

    @app.post("/_sandbox/stock-management", tags=["sandbox control"])
    async def stock_management(body: StockManagement) -> dict[str, Any]:
        if str(body.product_id) not in market.listings:
            raise HTTPException(404, f"no product {body.product_id}")
        (unmanaged.discard if body.manage_stock else unmanaged.add)(str(body.product_id))
        return {"product_id": body.product_id, "manage_stock": body.manage_stock}

    app.include_router(woocommerce_orders.orders_router(settings.webhook_secret or secrets.token_hex(16)))

    def authorised(request: Request) -> bool:
        header = request.headers.get("Authorization", "")
        expected = "Basic " + base64.b64encode(f"{settings.consumer_key}:{settings.consumer_secret}".encode()).decode()
        if hmac.compare_digest(header.encode(), expected.encode()):
            return True
        market.stats["unauthorized"] += 1
        return False

    @app.post("/wp-json/wc/v3/products/batch")
    async def batch(request: Request) -> Response:
        if not authorised(request):
            return _error(
                401, "woocommerce_rest_cannot_edit", "Sorry, you are not allowed to batch manipulate this resource."
            )
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "rest_invalid_json", "Invalid JSON body passed.")
        if not isinstance(body, dict):
            return _error(400, "rest_invalid_param", "Invalid parameter(s): body")
        updates = body.get("update") or []
        total = sum(len(body.get(kind) or []) for kind in ("create", "update", "delete"))
        if total > MAX_BATCH_OBJECTS:
            market.stats["invalid"] += 1
            market.record("products/batch", 413, [], [])
            return _error(
                413,
                "rest_request_entity_too_large",
                f"Unable to accept more than {MAX_BATCH_OBJECTS} items for this request.",
            )
        items = [(_sku_of(market, u), u.get("stock_quantity")) for u in updates if isinstance(u, dict)]
        refused = market.admit([sku for sku, _ in items], "products/batch", items)
        if refused is not None:
            return refused
        answers, applied = [], []
        for update in updates:
            product_id = update.get("id") if isinstance(update, dict) else None
            listing = market.listings.get(str(product_id))
            quantity = update.get("stock_quantity") if isinstance(update, dict) else None
            if listing is None:
                answers.append(
                    {
                        "id": product_id or 0,
                        "error": {
                            "code": "woocommerce_rest_product_invalid_id",
                            "message": "Invalid ID.",
                            "data": {"status": 400},
                        },
                    }
                )
            elif not isinstance(quantity, int) or isinstance(quantity, bool):
                answers.append(
                    {
                        "id": product_id,
                        "error": {
                            "code": "rest_invalid_param",
                            "message": "Invalid parameter(s): stock_quantity",
                            "data": {"status": 400},
                        },
                    }
                )
            elif market.transient_failure(listing.sku):
                answers.append(
                    {
                        "id": product_id,
                        "error": {
                            "code": "woocommerce_rest_cannot_update",
                            "message": "Database error: could not save the product.",
                            "data": {"status": 500},
                        },
                    }
                )
            else:
                if isinstance(update.get("manage_stock"), bool):
                    (unmanaged.discard if update["manage_stock"] else unmanaged.add)(listing.listing_id)
                if listing.listing_id not in unmanaged:
                    market.apply(listing, quantity)
                    applied.append(listing.sku)
                answers.append(_product(listing, unmanaged))
        market.record("products/batch", 200, items, applied)
        return JSONResponse({"update": answers})

    @app.get("/wp-json/wc/v3/products")
    async def products(request: Request, include: str = "", per_page: int = 10) -> Response:
        if not authorised(request):
            return _error(401, "woocommerce_rest_cannot_view", "Sorry, you cannot list resources.")
        if per_page > MAX_BATCH_OBJECTS:
            return _error(400, "rest_invalid_param", "Invalid parameter(s): per_page")
        wanted = [part for part in include.split(",") if part.strip()] if include else list(market.listings)
        found = [market.listings[pid] for pid in wanted if pid in market.listings][:per_page]
        return JSONResponse([_product(listing, unmanaged) for listing in found])

    return app


def _sku_of(market: Marketplace, update: dict[str, Any]) -> str:
    listing = market.listings.get(str(update.get("id")))
    return listing.sku if listing is not None else f"id:{update.get('id')}"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stocksync_sandboxes woocommerce")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9201)
    parser.add_argument("--consumer-key", required=True)
    parser.add_argument("--consumer-secret", required=True)
    parser.add_argument("--requests-per-second", type=float, default=None)
    parser.add_argument("--burst", type=int, default=10)
    parser.add_argument("--webhook-secret", default=None, help="signs order webhooks: the connection's webhook_secret")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    settings = WooCommerceSandboxSettings(
        args.consumer_key, args.consumer_secret, args.requests_per_second, args.burst, args.webhook_secret
    )
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level=args.log_level)


if __name__ == "__main__":
    main()
