"""The publisher's one registry of channels: an adapter per `ChannelType`.

Derived from the one list of channel types (stocksync_common.contracts.ChannelType): a
type added there and missing here fails at import, and which channels can be read back
(the drift check) follows from the adapters that implement `read_quantities`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import get_args

from stocksync_common.contracts import ChannelType

from channel_publisher.adapters.channels.access import ChannelAccess
from channel_publisher.adapters.channels.amazon import AmazonAdapter
from channel_publisher.adapters.channels.ebay import EbayAdapter
from channel_publisher.adapters.channels.generic_webhook import GenericWebhookAdapter
from channel_publisher.adapters.channels.mirakl import MiraklAdapter
from channel_publisher.adapters.channels.shopify import ShopifyAdapter
from channel_publisher.adapters.channels.walmart import WalmartAdapter
from channel_publisher.adapters.channels.woocommerce import WooCommerceAdapter
from channel_publisher.domain.pushes import ChannelAdapter

AdapterFactory = Callable[[ChannelAccess], ChannelAdapter]

ADAPTERS: Mapping[str, AdapterFactory] = {
    "shopify": ShopifyAdapter,
    "woocommerce": WooCommerceAdapter,
    "amazon": AmazonAdapter,
    "ebay": EbayAdapter,
    "mirakl": MiraklAdapter,
    "walmart": WalmartAdapter,
    "generic": GenericWebhookAdapter,
}
if set(ADAPTERS) != set(get_args(ChannelType)):
    raise ImportError(f"channel types without an adapter: {set(get_args(ChannelType)) ^ set(ADAPTERS)}")

# Channels whose API shows the quantity a listing has now.
READABLE_CHANNELS: tuple[str, ...] = tuple(
    channel_type for channel_type, adapter in ADAPTERS.items() if hasattr(adapter, "read_quantities")
)
