"""`POST /webhooks/{channel_type}/{connection_id}`: verify, dedupe, record, publish.

Answers, in this order: 404 unknown channel type or connection (or a connection of
another type), 429 over the connection's rate limit (with Retry-After), 413 oversized
body, 401 bad signature (503 when the channel's key service is down, so that it
retries), 422 malformed payload naming the field; then 200, either for a duplicate
(nothing produced) or `accepted` once the delivery and its events (outbox rows) are
committed to PostgreSQL. That commit is the durability promise: the outbox relay
publishes, and no request waits for the broker (when it is down, the relay publishes
once it is back). Nothing is acknowledged before it is durable, and none of the
refusals produce anything.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from typing import Annotated

from aiolimiter import AsyncLimiter
from fastapi import APIRouter, HTTPException, Path, Request, status
from fastapi.responses import ORJSONResponse
from prometheus_client import Counter, Histogram

from stocksync_common.errors import error_responses
from stocksync_common.runtime import Runtime

from order_ingest.adapters.channels import MalformedDelivery, VerificationUnavailable
from order_ingest.adapters.channels.registry import WebhookChannel
from order_ingest.config import IngestSettings
from order_ingest.service_layer.ingest import accept_delivery, now

log = logging.getLogger(__name__)
router = APIRouter(tags=["webhooks"])

WEBHOOKS = Counter("stocksync_webhooks_total", "Webhook deliveries by outcome", ["channel_type", "outcome"])
WEBHOOK_ACK = Histogram(
    "stocksync_webhook_ack_seconds", "Time from receipt to answer for accepted webhooks", ["channel_type"]
)


class ConnectionRateLimits:
    """One token bucket per connection, in this process (each instance limits its share)."""

    def __init__(self, rate: int, period_s: float) -> None:
        self.rate = rate
        self.period_s = period_s
        self._limiters: dict[uuid.UUID, AsyncLimiter] = {}

    @property
    def retry_after_s(self) -> int:
        # Time for one token to come back: the earliest a retry can pass.
        return max(1, math.ceil(self.period_s / self.rate))

    async def try_acquire(self, connection_id: uuid.UUID) -> bool:
        limiter = self._limiters.setdefault(connection_id, AsyncLimiter(self.rate, self.period_s))
        if not limiter.has_capacity():
            return False
        await limiter.acquire()
        return True


def _refuse(
    channel_type: str, outcome: str, code: int, detail: object, headers: dict[str, str] | None = None
) -> HTTPException:
    WEBHOOKS.labels(channel_type, outcome).inc()
    return HTTPException(code, detail, headers=headers)


async def _read_body(request: Request, limit: int, channel_type: str) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise _refuse(
            channel_type, "too_large", status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, f"body larger than {limit} bytes"
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _refuse(
                channel_type, "too_large", status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, f"body larger than {limit} bytes"
            )
        chunks.append(chunk)
    return b"".join(chunks)


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
        e503="The channel's key service is down: retry later",
    ),
)
async def receive_webhook(
    channel_type: Annotated[str, Path(max_length=50, examples=["shopify"])],
    connection_id: Annotated[str, Path(max_length=100, description="The connection's id (a UUID)")],
    request: Request,
) -> ORJSONResponse:
    started = time.perf_counter()
    received_at = now()
    runtime: Runtime = request.app.state.runtime
    settings: IngestSettings = request.app.state.settings
    channels: dict[str, WebhookChannel] = request.app.state.webhook_channels
    limits: ConnectionRateLimits = request.app.state.rate_limits
    channel = channels.get(channel_type)
    if channel is None:
        raise _refuse("unknown", "unknown_channel", status.HTTP_404_NOT_FOUND, "unknown channel type")
    try:
        connection_uuid = uuid.UUID(connection_id)
    except ValueError:
        raise _refuse(channel_type, "unknown_connection", status.HTTP_404_NOT_FOUND, "unknown connection") from None
    connection = await request.app.state.connection_directory.find(connection_uuid)
    if connection is None or connection.channel_type != channel_type:
        raise _refuse(channel_type, "unknown_connection", status.HTTP_404_NOT_FOUND, "unknown connection")
    if not await limits.try_acquire(connection.connection_id):
        raise _refuse(
            channel_type,
            "rate_limited",
            status.HTTP_429_TOO_MANY_REQUESTS,
            "too many webhooks for this connection",
            {"Retry-After": str(limits.retry_after_s)},
        )
    body = await _read_body(request, settings.webhook_max_body_bytes, channel_type)
    if channel.is_ping(body):
        WEBHOOKS.labels(channel_type, "ping").inc()
        return ORJSONResponse({"status": "ping", "events": 0})
    headers = {k.lower(): v for k, v in request.headers.items()}
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    try:
        verified = await channel.verify(connection, headers, body, path)
    except VerificationUnavailable as exc:
        raise _refuse(
            channel_type, "unverifiable", status.HTTP_503_SERVICE_UNAVAILABLE, str(exc), {"Retry-After": "30"}
        ) from None
    if not verified:
        raise _refuse(channel_type, "bad_signature", status.HTTP_401_UNAUTHORIZED, "invalid webhook signature")
    try:
        # The registry's parsers are bounded: what they return can be stored and applied.
        notification = channel.parse(headers, body)
    except MalformedDelivery as exc:
        raise _refuse(channel_type, "malformed", status.HTTP_422_UNPROCESSABLE_ENTITY, exc.detail) from None

    accepted = await accept_delivery(runtime.engine, connection, notification, body, headers, received_at)
    if accepted.duplicate:
        WEBHOOKS.labels(channel_type, "duplicate").inc()
        return ORJSONResponse({"status": "duplicate", "events": 0})
    # The commit is the durability promise: the relay publishes, no request waits for
    # the broker.
    runtime.wake_relay()
    WEBHOOKS.labels(channel_type, "accepted").inc()
    WEBHOOK_ACK.labels(channel_type).observe(time.perf_counter() - started)
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
            "skipped_lines": list(notification.skipped_lines),
        }
    )
