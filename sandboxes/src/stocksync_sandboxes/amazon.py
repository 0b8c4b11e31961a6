"""A sandbox Amazon seller account: Selling Partner API `patchListingsItem`, checked as
Amazon checks it.

- Login with Amazon: `POST /auth/o2/token` (form `grant_type=refresh_token, refresh_token,
  client_id, client_secret`) issues an access token living `--token-lifetime` seconds
  (Amazon: 3,600) as `{access_token, refresh_token, token_type: "bearer", expires_in}`;
  a wrong client or refresh token is 400/401 `invalid_grant`/`invalid_client` as LWA
  answers.
- `x-amz-access-token` must be a token it issued and that has not expired (403
  `Unauthorized`, "The access token you provided has expired." else); the seller id in
  the path must be the account's; `marketplaceIds` is required.
- `PATCH /listings/2021-08-01/items/{sellerId}/{sku}`: one SKU per call; the body needs a
  `productType` and `patches` of `{op, path, value}`; a fulfillment_availability patch
  needs `fulfillment_channel_code` and an integer `quantity` >= 0 (400 `InvalidInput`).
  A SKU the account does not list answers status INVALID with an issue (unverified: the
  exact code Amazon gives).
- Rate limit 5 requests/s, burst 5 (Amazon documents a burst of 5 to 10: the sandbox
  takes the strict end): 429 `QuotaExceeded`. Amazon's own 429 carries no Retry-After; an injected one can.
- Orders: `POST /_sandbox/orders {webhook_url, lines, ...}` sends an `ORDER_CHANGE`
  notification of `--seller-id` as an EventBridge API destination forwards it, with
  `--inbound-api-key` in `x-api-key` (amazon_orders.py): give it the Stocksync
  connection's `inbound.api_key`. Without it a random key is sent, and Stocksync refuses
  the orders (401).

Run it: python -m stocksync_sandboxes amazon --port 9301 --seller-id S --client-id C --client-secret CS \
    --refresh-token R --inbound-api-key K
"""

from __future__ import annotations

import argparse
import hmac
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from stocksync_sandboxes import amazon_orders
from stocksync_sandboxes.marketplace_sandbox import Marketplace, TokenIssuer

REQUESTS_PER_SECOND = 5.0
BURST = 5
TOKEN_LIFETIME_S = 3600.0
AVAILABILITY_PATH = "/attributes/fulfillment_availability"
PATCH_OPS = frozenset({"add", "replace", "merge", "delete"})
# (unverified) the issue code of a SKU with no listing in the account.
UNKNOWN_SKU_ISSUE = "4000001"


@dataclass(frozen=True)
class AmazonSandboxSettings:
    seller_id: str
    client_id: str
    client_secret: str
    refresh_token: str
    marketplace_ids: tuple[str, ...] = ("A1PA6795UKMFR9",)
    requests_per_second: float = REQUESTS_PER_SECOND
    burst: int = BURST
    # The API key the forwarded order notifications carry; None: a random one (refused).
    inbound_api_key: str | None = None
    token_lifetime_s: float = TOKEN_LIFETIME_S


def _errors(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"errors": [{"code": code, "message": message, "details": ""}]}, status)


def _quantity(body: Any) -> tuple[int | None, str | None]:
    """The quantity a valid body sets, or the message of what is wrong with it."""
    if not isinstance(body, dict) or not isinstance(body.get("productType"), str) or not body["productType"]:
        return None, "productType is required"
    patches = body.get("patches")
    if not isinstance(patches, list) or not patches:
        return None, "patches must be a non-empty array"
    quantity = None
    for patch in patches:
        if not isinstance(patch, dict) or patch.get("op") not in PATCH_OPS or not isinstance(patch.get("path"), str):
            return None, "each patch needs op (add, replace, merge, delete) and path"
        if patch["path"] != AVAILABILITY_PATH:
            continue
        values = patch.get("value")
        if not isinstance(values, list) or not values:
            return None, f"{AVAILABILITY_PATH} needs a value array"
        for value in values:
            amount = value.get("quantity") if isinstance(value, dict) else None
            if not isinstance(value, dict) or not value.get("fulfillment_channel_code"):
                return None, "fulfillment_channel_code is required"
            if not isinstance(amount, int) or isinstance(amount, bool) or amount < 0:
                return None, "quantity must be an integer >= 0"
            quantity = amount
    return quantity, None


def create_app(settings: AmazonSandboxSettings) -> FastAPI:
    market = Marketplace("amazon", requests_per_second=settings.requests_per_second, burst=settings.burst)
    tokens = market.tokens = TokenIssuer(settings.token_lifetime_s)
    app = FastAPI(title="Amazon SP-API sandbox")
    app.state.market = market
    app.include_router(market.control_router())
    app.include_router(
        amazon_orders.orders_router(settings.seller_id, settings.inbound_api_key or secrets.token_hex(16))
    )

    @app.post("/auth/o2/token")
    async def lwa_token(request: Request) -> Response:
        form = await request.form()
        if form.get("grant_type") != "refresh_token":
            return JSONResponse({"error": "unsupported_grant_type", "error_description": "grant_type"}, 400)
        client_ok = hmac.compare_digest(str(form.get("client_id", "")).encode(), settings.client_id.encode())
        secret_ok = hmac.compare_digest(str(form.get("client_secret", "")).encode(), settings.client_secret.encode())
        if not (client_ok and secret_ok):
            market.stats["unauthorized"] += 1
            return JSONResponse({"error": "invalid_client", "error_description": "Client authentication failed"}, 401)
        if not hmac.compare_digest(str(form.get("refresh_token", "")).encode(), settings.refresh_token.encode()):
            market.stats["unauthorized"] += 1
            return JSONResponse(
                {"error": "invalid_grant", "error_description": "The request has an invalid grant parameter"}, 400
            )
        return JSONResponse(
            {
                "access_token": tokens.issue(),
                "refresh_token": settings.refresh_token,
                "token_type": "bearer",
                "expires_in": settings.token_lifetime_s,
            }
        )

    # `{sku:path}`: a SKU may hold a "/" (sent as %2F), which Starlette decodes before routing.
    @app.patch("/listings/2021-08-01/items/{seller_id}/{sku:path}")
    async def patch_listings_item(seller_id: str, sku: str, request: Request) -> Response:
        token = tokens.check(request.headers.get("x-amz-access-token", ""))
        if token != "ok" or seller_id != settings.seller_id:
            market.stats["unauthorized"] += 1
            if token == "expired":
                return JSONResponse(
                    {
                        "errors": [
                            {
                                "code": "Unauthorized",
                                "message": "Access to requested resource is denied.",
                                "details": "The access token you provided has expired.",
                            }
                        ]
                    },
                    403,
                )
            return _errors(403, "Unauthorized", "Access to requested resource is denied.")
        marketplaces = [m for m in request.query_params.get("marketplaceIds", "").split(",") if m]
        if not marketplaces or any(m not in settings.marketplace_ids for m in marketplaces):
            market.stats["invalid"] += 1
            return _errors(400, "InvalidInput", "marketplaceIds must name the seller's marketplaces")
        try:
            body = await request.json()
        except ValueError:
            return _errors(400, "InvalidInput", "The request body is not valid JSON")
        quantity, problem = _quantity(body)
        refused = market.admit([sku], "patchListingsItem", [(sku, quantity)])
        if refused is not None:
            return refused
        if problem is not None:
            market.stats["invalid"] += 1
            market.record("patchListingsItem", 400, [(sku, quantity)], [])
            return _errors(400, "InvalidInput", problem)
        if market.transient_failure(sku):
            market.record("patchListingsItem", 503, [(sku, quantity)], [])
            return _errors(503, "ServiceUnavailable", "Temporary failure, please retry.")
        listing = market.listings.get(sku)
        submission = uuid.uuid4().hex
        if listing is None:
            market.record("patchListingsItem", 200, [(sku, quantity)], [])
            return JSONResponse(
                {
                    "sku": sku,
                    "status": "INVALID",
                    "submissionId": submission,
                    "issues": [
                        {
                            "code": UNKNOWN_SKU_ISSUE,
                            "message": f"SKU {sku} does not match any listing of this seller",
                            "severity": "ERROR",
                            "attributeNames": [],
                            # Required by the model's Issue (listingsItems_2021-08-01).
                            "categories": [],
                        }
                    ],
                }
            )
        if quantity is not None:
            market.apply(listing, quantity)
        market.record("patchListingsItem", 200, [(sku, quantity)], [sku])
        return JSONResponse({"sku": sku, "status": "ACCEPTED", "submissionId": submission, "issues": []})

    return app


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stocksync_sandboxes amazon")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9301)
    parser.add_argument("--seller-id", required=True)
    parser.add_argument("--client-id", required=True, help="LWA client id")
    parser.add_argument("--client-secret", required=True, help="LWA client secret")
    parser.add_argument("--refresh-token", required=True, help="LWA refresh token of the seller")
    parser.add_argument("--token-lifetime", type=float, default=TOKEN_LIFETIME_S, help="seconds an access token lives")
    parser.add_argument("--marketplace-ids", default="A1PA6795UKMFR9")
    parser.add_argument("--requests-per-second", type=float, default=REQUESTS_PER_SECOND)
    parser.add_argument("--burst", type=int, default=BURST)
    parser.add_argument(
        "--inbound-api-key",
        default=None,
        help="x-api-key of forwarded order notifications: the connection's inbound.api_key",
    )
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    settings = AmazonSandboxSettings(
        args.seller_id,
        args.client_id,
        args.client_secret,
        args.refresh_token,
        tuple(args.marketplace_ids.split(",")),
        args.requests_per_second,
        args.burst,
        args.inbound_api_key,
        args.token_lifetime,
    )
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level=args.log_level)


if __name__ == "__main__":
    main()
