"""What each channel type needs from a connection: credentials, listing ids, inbound settings.

One entry per channel type (docs/channels-protocols.md). The API validates a connection against its
type's models, so a wrong or missing field is a 422 naming it before anything is stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Self, get_args

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, StrictBool, model_validator

from stocksync_common.bounds import IDENTIFIER_MAX_LENGTH, TEXT_MAX_LENGTH
from stocksync_common.contracts import ChannelType

# A credential (key, secret, token) as the marketplaces issue them: opaque, bounded.
Secret = Annotated[str, Field(min_length=1, max_length=TEXT_MAX_LENGTH, pattern=r"^[\x21-\x7e]+$")]

# The token endpoints of the marketplaces (each adapter's module names its source).
AMAZON_LWA_TOKEN_URL = "https://api.amazon.com/auth/o2/token"
EBAY_INVENTORY_SCOPE = "https://api.ebay.com/oauth/api_scope/sell.inventory"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ShopifyCredentials(_Strict):
    """An offline token; or, for a store on expiring offline tokens, the app's client id and
    secret with the refresh token (the access token is then obtained and refreshed)."""

    access_token: Secret | None = Field(None, description="Admin API access token (X-Shopify-Access-Token)")
    client_id: Secret | None = None
    client_secret: Secret | None = None
    refresh_token: Secret | None = Field(None, description="For expiring offline tokens (rotated on each refresh)")

    @model_validator(mode="after")
    def _one_scheme(self) -> Self:
        refreshable = (self.client_id, self.client_secret, self.refresh_token)
        if all(refreshable):
            return self
        if any(refreshable):
            raise ValueError("client_id, client_secret and refresh_token go together (expiring offline tokens)")
        if not self.access_token:
            raise ValueError("access_token, or client_id, client_secret and refresh_token, is required")
        return self


class ShopifyListing(_Strict):
    inventory_item_id: str = Field(pattern=r"^gid://shopify/InventoryItem/\d+$")
    location_id: str = Field(pattern=r"^gid://shopify/Location/\d+$")


class WooCommerceCredentials(_Strict):
    consumer_key: Secret
    consumer_secret: Secret


class WooCommerceListing(_Strict):
    product_id: int = Field(gt=0, description="Product or variation id whose stock_quantity is set")


class AmazonCredentials(_Strict):
    """Login with Amazon: the app's client id and secret and the seller's refresh token
    (from authorising the app in Seller Central); access tokens are obtained from them."""

    seller_id: Secret
    marketplace_ids: list[Secret] = Field(min_length=1, max_length=50)
    client_id: Secret = Field(description="LWA client identifier (amzn1.application-oa2-client...)")
    client_secret: Secret = Field(description="LWA client secret")
    refresh_token: Secret = Field(description="LWA refresh token (Atzr|...) of the seller's authorisation")
    token_url: HttpUrl = Field(HttpUrl(AMAZON_LWA_TOKEN_URL), description="The LWA token endpoint")


class AmazonListing(_Strict):
    product_type: str = Field("PRODUCT", min_length=1)


class EbayCredentials(_Strict):
    """eBay OAuth: the app's client id and secret (App ID, Cert ID) and the seller's
    refresh token from the authorization code grant; user access tokens come from them."""

    client_id: Secret = Field(description="App ID (client id) of the eBay application keyset")
    client_secret: Secret = Field(description="Cert ID (client secret) of the keyset")
    refresh_token: Secret = Field(description="The seller's OAuth refresh token (valid 18 months)")
    scope: str = Field(EBAY_INVENTORY_SCOPE, max_length=TEXT_MAX_LENGTH, pattern=r"^[\x21-\x7e ]+$")


class NoListingIds(_Strict):
    """The channel addresses listings by the merchant's own SKU."""


class MiraklCredentials(_Strict):
    api_key: Secret = Field(description="Shop API key, sent in the Authorization header")


class MiraklListing(_Strict):
    offer_sku: str | None = Field(None, description="The offer's SKU on Mirakl when it differs from the SKU")
    warehouse_code: str | None = None


class WalmartCredentials(_Strict):
    """Walmart's client id and secret (Developer Portal, API keys): they obtain the access
    token and form the `Authorization: Basic` header every call carries."""

    client_id: Secret
    client_secret: Secret


class GenericCredentials(_Strict):
    signing_secret: str = Field(
        pattern=r"^whsec_[A-Za-z0-9+/=]+$",
        description="Standard Webhooks secret (whsec_ + base64) that signs Stocksync's outgoing webhooks",
    )


class AmazonInbound(_Strict):
    api_key: str = Field(min_length=16, description="Expected in the x-api-key header of forwarded notifications")


class MiraklInbound(_Strict):
    poll_interval_s: int = Field(60, ge=60, le=3600, description="OR11 polling interval; Mirakl allows once a minute")


class WalmartInbound(_Strict):
    signature_header: str = Field(
        "Authorization",
        min_length=1,
        max_length=IDENTIFIER_MAX_LENGTH,
        pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$",
        description="The authHeaderName of the Walmart subscription (authMethod HMAC): the header the HMAC is in",
    )


class NoInbound(_Strict):
    pass


Seconds = Annotated[float, Field(gt=0, le=86_400)]


class ConnectionSettings(_Strict):
    """A connection's limits and options; each adapter reads those that apply to it
    (docs/channels.md). Every key is checked here, so a wrong or unknown one is a 422
    naming it, never an adapter that cannot be built."""

    batch_limit: int | None = Field(
        None, ge=1, le=10_000, description="Most quantities per call (capped by the channel)"
    )
    requests_per_second: float | None = Field(None, gt=0, le=1_000)
    burst: int | None = Field(None, ge=1, le=1_000)
    pause_after_failures: int | None = Field(None, ge=1, le=1_000, description="Consecutive failures before a pause")
    pause_duration_s: Seconds | None = Field(None, description="How long an automatic pause lasts")
    drift_check_interval_s: float | None = Field(None, ge=60, le=86_400)
    manage_stock: StrictBool | None = Field(
        None, description="WooCommerce: send manage_stock: true with the quantity (false: report unmanaged products)"
    )
    skus_per_call: int | None = Field(
        None, ge=1, le=25, description="eBay: SKUs per bulk_update_price_quantity call (the safe reading is 1)"
    )
    min_interval_s: float | None = Field(None, ge=0, le=3_600, description="Mirakl: STO01 spacing")
    status_poll_interval_s: Seconds | None = Field(None, description="Mirakl: STO02 spacing")
    error_report_interval_s: Seconds | None = Field(None, description="Mirakl: STO03 spacing")
    import_timeout_s: Seconds | None = Field(None, description="Mirakl: how long an import is waited for")
    api_version: str | None = Field(
        None, pattern=r"^\d{4}-\d{2}$", description="Shopify: the Admin API version, e.g. 2026-10"
    )
    restore_rate: float | None = Field(None, gt=0, le=100_000, description="Shopify: cost points restored per second")


@dataclass(frozen=True)
class ChannelSpec:
    credentials: type[BaseModel]
    listing: type[BaseModel]
    inbound: type[BaseModel]
    # Channels that sign their order webhooks with a shared secret.
    webhook_secret_required: bool
    # Channels that hold one quantity per location (Shopify's inventory levels, each
    # listing naming its location id); the others are sent the sum of the connection's
    # locations.
    per_location: bool = False


CHANNELS: dict[str, ChannelSpec] = {
    "shopify": ChannelSpec(ShopifyCredentials, ShopifyListing, NoInbound, True, per_location=True),
    "woocommerce": ChannelSpec(WooCommerceCredentials, WooCommerceListing, NoInbound, True),
    "amazon": ChannelSpec(AmazonCredentials, AmazonListing, AmazonInbound, False),
    "ebay": ChannelSpec(EbayCredentials, NoListingIds, NoInbound, False),
    "mirakl": ChannelSpec(MiraklCredentials, MiraklListing, MiraklInbound, False),
    "walmart": ChannelSpec(WalmartCredentials, NoListingIds, WalmartInbound, True),
    "generic": ChannelSpec(GenericCredentials, NoListingIds, NoInbound, True),
}
if set(CHANNELS) != set(get_args(ChannelType)):
    raise ImportError(f"channel types without a spec: {set(get_args(ChannelType)) ^ set(CHANNELS)}")
