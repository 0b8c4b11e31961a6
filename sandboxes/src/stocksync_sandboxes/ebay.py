"""A sandbox eBay seller: the Inventory API calls the publisher makes, checked as eBay
checks them.

- OAuth: `POST /identity/v1/oauth2/token` with `Authorization: Basic
  base64(client_id:client_secret)`: the refresh token grant (`grant_type=refresh_token,
  refresh_token, scope`, the scope including sell.inventory) issues a User access token
  living `--token-lifetime` seconds (eBay: 7,200); the client credentials grant issues the
  application token (`--application-token`) that the Notification API's getPublicKey
  takes. Wrong client: 401 `invalid_client`; wrong refresh token or scope: 400
  `invalid_grant` / `invalid_scope`.
- `Authorization: Bearer <user token>` with a token it issued that has not expired (401
  errorId 1001 "Invalid access token" else).
- `POST /sell/inventory/v1/bulk_update_price_quantity {requests: [{sku,
  shipToLocationAvailability: {quantity}}]}`: 1 to 25 requests (400 else); a status per
  SKU: 200, 404 for a SKU the seller does not have, 500 for a per-SKU system error. The
  HTTP answer is 200 when every SKU passed, 207 otherwise.
- A listing can be revised at most 250 times a day (per SKU here): beyond, that SKU is
  refused with its own error (unverified: eBay's exact errorId).
- `POST /sell/inventory/v1/bulk_get_inventory_item {requests: [{sku}]}` (25 at most):
  the read-back of the drift check.
- (unverified) eBay meters calls per day; a per-second limit of 20, burst 20, stands in.
- Orders: `POST /_sandbox/orders {webhook_url, lines, ...}` sends an order notification
  signed with the sandbox's EC key (`--signing-key` PEM, else one generated at start), and
  `GET /commerce/notification/v1/public_key/{kid}` serves its public half (ebay_orders.py)
  to a caller with the application token (`--application-token`).

Run it: python -m stocksync_sandboxes ebay --port 9401 --client-id C --client-secret CS --refresh-token R
"""

from __future__ import annotations

import argparse
import base64
import hmac
import secrets
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from stocksync_sandboxes import ebay_orders
from stocksync_sandboxes.marketplace_sandbox import Marketplace, TokenIssuer

MAX_REQUESTS = 25
DAILY_REVISIONS = 250
REQUESTS_PER_SECOND = 20.0
BURST = 20
# (unverified) errorIds, kept here so they are easy to change.
SKU_NOT_FOUND_ERROR = 25702
SYSTEM_ERROR = 25001
REVISION_LIMIT_ERROR = 25015
INVALID_REQUEST_ERROR = 25709
TOKEN_LIFETIME_S = 7200.0
INVENTORY_SCOPE = "https://api.ebay.com/oauth/api_scope/sell.inventory"


@dataclass(frozen=True)
class EbaySandboxSettings:
    client_id: str
    client_secret: str
    refresh_token: str
    requests_per_second: float = REQUESTS_PER_SECOND
    burst: int = BURST
    daily_revisions: int = DAILY_REVISIONS
    # Signs the order notifications; its public half is served to the receiver.
    signing_key: ebay_orders.SigningKey = field(default_factory=ebay_orders.SigningKey)
    token_lifetime_s: float = TOKEN_LIFETIME_S
    # What the client credentials grant issues (getPublicKey takes an application token).
    application_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))


def _error(error_id: int, message: str, category: str = "REQUEST") -> dict[str, Any]:
    return {"errorId": error_id, "domain": "API_INVENTORY", "category": category, "message": message}


def create_app(settings: EbaySandboxSettings) -> FastAPI:
    market = Marketplace("ebay", requests_per_second=settings.requests_per_second, burst=settings.burst)
    revisions: Counter[str] = Counter()
    tokens = market.tokens = TokenIssuer(settings.token_lifetime_s)
    basic = "Basic " + base64.b64encode(f"{settings.client_id}:{settings.client_secret}".encode()).decode()
    app = FastAPI(title="eBay Inventory API sandbox")
    app.state.market = market
    app.include_router(market.control_router())
    app.include_router(ebay_orders.orders_router(settings.signing_key, settings.application_token))

    @app.post("/identity/v1/oauth2/token")
    async def oauth_token(request: Request) -> Response:
        if not hmac.compare_digest(request.headers.get("Authorization", "").encode(), basic.encode()):
            market.stats["unauthorized"] += 1
            return JSONResponse({"error": "invalid_client", "error_description": "client authentication failed"}, 401)
        form = await request.form()
        if form.get("grant_type") == "client_credentials":
            return JSONResponse(
                {
                    "access_token": settings.application_token,
                    "expires_in": settings.token_lifetime_s,
                    "token_type": "Application Access Token",
                }
            )
        if form.get("grant_type") != "refresh_token":
            return JSONResponse({"error": "unsupported_grant_type", "error_description": "grant_type"}, 400)
        if not hmac.compare_digest(str(form.get("refresh_token", "")).encode(), settings.refresh_token.encode()):
            market.stats["unauthorized"] += 1
            return JSONResponse(
                {
                    "error": "invalid_grant",
                    "error_description": "the provided authorization refresh token is invalid or was issued to "
                    "another client",
                },
                400,
            )
        if INVENTORY_SCOPE not in str(form.get("scope", "")).split():
            return JSONResponse(
                {"error": "invalid_scope", "error_description": "The requested scope is invalid, unknown, malformed"},
                400,
            )
        return JSONResponse(
            {"access_token": tokens.issue(), "expires_in": settings.token_lifetime_s, "token_type": "User Access Token"}
        )

    def authorised(request: Request) -> bool:
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer ") and tokens.check(header.removeprefix("Bearer ")) == "ok":
            return True
        market.stats["unauthorized"] += 1
        return False

    def unauthorised() -> JSONResponse:
        return JSONResponse({"errors": [_error(1001, "Invalid access token")]}, 401)

    async def requests_of(request: Request) -> list[Any] | JSONResponse:
        try:
            body = await request.json()
        except ValueError:
            body = None
        entries = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(entries, list) or not 1 <= len(entries) <= MAX_REQUESTS:
            market.stats["invalid"] += 1
            return JSONResponse(
                {
                    "errors": [
                        _error(INVALID_REQUEST_ERROR, f"The number of requests must be between 1 and {MAX_REQUESTS}")
                    ]
                },
                400,
            )
        return entries

    @app.post("/sell/inventory/v1/bulk_update_price_quantity")
    async def bulk_update(request: Request) -> Response:
        if not authorised(request):
            return unauthorised()
        entries = await requests_of(request)
        if isinstance(entries, JSONResponse):
            market.record("bulk_update_price_quantity", 400, [], [])
            return entries
        items = [
            (str(e.get("sku")), (e.get("shipToLocationAvailability") or {}).get("quantity"))
            for e in entries
            if isinstance(e, dict)
        ]
        refused = market.admit([sku for sku, _ in items], "bulk_update_price_quantity", items)
        if refused is not None:
            return refused
        responses, applied = [], []
        for sku, quantity in items:
            listing = market.listings.get(sku)
            if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity < 0:
                responses.append(
                    {
                        "statusCode": 400,
                        "sku": sku,
                        "errors": [
                            _error(INVALID_REQUEST_ERROR, "shipToLocationAvailability.quantity must be an integer >= 0")
                        ],
                    }
                )
            elif market.transient_failure(sku):
                responses.append(
                    {
                        "statusCode": 500,
                        "sku": sku,
                        "errors": [_error(SYSTEM_ERROR, "A system error has occurred.", "APPLICATION")],
                    }
                )
            elif listing is None:
                responses.append(
                    {
                        "statusCode": 404,
                        "sku": sku,
                        "errors": [_error(SKU_NOT_FOUND_ERROR, f"SKU {sku} is not available in the system")],
                    }
                )
            elif revisions[sku] >= settings.daily_revisions:
                responses.append(
                    {
                        "statusCode": 400,
                        "sku": sku,
                        "errors": [
                            _error(
                                REVISION_LIMIT_ERROR,
                                f"The listing has been revised {settings.daily_revisions} times today",
                            )
                        ],
                    }
                )
            else:
                revisions[sku] += 1
                market.apply(listing, quantity)
                applied.append(sku)
                responses.append({"statusCode": 200, "sku": sku, "offerId": f"offer-{sku}", "warnings": []})
        status = 200 if len(applied) == len(items) else 207
        market.record("bulk_update_price_quantity", status, items, applied)
        return JSONResponse({"responses": responses}, status)

    @app.post("/sell/inventory/v1/bulk_get_inventory_item")
    async def bulk_get(request: Request) -> Response:
        if not authorised(request):
            return unauthorised()
        entries = await requests_of(request)
        if isinstance(entries, JSONResponse):
            return entries
        responses = []
        for entry in entries:
            sku = str(entry.get("sku")) if isinstance(entry, dict) else ""
            listing = market.listings.get(sku)
            if listing is None:
                responses.append(
                    {
                        "statusCode": 404,
                        "sku": sku,
                        "errors": [_error(SKU_NOT_FOUND_ERROR, f"SKU {sku} is not available in the system")],
                    }
                )
            else:
                responses.append(
                    {
                        "statusCode": 200,
                        "sku": sku,
                        "inventoryItem": {
                            "sku": sku,
                            "availability": {"shipToLocationAvailability": {"quantity": listing.quantity}},
                        },
                    }
                )
        return JSONResponse({"responses": responses})

    return app


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stocksync_sandboxes ebay")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9401)
    parser.add_argument("--client-id", required=True, help="App ID of the keyset")
    parser.add_argument("--client-secret", required=True, help="Cert ID of the keyset")
    parser.add_argument("--refresh-token", required=True, help="the seller's refresh token")
    parser.add_argument("--token-lifetime", type=float, default=TOKEN_LIFETIME_S, help="seconds a user token lives")
    parser.add_argument("--application-token", default=None, help="what the client credentials grant issues")
    parser.add_argument("--requests-per-second", type=float, default=REQUESTS_PER_SECOND)
    parser.add_argument("--burst", type=int, default=BURST)
    parser.add_argument("--daily-revisions", type=int, default=DAILY_REVISIONS)
    parser.add_argument(
        "--signing-key", type=Path, default=None, help="PEM EC private key that signs orders (default: a new one)"
    )
    parser.add_argument("--signing-key-id", default=None, help="the key's kid (default: a new UUID)")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    key = (
        ebay_orders.SigningKey.from_pem(args.signing_key.read_bytes(), args.signing_key_id)
        if args.signing_key
        else ebay_orders.SigningKey(kid=args.signing_key_id)
    )
    settings = EbaySandboxSettings(
        args.client_id,
        args.client_secret,
        args.refresh_token,
        args.requests_per_second,
        args.burst,
        args.daily_revisions,
        key,
        args.token_lifetime,
        args.application_token or secrets.token_urlsafe(24),
    )
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level=args.log_level)


if __name__ == "__main__":
    main()
