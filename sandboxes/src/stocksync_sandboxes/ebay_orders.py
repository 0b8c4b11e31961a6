"""eBay order notifications (Notification API): JSON payload signed with an EC key.

As eBay's event-notification SDKs and their signed test message show:
`X-EBAY-SIGNATURE` is base64 of `{"alg":"ecdsa","kid":...,"signature":...,"digest":"SHA1"}`
(`alg` in lower case), the signature being ECDSA/SHA-1 (DER, base64) over the compact
JSON message, which is the body sent. The receiver fetches the public key of `kid` from
`GET /commerce/notification/v1/public_key/{kid}` (bearer token), which this sandbox
serves in eBay's shape: `{"algorithm": "ECDSA", "digest": "SHA1", "key": ...}`, the key
being PEM markers around base64 DER on one line. The order topic's name and data shape
are unverified (the data follows the Fulfillment API's order).
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import APIRouter, Header, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from stocksync_sandboxes.order_delivery import DeliveryResult, SandboxOrderLine, post_delivery

TOPIC = "ORDER_CHANGE"  # unverified
PUBLIC_KEY_PATH = "/commerce/notification/v1/public_key/{kid}"
FulfillmentStatus = Literal["NOT_STARTED", "IN_PROGRESS", "FULFILLED"]


class SigningKey:
    """eBay's notification key pair; the receiver only ever sees the public half."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey | None = None, kid: str | None = None) -> None:
        self.kid = kid or str(uuid.uuid4())
        self._key = private_key or ec.generate_private_key(ec.SECP256R1())

    @classmethod
    def from_pem(cls, pem: bytes, kid: str | None = None) -> SigningKey:
        """A key given as an unencrypted PEM EC private key (`openssl ecparam -genkey -name prime256v1`)."""
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("the eBay signing key must be an EC private key")
        return cls(key, kid)

    @property
    def public_pem(self) -> str:
        """The public key as eBay's getPublicKey writes it: markers and base64 DER on one line."""
        der = self._key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return f"-----BEGIN PUBLIC KEY-----{base64.b64encode(der).decode()}-----END PUBLIC KEY-----"

    def signature_header(self, body: bytes) -> str:
        """`body` must be the compact JSON message (what `deliver` sends)."""
        signature = base64.b64encode(self._key.sign(body, ec.ECDSA(hashes.SHA1()))).decode()
        return base64.b64encode(
            orjson.dumps({"alg": "ecdsa", "kid": self.kid, "signature": signature, "digest": "SHA1"})
        ).decode()


def build_notification(
    order_id: str, lines: Sequence[SandboxOrderLine], *, cancelled: bool = False, notification_id: str | None = None
) -> dict[str, Any]:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {
        "metadata": {"topic": TOPIC, "schemaVersion": "1.0", "deprecated": False},
        "notification": {
            "notificationId": notification_id or str(uuid.uuid4()),
            "eventDate": now,
            "publishDate": now,
            "publishAttemptCount": 1,
            "data": {
                "orderId": order_id,
                "orderFulfillmentStatus": "FULFILLED"
                if lines and all(line.shipped >= line.quantity for line in lines)
                else "NOT_STARTED",
                "cancelStatus": {"cancelState": "CANCELED" if cancelled else "NONE_REQUESTED"},
                "lineItems": [
                    {
                        "lineItemId": line.line_id or f"{uuid.uuid4().int % 10**12:012d}",
                        "sku": line.sku,
                        "quantity": line.quantity,
                        "lineItemFulfillmentStatus": "FULFILLED" if line.shipped >= line.quantity else "NOT_STARTED",
                    }
                    for line in lines
                ],
            },
        },
    }


async def deliver(url: str, notification: dict[str, Any], key: SigningKey) -> DeliveryResult:
    body = orjson.dumps(notification)
    return await post_delivery(
        url, body, {"Content-Type": "application/json", "X-EBAY-SIGNATURE": key.signature_header(body)}
    )


class SendOrder(BaseModel):
    model_config = ConfigDict(extra="forbid")
    webhook_url: str
    order_id: str = Field(default_factory=lambda: f"{uuid.uuid4().int % 10**2:02d}-{uuid.uuid4().int % 10**5:05d}")
    lines: list[SandboxOrderLine] = Field(min_length=1)
    cancelled: bool = False
    notification_id: str | None = None


def orders_router(key: SigningKey, access_token: str) -> APIRouter:
    """The public-key endpoint of the Notification API and `POST /_sandbox/orders`."""
    router = APIRouter(tags=["sandbox orders"])

    @router.get(PUBLIC_KEY_PATH)
    async def public_key(kid: str, authorization: Annotated[str | None, Header()] = None) -> dict[str, str]:
        if authorization != f"Bearer {access_token}":
            raise HTTPException(401, {"errors": [{"errorId": 1001, "message": "Invalid access token"}]})
        if kid != key.kid:
            raise HTTPException(404, {"errors": [{"errorId": 195001, "message": "The public key was not found"}]})
        return {"algorithm": "ECDSA", "digest": "SHA1", "key": key.public_pem}

    @router.post("/_sandbox/orders")
    async def send_order(body: SendOrder) -> dict[str, Any]:
        notification = build_notification(
            body.order_id, body.lines, cancelled=body.cancelled, notification_id=body.notification_id
        )
        result = await deliver(body.webhook_url, notification, key)
        return {
            "order_id": body.order_id,
            "event_id": notification["notification"]["notificationId"],
            "payload": notification,
            **result.as_json(),
        }

    return router
