"""A sandbox receiver of Stocksync's generic channel: the merchant's own endpoint that
takes quantities as Standard Webhooks, checked as a careful receiver checks them.

- `webhook-id`, `webhook-timestamp`, `webhook-signature` are required (400 else); the
  timestamp must be within 5 minutes (401 else); one `v1,<base64>` of the signature list
  must equal base64(HMAC-SHA256(key, "{id}.{timestamp}.{raw body}")), compared in
  constant time over the raw bytes (401 else). The key is the base64 after `whsec_`.
- The body is `{type, timestamp, data: {quantities: [{sku, location, quantity, version}]}}`
  (422 else). A `webhook-id` already processed is answered 200 and not applied again.
- SKUs the receiver does not know come back in `{"rejected": [{sku, location, message}]}`;
  the others apply. Rate limit only if `--requests-per-second` is given.
- Orders (the shop's other direction): `POST /_sandbox/orders {webhook_url, lines, ...}`
  sends a Standard Webhooks order event signed with every `--order-signing-secret`
  (generic_orders.py; several while rotating): give it the Stocksync connection's
  `webhook_secret`. `--signing-secret` is the other secret, the one Stocksync signs
  quantities with (the connection's `credentials.signing_secret`). Without an order
  signing secret a random one signs, and Stocksync refuses the orders (401).

Run it: python -m stocksync_sandboxes generic --port 9701 --signing-secret whsec_... --order-signing-secret whsec_...
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from stocksync_sandboxes import generic_orders
from stocksync_sandboxes.marketplace_sandbox import Marketplace

TOLERANCE_S = 300


@dataclass(frozen=True)
class GenericSandboxSettings:
    signing_secret: str
    requests_per_second: float | None = None
    burst: int = 10
    # `whsec_` secrets that sign the order events; empty: a random one (the receiver refuses it).
    order_signing_secrets: tuple[str, ...] = ()


def expected_signature(secret: str, message_id: str, timestamp: str, body: bytes) -> bytes:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    return base64.b64encode(hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest())


def signature_valid(secret: str, headers: Any, body: bytes, now: float) -> str | None:
    """None when the webhook is authentic; else why not."""
    message_id, timestamp, signatures = (
        headers.get(h) for h in ("webhook-id", "webhook-timestamp", "webhook-signature")
    )
    if not message_id or not timestamp or not signatures:
        return "missing webhook-id, webhook-timestamp or webhook-signature"
    if not timestamp.isdigit() or abs(now - int(timestamp)) > TOLERANCE_S:
        return "timestamp outside the tolerance"
    expected = expected_signature(secret, message_id, timestamp, body)
    for candidate in signatures.split(" "):
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode(), expected):
            return None
    return "no matching signature"


def create_app(settings: GenericSandboxSettings) -> FastAPI:
    market = Marketplace("generic", requests_per_second=settings.requests_per_second, burst=settings.burst)
    processed: dict[str, dict[str, Any]] = {}
    app = FastAPI(title="Generic Standard Webhooks receiver sandbox")
    app.state.market = market
    app.include_router(market.control_router())
    # Before the catch-all receiver below, which would take POST /_sandbox/orders too.
    app.include_router(generic_orders.orders_router(settings.order_signing_secrets or [generic_orders.new_secret()]))

    @app.post("/{path:path}")
    async def receive(path: str, request: Request) -> Response:
        body = await request.body()
        problem = signature_valid(settings.signing_secret, request.headers, body, market.wall_clock())
        if problem is not None:
            market.stats["unauthorized"] += 1
            status = 400 if problem.startswith("missing") else 401
            return JSONResponse({"error": problem}, status)
        message_id = request.headers["webhook-id"]
        if message_id in processed:
            return JSONResponse(processed[message_id])
        try:
            payload = orjson.loads(body)
            quantities = payload["data"]["quantities"]
            items: list[tuple[str, int | None]] = [(str(q["sku"]), int(q["quantity"])) for q in quantities]
            locations = [str(q.get("location", "default")) for q in quantities]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            market.stats["invalid"] += 1
            return JSONResponse({"error": "expected {type, timestamp, data: {quantities: [...]}}"}, 422)
        refused = market.admit([sku for sku, _ in items], "webhook", items)
        if refused is not None:
            return refused
        rejected, applied = [], []
        failed = False
        for (sku, quantity), location in zip(items, locations, strict=True):
            listing = market.listings.get(sku)
            if market.transient_failure(sku):
                failed = True
            elif listing is None:
                rejected.append({"sku": sku, "location": location, "message": f"unknown SKU {sku}"})
            else:
                market.apply(listing, int(quantity or 0))
                applied.append(sku)
        if failed:
            # A receiver that fails part-way answers 5xx; what it applied stays applied,
            # and the redelivery (same webhook-id, same absolute quantities) is harmless.
            market.record("webhook", 503, items, applied)
            return JSONResponse({"error": "temporarily unavailable"}, 503)
        answer = {"rejected": rejected}
        processed[message_id] = answer
        market.record("webhook", 200, items, applied)
        return JSONResponse(answer)

    return app


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stocksync_sandboxes generic")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9701)
    parser.add_argument("--signing-secret", required=True)
    parser.add_argument("--requests-per-second", type=float, default=None)
    parser.add_argument("--burst", type=int, default=10)
    parser.add_argument(
        "--order-signing-secret",
        action="append",
        default=[],
        help="whsec_... that signs order events: the connection's webhook_secret (repeat to sign with several)",
    )
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    for secret in args.order_signing_secret:
        if not secret.startswith("whsec_"):
            parser.error("--order-signing-secret must be whsec_ followed by base64")
    settings = GenericSandboxSettings(
        args.signing_secret, args.requests_per_second, args.burst, tuple(args.order_signing_secret)
    )
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level=args.log_level)


if __name__ == "__main__":
    main()
