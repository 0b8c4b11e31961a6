"""Every webhook parser and verifier fuzzed: random and mutated payloads and headers.

A parser either reads a notification whose every value can be stored and applied, or
refuses with MalformedDelivery (the webhook answers 422): never another exception (a 500).
A verifier never accepts a body without a valid signature, and never raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stocksync_sandboxes import generic_orders

from order_ingest.adapters.channels import MalformedDelivery
from order_ingest.adapters.channels.ebay import EbayPublicKeys
from order_ingest.adapters.channels.registry import PARSERS, WebhookChannel, webhook_channels
from order_ingest.domain.connections import InboundConnection

HEADER_NAMES = [
    "x-shopify-hmac-sha256",
    "x-shopify-event-id",
    "x-shopify-topic",
    "x-shopify-webhook-id",
    "x-wc-webhook-signature",
    "x-wc-webhook-topic",
    "x-wc-webhook-delivery-id",
    "x-api-key",
    "x-ebay-signature",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "wm_sec.signature",
    "wm_sec.timestamp",
    "authorization",
]
TEXT = st.text(st.characters(codec="utf-8"), max_size=40)
HEADERS = st.dictionaries(st.sampled_from(HEADER_NAMES), TEXT, max_size=len(HEADER_NAMES))
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=20,
)
# Keys every channel's payloads use, so that random documents reach past the first check.
KEYS = ["id", "order_id", "line_items", "lines", "sku", "quantity", "data", "type", "payload", "notification"]
SHAPED = st.dictionaries(st.sampled_from(KEYS), JSON, max_size=6)
FUZZ = settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))


def _generic_body(sku: str, quantity: Any, order_id: Any) -> bytes:
    event = {
        "type": "order.created",
        "timestamp": "2026-01-01T00:00:00Z",
        "data": {"order_id": order_id, "lines": [{"line_id": "1", "sku": sku, "quantity": quantity}]},
    }
    return _dumps(event)


def _dumps(document: Any) -> bytes:
    # Not orjson: integers past 64 bits must reach the parsers too.
    return json.dumps(document).encode()


async def _verified(
    channel: WebhookChannel, connection: InboundConnection, headers: dict[str, str], body: bytes
) -> bool:
    return await channel.verify(
        connection, headers, body, f"/webhooks/{connection.channel_type}/{connection.connection_id}"
    )


def _parse_is_safe(channel_type: str, headers: dict[str, str], body: bytes) -> None:
    with contextlib.suppress(MalformedDelivery):
        PARSERS[channel_type](headers, body)


@FUZZ
@given(channel_type=st.sampled_from(sorted(PARSERS)), headers=HEADERS, body=st.binary(max_size=300))
def test_random_bytes_are_refused_by_every_parser_or_read_safely(
    channel_type: str, headers: dict[str, str], body: bytes
) -> None:
    _parse_is_safe(channel_type, headers, body)


@FUZZ
@given(channel_type=st.sampled_from(sorted(PARSERS)), headers=HEADERS, document=JSON | SHAPED)
def test_random_json_is_refused_by_every_parser_or_read_safely(
    channel_type: str, headers: dict[str, str], document: Any
) -> None:
    _parse_is_safe(channel_type, headers, _dumps(document))


@FUZZ
@given(
    sku=st.text(max_size=300),
    quantity=st.integers(min_value=-(2**70), max_value=2**70) | TEXT,
    order_id=TEXT | st.integers(),
)
def test_mutated_generic_orders_with_a_valid_signature_are_read_safely_or_refused(
    sku: str, quantity: Any, order_id: Any
) -> None:
    secret = generic_orders.new_secret()
    body = _generic_body(sku, quantity, order_id)
    headers = generic_orders.sign(f"msg_{uuid.uuid4().hex}", int(time.time()), body, [secret])
    channel = webhook_channels(EbayPublicKeys(httpx.AsyncClient()))["generic"]
    connection = InboundConnection(uuid.uuid4(), uuid.uuid4(), "generic", (secret,))
    assert asyncio.run(_verified(channel, connection, headers, body))
    try:
        notification = channel.parse(headers, body)
    except MalformedDelivery:
        return
    # What is read is what was sent, and it is storable.
    [line] = notification.lines
    assert line.sku == sku and "\x00" not in sku and 0 < len(sku) <= 200


@FUZZ
@given(
    channel_type=st.sampled_from(["shopify", "woocommerce", "amazon", "walmart", "generic"]),
    headers=HEADERS,
    body=st.binary(max_size=200) | JSON.map(_dumps),
)
def test_no_verifier_accepts_a_body_without_its_signature(
    channel_type: str, headers: dict[str, str], body: bytes
) -> None:
    channel = webhook_channels(EbayPublicKeys(httpx.AsyncClient()))[channel_type]
    connection = InboundConnection(
        uuid.uuid4(),
        uuid.uuid4(),
        channel_type,
        ("a-webhook-secret-0123", generic_orders.new_secret()),
        inbound={"api_key": "amazon-inbound-key-0123456789"},
    )
    assert not asyncio.run(_verified(channel, connection, headers, body))
