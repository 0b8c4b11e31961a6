"""A sandbox Walmart Marketplace seller: `PUT /v3/inventory?sku=...`, checked as Walmart
checks it.

- `POST /v3/token` (headers `Authorization: Basic base64(clientId:clientSecret)`,
  `WM_SVC.NAME`, `WM_QOS.CORRELATION_ID`; form `grant_type=client_credentials`) issues an
  access token living `--token-lifetime` seconds (Walmart: 900) as `{access_token,
  token_type: "Bearer", expires_in}`.
- `PUT /v3/inventory` requires `Authorization: Basic ...` of the client id and secret and
  `WM_SEC.ACCESS_TOKEN` with a token it issued that has not expired (401 else), and
  `WM_QOS.CORRELATION_ID` and `WM_SVC.NAME` (400 else).
- The `sku` query is percent-decoded as RFC 3986 reads it: `%20` is a space, `%2B` a
  plus, and a bare `+` stays a plus (so form encoding's `+` for a space does not match).
- Body `{sku, quantity: {unit: "EACH", amount}}`; the body's SKU must be the query's.
  An unknown SKU is 404 `CONTENT_NOT_FOUND` (unverified: Walmart's exact code).
- Rate limit (unverified: Walmart publishes per-endpoint limits in its portal): 5/s, burst
  10 here; 429 with Retry-After.
- Orders: `POST /_sandbox/orders {webhook_url, lines, ...}` sends a `PO_CREATED` or
  `PO_LINE_AUTOCANCELLED` notification signed with `--webhook-secret` (walmart_orders.py): give
  it the Stocksync connection's `webhook_secret`. Without it a random secret signs, and
  Stocksync refuses the orders (401).

Run it: python -m stocksync_sandboxes walmart --port 9601 --client-id C --client-secret CS --webhook-secret S
"""

from __future__ import annotations

import argparse
import base64
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import parse_qsl

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from stocksync_sandboxes import walmart_orders
from stocksync_sandboxes.marketplace_sandbox import Marketplace, TokenIssuer

REQUESTS_PER_SECOND = 5.0
BURST = 10
TOKEN_LIFETIME_S = 900.0


@dataclass(frozen=True)
class WalmartSandboxSettings:
    client_id: str
    client_secret: str
    requests_per_second: float = REQUESTS_PER_SECOND
    burst: int = BURST
    # Signs the order notifications; None: a random one (the receiver will refuse them).
    webhook_secret: str | None = None
    token_lifetime_s: float = TOKEN_LIFETIME_S


def _errors(status: int, code: str, description: str, field: str = "") -> JSONResponse:
    return JSONResponse(
        {
            "errors": [
                {
                    "code": code,
                    "field": field,
                    "description": description,
                    "severity": "ERROR",
                    "category": "APPLICATION",
                }
            ]
        },
        status,
    )


def create_app(settings: WalmartSandboxSettings) -> FastAPI:
    market = Marketplace("walmart", requests_per_second=settings.requests_per_second, burst=settings.burst)
    tokens = market.tokens = TokenIssuer(settings.token_lifetime_s)
    basic = "Basic " + base64.b64encode(f"{settings.client_id}:{settings.client_secret}".encode()).decode()
    app = FastAPI(title="Walmart Marketplace sandbox")
    app.state.market = market
    app.include_router(market.control_router())
    app.include_router(walmart_orders.orders_router(settings.webhook_secret or secrets.token_hex(16)))

    def required_headers_missing(request: Request) -> bool:
        return not request.headers.get("WM_QOS.CORRELATION_ID") or not request.headers.get("WM_SVC.NAME")

    @app.post("/v3/token")
    async def token(request: Request) -> Response:
        if not hmac.compare_digest(request.headers.get("Authorization", "").encode(), basic.encode()):
            market.stats["unauthorized"] += 1
            return _errors(401, "UNAUTHORIZED.GMP_GATEWAY_API", "Invalid client id or secret")
        if required_headers_missing(request):
            market.stats["invalid"] += 1
            return _errors(400, "INVALID_REQUEST_HEADER.GMP_GATEWAY_API", "WM_QOS.CORRELATION_ID and WM_SVC.NAME")
        form = await request.form()
        if form.get("grant_type") != "client_credentials":
            return _errors(400, "INVALID_REQUEST_CONTENT.GMP_GATEWAY_API", "grant_type must be client_credentials")
        return JSONResponse(
            {"access_token": tokens.issue(), "token_type": "Bearer", "expires_in": settings.token_lifetime_s}
        )

    @app.put("/v3/inventory")
    async def update_inventory(request: Request) -> Response:
        # RFC 3986 decoding: `+` is a plus, not a space (parse_qsl would make it one).
        raw = [value for name, value in parse_qsl(request.url.query.replace("+", "%2B")) if name == "sku"]
        sku = raw[0] if raw else ""
        token_state = tokens.check(request.headers.get("WM_SEC.ACCESS_TOKEN", ""))
        basic_ok = hmac.compare_digest(request.headers.get("Authorization", "").encode(), basic.encode())
        if token_state != "ok" or not basic_ok:
            market.stats["unauthorized"] += 1
            return _errors(
                401,
                "UNAUTHORIZED.GMP_GATEWAY_API",
                "Token expired" if token_state == "expired" else "Unauthorized: Basic and WM_SEC.ACCESS_TOKEN required",
            )
        if required_headers_missing(request):
            market.stats["invalid"] += 1
            return _errors(
                400, "INVALID_REQUEST_HEADER.GMP_INVENTORY_API", "WM_QOS.CORRELATION_ID and WM_SVC.NAME are required"
            )
        try:
            body = await request.json()
        except ValueError:
            body = None
        quantity = (body.get("quantity") or {}) if isinstance(body, dict) else {}
        amount = quantity.get("amount") if isinstance(quantity, dict) else None
        refused = market.admit([sku], "inventory", [(sku, amount if isinstance(amount, int) else None)])
        if refused is not None:
            return refused
        if (
            not sku
            or not isinstance(body, dict)
            or body.get("sku") != sku
            or quantity.get("unit") != "EACH"
            or not isinstance(amount, int)
            or isinstance(amount, bool)
            or amount < 0
        ):
            market.stats["invalid"] += 1
            market.record("inventory", 400, [(sku, None)], [])
            return _errors(
                400,
                "INVALID_REQUEST_CONTENT.GMP_INVENTORY_API",
                "Body must be {sku (same as the query), quantity: {unit: EACH, amount >= 0}}",
                "quantity",
            )
        if market.transient_failure(sku):
            market.record("inventory", 503, [(sku, amount)], [])
            return _errors(503, "SERVICE_UNAVAILABLE.GMP_INVENTORY_API", "Service unavailable, retry later")
        listing = market.listings.get(sku)
        if listing is None:
            market.record("inventory", 404, [(sku, amount)], [])
            return _errors(
                404, "CONTENT_NOT_FOUND.GMP_INVENTORY_API", f"Requested content could not be found. sku: {sku}", "sku"
            )
        market.apply(listing, amount)
        market.record("inventory", 200, [(sku, amount)], [sku])
        return JSONResponse({"sku": sku, "quantity": {"unit": "EACH", "amount": amount}})

    return app


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stocksync_sandboxes walmart")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9601)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--client-secret", required=True)
    parser.add_argument("--token-lifetime", type=float, default=TOKEN_LIFETIME_S, help="seconds an access token lives")
    parser.add_argument("--requests-per-second", type=float, default=REQUESTS_PER_SECOND)
    parser.add_argument("--burst", type=int, default=BURST)
    parser.add_argument(
        "--webhook-secret", default=None, help="signs order notifications: the connection's webhook_secret"
    )
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    settings = WalmartSandboxSettings(
        args.client_id,
        args.client_secret,
        args.requests_per_second,
        args.burst,
        args.webhook_secret,
        args.token_lifetime,
    )
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level=args.log_level)


if __name__ == "__main__":
    main()
