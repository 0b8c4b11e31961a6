"""Channel types that deliver orders by webhook, and how each is verified and read."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from order_ingest.adapters.channels import amazon, bounded, ebay, generic, mirakl, shopify, walmart, woocommerce
from order_ingest.domain.connections import InboundConnection
from order_ingest.domain.movements import Notification

Headers = Mapping[str, str]


@dataclass(frozen=True)
class WebhookChannel:
    # (connection, lower-case headers, raw body, path and query) -> signature valid
    verify: Callable[[InboundConnection, Headers, bytes, str], Awaitable[bool]]
    parse: Callable[[Headers, bytes], Notification]
    # A delivery answered 200 with nothing done and nothing verified (WooCommerce's ping).
    is_ping: Callable[[bytes], bool] = lambda body: False


def _sync(
    check: Callable[[InboundConnection, Headers, bytes], bool],
) -> Callable[[InboundConnection, Headers, bytes, str], Awaitable[bool]]:
    async def verify(connection: InboundConnection, headers: Headers, body: bytes, path: str) -> bool:
        return check(connection, headers, body)

    return verify


def webhook_channels(ebay_keys: ebay.EbayPublicKeys) -> dict[str, WebhookChannel]:
    async def verify_ebay(connection: InboundConnection, headers: Headers, body: bytes, path: str) -> bool:
        return await ebay_keys.verify(connection, headers, body)

    return {
        "shopify": WebhookChannel(_sync(shopify.verify), PARSERS["shopify"]),
        "woocommerce": WebhookChannel(_sync(woocommerce.verify), PARSERS["woocommerce"], woocommerce.is_ping),
        "amazon": WebhookChannel(_sync(amazon.verify), PARSERS["amazon"]),
        "ebay": WebhookChannel(verify_ebay, PARSERS["ebay"]),
        "walmart": WebhookChannel(_sync(walmart.verify), PARSERS["walmart"]),
        "generic": WebhookChannel(_sync(generic.verify), PARSERS["generic"]),
    }


# How a delivery of each channel type is read (webhooks, polls, replays), every one
# within the bounds of stocksync_common.bounds.
PARSERS: dict[str, Callable[[Headers, bytes], Notification]] = {
    "shopify": bounded(shopify.parse),
    "woocommerce": bounded(woocommerce.parse),
    "amazon": bounded(amazon.parse),
    "ebay": bounded(ebay.parse),
    "walmart": bounded(walmart.parse),
    "generic": bounded(generic.parse),
    "mirakl": bounded(mirakl.parse),
}
