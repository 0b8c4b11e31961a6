"""Signature verifiers, one per scheme, each in constant time over the raw body.

Every verifier accepts any of a connection's current secrets, so a secret can be
rotated with an overlap, and compares against every secret without an early exit, so
timing says nothing about which secret matched.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_public_key

# Standard Webhooks: a timestamp further than this from now is refused (replay window).
STANDARD_WEBHOOKS_TOLERANCE_S = 5 * 60


def _hmac_sha256_base64(key: bytes, message: bytes) -> str:
    return base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode()


def verify_hmac_sha256_base64(secrets: Iterable[str], body: bytes, signature: str | None) -> bool:
    """Shopify's and WooCommerce's scheme: base64(HMAC-SHA256(secret, raw body))."""
    if not signature:
        return False
    matched = False
    for secret in secrets:
        matched |= hmac.compare_digest(_hmac_sha256_base64(secret.encode(), body).encode(), signature.strip().encode())
    return matched


def standard_webhooks_key(secret: str) -> bytes:
    """A Standard Webhooks secret is `whsec_` + base64 of the key; a bare string is the key."""
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except binascii.Error:
            pass
    return secret.encode()


def verify_standard_webhooks(
    secrets: Iterable[str],
    body: bytes,
    *,
    webhook_id: str | None,
    timestamp: str | None,
    signatures: str | None,
    now: float,
    tolerance_s: float = STANDARD_WEBHOOKS_TOLERANCE_S,
) -> bool:
    """Standard Webhooks: `v1,<base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}"))>`.

    The `webhook-signature` header is a space-separated list (the sender signs with
    several keys while it rotates); one match with any current secret is enough.
    """
    if not webhook_id or not timestamp or not signatures or not _is_decimal(timestamp):
        return False
    if abs(now - int(timestamp)) > tolerance_s:
        return False
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    offered = [item.split(",", 1)[1] for item in signatures.split() if item.startswith("v1,")]
    matched = False
    for secret in secrets:
        expected = _hmac_sha256_base64(standard_webhooks_key(secret), signed)
        for candidate in offered:
            matched |= hmac.compare_digest(expected.encode(), candidate.encode())
    return matched


def verify_api_key(expected_keys: Iterable[str], presented: str | None) -> bool:
    """A shared API key in a header (Amazon's EventBridge API destination)."""
    if not presented:
        return False
    matched = False
    for key in expected_keys:
        matched |= hmac.compare_digest(key.encode(), presented.encode())
    return matched


# Walmart's HMAC scheme (unverified against Walmart's documentation, which only says
# "HMACSHA256 and clientSecret"): the signature covers method, path and query, the
# WM_SEC.TIMESTAMP header and the hex SHA-256 of the raw body, one per line.
def walmart_signing_string(method: str, path_and_query: str, timestamp: str, body: bytes) -> bytes:
    return f"{method.upper()}\n{path_and_query}\n{timestamp}\n{hashlib.sha256(body).hexdigest()}".encode()


def verify_walmart_hmac(
    secrets: Iterable[str],
    body: bytes,
    *,
    method: str,
    path_and_query: str,
    timestamp: str | None,
    signature: str | None,
    now_ms: int,
    tolerance_s: float = STANDARD_WEBHOOKS_TOLERANCE_S,
) -> bool:
    if not timestamp or not signature or not _is_decimal(timestamp):
        return False
    if abs(now_ms - int(timestamp)) > tolerance_s * 1000:
        return False
    signed = walmart_signing_string(method, path_and_query, timestamp, body)
    matched = False
    for secret in secrets:
        matched |= hmac.compare_digest(
            _hmac_sha256_base64(secret.encode(), signed).encode(), signature.strip().encode()
        )
    return matched


def verify_ecdsa_sha1(public_key_pem: str, body: bytes, signature_b64: str) -> bool:
    """eBay's scheme: ECDSA with SHA-1 over the raw body, DER signature in base64.

    Public-key signatures have no secret to leak through timing; the library verifies.
    """
    try:
        key = load_pem_public_key(public_key_pem.encode())
        if not isinstance(key, ec.EllipticCurvePublicKey):
            return False
        key.verify(base64.b64decode(signature_b64), body, ec.ECDSA(hashes.SHA1()))
        return True
    except (InvalidSignature, ValueError, binascii.Error):
        return False


def _is_decimal(value: str) -> bool:
    # str.isdigit alone takes "²", which int() refuses. Headers compare as bytes for the
    # same reason: compare_digest refuses str with non-ASCII characters.
    return value.isascii() and value.isdigit()
