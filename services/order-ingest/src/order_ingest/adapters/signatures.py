"""Signature verifiers, one per scheme, each in constant time over the raw body."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable


def verify_hmac_sha256_base64(secrets: Iterable[str], body: bytes, signature: str | None) -> bool:
    """Shopify's and WooCommerce's scheme: base64(HMAC-SHA256(secret, raw body)).

    Any of the connection's current secrets is accepted, so a secret can be rotated
    with an overlap.
    """
    if not signature:
        return False
    matched = False
    for secret in secrets:
        expected = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
        # No early exit: every secret is compared, so timing says nothing about which.
        matched |= hmac.compare_digest(expected, signature.strip())
    return matched
