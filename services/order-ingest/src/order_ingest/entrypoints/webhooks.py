"""`POST /webhooks/{channel_type}/{connection_id}`: HTTP to the webhook use case.

Answers (service_layer/webhooks.py decides, in this order): 503 with Retry-After when
too many webhooks are in flight, 404 unknown channel type or connection (or a connection
of another type), 429 over the connection's rate limit (with Retry-After), 413 oversized
body, 401 bad signature (503 when the channel's key service is down, so that it
retries), 422 malformed payload naming the field; then 200, either for a duplicate
(nothing produced) or `accepted` once the delivery and its events (outbox rows) are
committed to PostgreSQL, with what was accepted. No request waits for the broker.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Request
from fastapi.responses import ORJSONResponse
from prometheus_client import Counter, Histogram
from starlette.requests import ClientDisconnect

from stocksync_common.contracts import utcnow
from stocksync_common.errors import error_responses

from order_ingest.service_layer.webhooks import (
    BodyTooLarge,
    BodyUnreadable,
    ReceiveWebhook,
    Refused,
    WebhookIntake,
    receive_webhook,
)

router = APIRouter(tags=["webhooks"])

WEBHOOKS = Counter("stocksync_webhooks_total", "Webhook deliveries by outcome", ["channel_type", "outcome"])
WEBHOOK_ACK = Histogram(
    "stocksync_webhook_ack_seconds", "Time from receipt to answer for accepted webhooks", ["channel_type"]
)

# The answer to each refusal (deprecated Starlette names avoided).
STATUS: dict[str, int] = {
    "overloaded": 503,
    "unknown_channel": 404,
    "unknown_connection": 404,
    "rate_limited": 429,
    "too_large": 413,
    "unverifiable": 503,
    "bad_signature": 401,
    "malformed": 422,
    # Nobody reads this answer: the sender gave up (its own timeout) and retries.
    "disconnected": 400,
}


def _body_reader(request: Request) -> Callable[[int], Awaitable[bytes]]:
    async def read_body(limit: int) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
            raise BodyTooLarge
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise BodyTooLarge
                chunks.append(chunk)
        except ClientDisconnect:
            raise BodyUnreadable from None
        return b"".join(chunks)

    return read_body


@router.post(
    "/webhooks/{channel_type}/{connection_id}",
    responses=error_responses(
        401,
        404,
        413,
        422,
        429,
        503,
        e401="Bad or missing signature",
        e404="Unknown channel type or connection, or a connection of another type",
        e422="Malformed payload: `field` names the field at fault",
        e503="Too many webhooks in flight, or the channel's key service is down: retry after Retry-After",
    ),
)
async def receive(
    channel_type: Annotated[str, Path(max_length=50, examples=["shopify"])],
    connection_id: Annotated[str, Path(max_length=100, description="The connection's id (a UUID)")],
    request: Request,
) -> ORJSONResponse:
    started = time.perf_counter()
    intake: WebhookIntake = request.app.state.webhook_intake
    command = ReceiveWebhook(
        channel_type=channel_type,
        connection_id=connection_id,
        headers={k.lower(): v for k, v in request.headers.items()},
        path=request.url.path + (f"?{request.url.query}" if request.url.query else ""),
        read_body=_body_reader(request),
        received_at=utcnow(),
    )
    label = channel_type if channel_type in intake.channels else "unknown"
    try:
        received = await receive_webhook(intake, command)
    except Refused as refused:
        WEBHOOKS.labels(label, refused.outcome).inc()
        headers = {"Retry-After": str(refused.retry_after_s)} if refused.retry_after_s is not None else None
        raise HTTPException(STATUS[refused.outcome], refused.detail, headers=headers) from None
    WEBHOOKS.labels(label, received.status).inc()
    if received.accepted is None or received.notification is None or received.accepted.duplicate:
        return ORJSONResponse({"status": received.status, "events": 0})
    WEBHOOK_ACK.labels(label).observe(time.perf_counter() - started)
    accepted = received.accepted
    return ORJSONResponse(
        {
            "status": "accepted",
            "delivery_id": str(accepted.delivery_id),
            "events": len(accepted.movements),
            "movements": [
                {
                    "external_order_id": m.external_order_id,
                    "line_id": m.line_id,
                    "sku": m.sku,
                    "movement": m.movement,
                    "quantity": m.quantity,
                }
                for m in accepted.movements
            ],
            "skipped_lines": list(received.notification.skipped_lines),
        }
    )
