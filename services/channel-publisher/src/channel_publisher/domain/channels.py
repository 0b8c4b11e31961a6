"""What each channel type needs from a connection: credentials, listing ids, inbound settings.

One entry per channel type (CHANNELS.md). The API validates a connection against its
type's models, so a wrong or missing field is a 422 naming it before anything is stored.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ShopifyCredentials(_Strict):
    access_token: str = Field(min_length=1, description="Admin API access token (X-Shopify-Access-Token)")


class ShopifyListing(_Strict):
    inventory_item_id: str = Field(pattern=r"^gid://shopify/InventoryItem/\d+$")
    location_id: str = Field(pattern=r"^gid://shopify/Location/\d+$")


class WooCommerceCredentials(_Strict):
    consumer_key: str = Field(min_length=1)
    consumer_secret: str = Field(min_length=1)


class WooCommerceListing(_Strict):
    product_id: int = Field(gt=0, description="Product or variation id whose stock_quantity is set")


class AmazonCredentials(_Strict):
    seller_id: str = Field(min_length=1)
    marketplace_ids: list[str] = Field(min_length=1)
    access_token: str = Field(min_length=1, description="Login with Amazon access token")


class AmazonListing(_Strict):
    product_type: str = Field("PRODUCT", min_length=1)


class EbayCredentials(_Strict):
    access_token: str = Field(min_length=1, description="OAuth user access token")


class NoListingIds(_Strict):
    """The channel addresses listings by the merchant's own SKU."""


class MiraklCredentials(_Strict):
    api_key: str = Field(min_length=1, description="Shop API key, sent in the Authorization header")


class MiraklListing(_Strict):
    offer_sku: str | None = Field(None, description="The offer's SKU on Mirakl when it differs from the SKU")
    warehouse_code: str | None = None


class WalmartCredentials(_Strict):
    access_token: str = Field(min_length=1)


class GenericCredentials(_Strict):
    signing_secret: str = Field(
        pattern=r"^whsec_[A-Za-z0-9+/=]+$",
        description="Standard Webhooks secret (whsec_ + base64) that signs Stocksync's outgoing webhooks",
    )


class AmazonInbound(_Strict):
    api_key: str = Field(min_length=16, description="Expected in the x-api-key header of forwarded notifications")


class MiraklInbound(_Strict):
    poll_interval_s: int = Field(60, ge=60, le=3600, description="OR11 polling interval; Mirakl allows once a minute")


class NoInbound(_Strict):
    pass


@dataclass(frozen=True)
class ChannelSpec:
    credentials: type[BaseModel]
    listing: type[BaseModel]
    inbound: type[BaseModel]
    # Channels that sign their order webhooks with a shared secret.
    webhook_secret_required: bool


CHANNELS: dict[str, ChannelSpec] = {
    "shopify": ChannelSpec(ShopifyCredentials, ShopifyListing, NoInbound, True),
    "woocommerce": ChannelSpec(WooCommerceCredentials, WooCommerceListing, NoInbound, True),
    "amazon": ChannelSpec(AmazonCredentials, AmazonListing, AmazonInbound, False),
    "ebay": ChannelSpec(EbayCredentials, NoListingIds, NoInbound, False),
    "mirakl": ChannelSpec(MiraklCredentials, MiraklListing, MiraklInbound, False),
    "walmart": ChannelSpec(WalmartCredentials, NoListingIds, NoInbound, True),
    "generic": ChannelSpec(GenericCredentials, NoListingIds, NoInbound, True),
}


class ConnectionSettings(_Strict):
    """A connection's limits and options; each adapter reads those that apply to it."""

    batch_limit: int | None = Field(
        None, ge=1, le=10_000, description="Most quantities per call (capped by the channel)"
    )
    requests_per_second: float | None = Field(None, gt=0, le=1_000)
    burst: int | None = Field(None, ge=1, le=1_000)
    min_interval_s: float | None = Field(None, ge=0, le=3_600)
    import_timeout_s: float | None = Field(None, gt=0, le=86_400)
    restore_rate: float | None = Field(None, gt=0, le=100_000, description="Shopify: cost points restored per second")
    drift_check_interval_s: float | None = Field(None, ge=60, le=86_400)
    pause_after_failures: int | None = Field(None, ge=1, le=1_000, description="Consecutive failures before a pause")
    pause_duration_s: float | None = Field(None, gt=0, le=86_400, description="How long an automatic pause lasts")
    api_version: str | None = Field(None, description="Shopify: the Admin API version, e.g. 2026-10")
