"""eBay order notifications (Notification API: JSON payload, ECC signature).

`X-EBAY-SIGNATURE` is base64 of `{"alg": "ecdsa", "kid": ..., "signature": ...,
"digest": "SHA1"}` (eBay writes `alg` in lower case; both fields are compared without
regard to case). The public key of `kid` comes from the Notification API
(`GET /commerce/notification/v1/public_key/{kid}`, bearer token) and is cached for an
hour, as eBay's getPublicKey reference recommends. The signature is ECDSA/SHA-1 over the
compact JSON message, checked as eBay's event-notification SDKs check it (see
`signatures.verify_ecdsa_sha1`); `tests/unit/test_ingest_ebay_signature.py` verifies eBay's
own signed test message. `notification.notificationId` is the dedupe key (the same on
every retry).

The order topic's name and data shape are not published with the Notification API
(unverified): the data follows the Fulfillment API's order (`orderId`, `cancelStatus`,
`lineItems[]` with `lineItemId`, `sku`, `quantity`, `lineItemFulfillmentStatus`).
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable, Mapping

import httpx
import orjson
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from order_ingest.adapters.channels import MalformedDelivery, VerificationUnavailable
from order_ingest.adapters.signatures import ebay_public_key, verify_ecdsa_sha1
from order_ingest.domain.connections import InboundConnection
from order_ingest.domain.movements import LineReport, Notification

SIGNATURE_HEADER = "x-ebay-signature"
PUBLIC_KEY_PATH = "/commerce/notification/v1/public_key/{kid}"
# eBay's getPublicKey reference: cache the key "for a temporary but reasonable amount of
# time (e.g., one-hour is recommended)", never fetch it per notification.
PUBLIC_KEY_TTL_S = 3600.0
# Keys kept at most (one per kid and base URL; eBay rotates keys rarely).
PUBLIC_KEY_CACHE_SIZE = 256

# getPublicKey takes an application access token: eBay OAuth's client credentials grant
# (`POST /identity/v1/oauth2/token`, Basic client id and secret, scope api_scope).
TOKEN_PATH = "/identity/v1/oauth2/token"
APPLICATION_SCOPE = "https://api.ebay.com/oauth/api_scope"


async def application_token(http: httpx.AsyncClient, base_url: str, channel_api: Mapping[str, object]) -> str:
    """An application token from the connection's client id and secret (a fixed
    `access_token` is used as is, for connections made before credentials refreshed)."""
    client_id, client_secret = channel_api.get("client_id"), channel_api.get("client_secret")
    if not isinstance(client_id, str) or not isinstance(client_secret, str):
        return str(channel_api.get("access_token", ""))
    basic = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()
    try:
        answer = await http.post(
            base_url + TOKEN_PATH,
            headers={"Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded"},
            data={"grant_type": "client_credentials", "scope": APPLICATION_SCOPE},
        )
    except httpx.HTTPError as exc:
        raise VerificationUnavailable(f"eBay token endpoint unreachable: {type(exc).__name__}") from exc
    if answer.status_code == 429 or answer.status_code >= 500:
        raise VerificationUnavailable(f"eBay token endpoint answered {answer.status_code}")
    token = answer.json().get("access_token") if answer.status_code == 200 else None
    return token if isinstance(token, str) else ""


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class CancelStatus(_Model):
    cancelState: str = "NONE_REQUESTED"


class LineItem(_Model):
    lineItemId: str = Field(min_length=1)
    sku: str | None = None
    quantity: int = Field(ge=0)
    lineItemFulfillmentStatus: str = "NOT_STARTED"


class OrderData(_Model):
    orderId: str = Field(min_length=1)
    cancelStatus: CancelStatus = CancelStatus()
    lineItems: list[LineItem]


class NotificationBody(_Model):
    notificationId: str = Field(min_length=1)
    data: OrderData


class Metadata(_Model):
    topic: str


class EbayNotification(_Model):
    metadata: Metadata
    notification: NotificationBody


class EbayPublicKeys:
    """Public keys by (base URL, key id), each kept `ttl_s` after it was fetched.

    A key that cannot be had (unknown kid, a refused token) is not cached, so the next
    notification asks again; an unreachable key service is a 503 (the channel retries).
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        ttl_s: float = PUBLIC_KEY_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._http = http
        self._ttl_s = ttl_s
        self._clock = clock
        self._keys: dict[tuple[str, str], tuple[float, ec.EllipticCurvePublicKey]] = {}

    async def key(self, connection: InboundConnection, kid: str) -> ec.EllipticCurvePublicKey | None:
        base_url = str(connection.channel_api.get("base_url", "")).rstrip("/")
        if not base_url:
            return None
        now = self._clock()
        cached = self._keys.get((base_url, kid))
        if cached is not None and now - cached[0] < self._ttl_s:
            return cached[1]
        try:
            answer = await self._http.get(
                base_url + PUBLIC_KEY_PATH.format(kid=kid),
                headers={
                    "Authorization": f"Bearer {await application_token(self._http, base_url, connection.channel_api)}"
                },
            )
        except httpx.HTTPError as exc:
            raise VerificationUnavailable(f"eBay public key service unreachable: {type(exc).__name__}") from exc
        if answer.status_code == 429 or answer.status_code >= 500:
            raise VerificationUnavailable(f"eBay public key service answered {answer.status_code}")
        if answer.status_code != 200:
            return None
        try:
            document = answer.json()
        except ValueError:
            return None
        pem = document.get("key") if isinstance(document, dict) else None
        key = ebay_public_key(pem) if isinstance(pem, str) else None
        if key is None:
            return None
        if len(self._keys) >= PUBLIC_KEY_CACHE_SIZE:
            self._keys.clear()  # bounded: kids come from unverified headers
        self._keys[(base_url, kid)] = (now, key)
        return key

    async def verify(self, connection: InboundConnection, headers: Mapping[str, str], body: bytes) -> bool:
        header = headers.get(SIGNATURE_HEADER)
        if not header:
            return False
        try:
            signature = orjson.loads(base64.b64decode(header, validate=True))
        except (binascii.Error, ValueError):
            return False
        if not isinstance(signature, dict):
            return False
        alg, digest = signature.get("alg"), signature.get("digest")
        if not isinstance(alg, str) or not isinstance(digest, str):
            return False
        if alg.lower() != "ecdsa" or digest.lower() != "sha1":
            return False
        kid, value = signature.get("kid"), signature.get("signature")
        if not isinstance(kid, str) or not isinstance(value, str) or not _is_key_id(kid):
            return False
        key = await self.key(connection, kid)
        return key is not None and verify_ecdsa_sha1(key, body, value)


def _is_key_id(kid: str) -> bool:
    # eBay's key ids are UUIDs; anything else never reaches the key service's URL.
    return 0 < len(kid) <= 64 and kid.replace("-", "").isalnum() and kid.isascii()


def parse(headers: Mapping[str, str], body: bytes) -> Notification:
    try:
        message = EbayNotification.model_validate_json(body)
    except ValidationError as exc:
        raise MalformedDelivery.from_validation(exc) from None
    order = message.notification.data
    cancelled = order.cancelStatus.cancelState == "CANCELED"
    reports: list[LineReport] = []
    skipped: list[str] = []
    for line in order.lineItems:
        if not line.sku or line.quantity == 0:
            skipped.append(line.lineItemId)
            continue
        shipped = line.quantity if line.lineItemFulfillmentStatus == "FULFILLED" else 0
        reports.append(
            LineReport(
                order.orderId,
                line.lineItemId,
                line.sku,
                line.quantity,
                shipped=shipped,
                cancelled=line.quantity - shipped if cancelled else 0,
            )
        )
    return Notification(message.notification.notificationId, message.metadata.topic, tuple(reports), tuple(skipped))
