"""Signature verifiers, one per scheme, each in constant time over the raw body.

Standard Webhooks, which channel-publisher signs with too, is stocksync_common.standard_webhooks.

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

import orjson
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key


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


def verify_api_key(expected_keys: Iterable[str], presented: str | None) -> bool:
    """A shared API key in a header (Amazon's EventBridge API destination)."""
    if not presented:
        return False
    matched = False
    for key in expected_keys:
        matched |= hmac.compare_digest(key.encode(), presented.encode())
    return matched


# Walmart's notification HMAC (authMethod `HMAC` of a Notifications API subscription):
# "HMACSHA256 of complete response, using clientSecret as key", sent in the header the
# subscriber names as `authHeaderName` (developer.walmart.com, us-marketplace reference
# "Create subscription"). Walmart does not say how the 32 bytes are written (unverified):
# hex and base64 are both accepted, and a leading scheme word ("HMACSHA256 <value>") is
# ignored. Either way the value must be the MAC of the exact body with a current secret.
def _mac_from_header(value: str) -> bytes | None:
    token = value.strip().rsplit(None, 1)[-1] if value.strip() else ""
    if len(token) == 64:
        try:
            return bytes.fromhex(token)
        except ValueError:
            return None
    try:
        decoded = base64.b64decode(token, validate=True)
    except (binascii.Error, ValueError):
        return None
    return decoded if len(decoded) == hashlib.sha256().digest_size else None


def verify_hmac_sha256_of_body(secrets: Iterable[str], body: bytes, header_value: str | None) -> bool:
    """Walmart's scheme: HMAC-SHA256(client secret, complete body), hex or base64."""
    presented = _mac_from_header(header_value) if header_value else None
    if presented is None:
        return False
    matched = False
    for secret in secrets:
        matched |= hmac.compare_digest(hmac.new(secret.encode(), body, hashlib.sha256).digest(), presented)
    return matched


def ebay_public_key(key: str) -> ec.EllipticCurvePublicKey | None:
    """An eBay public key as getPublicKey returns it: PEM markers around base64 DER on one
    line (`-----BEGIN PUBLIC KEY-----MFkw...-----END PUBLIC KEY-----`), or a proper PEM."""
    der_b64 = "".join(key.replace("-----BEGIN PUBLIC KEY-----", "").replace("-----END PUBLIC KEY-----", "").split())
    try:
        public_key = load_der_public_key(base64.b64decode(der_b64, validate=True))
    except (binascii.Error, ValueError, UnsupportedAlgorithm):
        return None
    return public_key if isinstance(public_key, ec.EllipticCurvePublicKey) else None


def ebay_signed_forms(body: bytes) -> list[bytes]:
    """What an eBay signature may cover: eBay's SDKs verify the compact JSON serialisation
    of the parsed message (Node `JSON.stringify(message)`, Java `ObjectMapper.writeValueAsString`),
    which is the body as eBay sends it; a body re-indented on the way is accepted in its
    compact form too. The compact form is made from the parsed body, and the body is read
    by a parser that also keeps the last of duplicated keys, so what is read is what was
    signed."""
    forms = [body]
    try:
        compact = orjson.dumps(orjson.loads(body))
    except orjson.JSONDecodeError:
        return forms
    if compact != body:
        forms.append(compact)
    return forms


def verify_ecdsa_sha1(public_key: ec.EllipticCurvePublicKey, body: bytes, signature_b64: str) -> bool:
    """eBay's scheme: ECDSA with SHA-1 (DER signature, base64) over the compact JSON message.

    Public-key signatures have no secret to leak through timing; the library verifies.
    """
    try:
        signature = base64.b64decode(signature_b64, validate=True)
    except (binascii.Error, ValueError):
        return False
    for signed in ebay_signed_forms(body):
        try:
            public_key.verify(signature, signed, ec.ECDSA(hashes.SHA1()))
            return True
        except InvalidSignature:
            continue
    return False
