"""Standard Webhooks (standardwebhooks.com), signing and verifying, written once.

`webhook-signature: v1,<base64(HMAC-SHA256(key, "{webhook-id}.{webhook-timestamp}.{raw body}"))>`,
a space-separated list while the sender rotates keys; the secret is `whsec_` + base64
of the key (docs/channels-protocols.md, "Generic"). order-ingest verifies what the
merchant's own shop or ERP sends; channel-publisher signs the quantities it sends to a
generic endpoint. The sandboxes keep an implementation of their own on purpose: they
stand in for the other side, and a shared mistake would pass unseen.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable

# A timestamp further than this from now is refused (the replay window).
TOLERANCE_S = 5 * 60


def key_of(secret: str) -> bytes:
    """A secret is `whsec_` + base64 of the key; a bare string is the key."""
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except binascii.Error:
            pass
    return secret.encode()


def _signature(key: bytes, webhook_id: str, timestamp: str, body: bytes) -> str:
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    return base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value for one secret."""
    return "v1," + _signature(key_of(secret), webhook_id, str(timestamp), body)


def verify(
    secrets: Iterable[str],
    body: bytes,
    *,
    webhook_id: str | None,
    timestamp: str | None,
    signatures: str | None,
    now: float,
    tolerance_s: float = TOLERANCE_S,
) -> bool:
    """Whether one `v1` signature of the header matches one of the current secrets.

    Compared in constant time against every secret without an early exit, so timing
    says nothing about which secret matched.
    """
    # str.isdigit alone takes "²", which int() refuses; headers compare as bytes because
    # compare_digest refuses str with non-ASCII characters.
    if not webhook_id or not timestamp or not signatures or not (timestamp.isascii() and timestamp.isdigit()):
        return False
    if abs(now - int(timestamp)) > tolerance_s:
        return False
    offered = [item.split(",", 1)[1] for item in signatures.split() if item.startswith("v1,")]
    matched = False
    for secret in secrets:
        expected = _signature(key_of(secret), webhook_id, timestamp, body)
        for candidate in offered:
            matched |= hmac.compare_digest(expected.encode(), candidate.encode())
    return matched
