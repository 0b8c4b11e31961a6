"""`POST /webhooks/{channel_type}/{connection_id}`: verify, dedupe, record, publish.

Answers, in this order: 404 unknown channel type or connection (or a connection of
another type), 413 oversized body, 401 bad signature, 422 malformed payload naming the
field, 200 for a duplicate (nothing produced) or once the events are durable.
"""

from __future__ import annotations

import logging
import time
import uuid

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import ORJSONResponse
from prometheus_client import Counter, Histogram
from pydantic import ValidationError

from stocksync_common.logging import causation
from stocksync_common.runtime import Runtime

from order_ingest.adapters.channels import shopify
from order_ingest.adapters.signatures import verify_hmac_sha256_base64
from order_ingest.config import IngestSettings
from order_ingest.service_layer.ingest import accept_delivery, find_connection, now

log = logging.getLogger(__name__)
router = APIRouter(tags=["webhooks"])

WEBHOOKS = Counter("stocksync_webhooks_total", "Webhook deliveries by outcome", ["channel_type", "outcome"])
WEBHOOK_ACK = Histogram(
    "stocksync_webhook_ack_seconds", "Time from receipt to answer for accepted webhooks", ["channel_type"]
)

SUPPORTED_CHANNELS = {"shopify"}


def _refuse(channel_type: str, outcome: str, code: int, detail: object) -> HTTPException:
    WEBHOOKS.labels(channel_type, outcome).inc()
    return HTTPException(code, detail)


async def _read_body(request: Request, limit: int, channel_type: str) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _refuse(channel_type, "too_large", status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
                      f"body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _refuse(channel_type, "too_large", status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
                          f"body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


@router.post("/webhooks/{channel_type}/{connection_id}")
async def receive_webhook(channel_type: str, connection_id: str, request: Request) -> ORJSONResponse:
    started = time.perf_counter()
    received_at = now()
    runtime: Runtime = request.app.state.runtime
    settings: IngestSettings = request.app.state.settings
    if channel_type not in SUPPORTED_CHANNELS:
        raise _refuse(channel_type, "unknown_channel", status.HTTP_404_NOT_FOUND, "unknown channel type")
    try:
        connection_uuid = uuid.UUID(connection_id)
    except ValueError:
        raise _refuse(channel_type, "unknown_connection", status.HTTP_404_NOT_FOUND, "unknown connection") from None
    connection = await find_connection(runtime.engine, connection_uuid)
    if connection is None or connection.channel_type != channel_type:
        raise _refuse(channel_type, "unknown_connection", status.HTTP_404_NOT_FOUND, "unknown connection")
    body = await _read_body(request, settings.webhook_max_body_bytes, channel_type)
    headers = {k.lower(): v for k, v in request.headers.items()}

    if not verify_hmac_sha256_base64(connection.webhook_secrets, body, headers.get(shopify.SIGNATURE_HEADER)):
        raise _refuse(channel_type, "bad_signature", status.HTTP_401_UNAUTHORIZED, "invalid webhook signature")
    try:
        notification = shopify.parse_notification(headers, body)
    except shopify.MissingHeader as exc:
        raise _refuse(channel_type, "malformed", status.HTTP_422_UNPROCESSABLE_ENTITY, str(exc)) from None
    except ValidationError as exc:
        raise _refuse(
            channel_type, "malformed", status.HTTP_422_UNPROCESSABLE_ENTITY,
            [{"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in exc.errors()],
        ) from None

    accepted = await accept_delivery(runtime.engine, connection, notification, body, headers, received_at)
    if accepted.duplicate:
        WEBHOOKS.labels(channel_type, "duplicate").inc()
        return ORJSONResponse({"status": "duplicate", "events": 0})
    runtime.wake_relay()
    assert runtime.relay is not None
    published = await runtime.relay.wait_published(accepted.outbox_ids, settings.webhook_broker_ack_timeout_s)
    with causation(notification.channel_event_id):
        if not published:
            # Durable in PostgreSQL; the relay publishes when the broker is back.
            log.warning("broker did not acknowledge in time; events kept in the outbox")
    WEBHOOKS.labels(channel_type, "accepted").inc()
    WEBHOOK_ACK.labels(channel_type).observe(time.perf_counter() - started)
    return ORJSONResponse({
        "status": "accepted" if published else "stored",
        "delivery_id": str(accepted.delivery_id),
        "events": accepted.events,
        "skipped_lines": list(notification.skipped_lines),
    })
