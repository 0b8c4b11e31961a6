"""One verifier per scheme, over the raw body, accepting any current secret."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from stocksync_common.standard_webhooks import verify as verify_standard_webhooks
from stocksync_sandboxes import generic_orders, walmart_orders

from order_ingest.adapters.signatures import (
    ebay_public_key,
    verify_api_key,
    verify_ecdsa_sha1,
    verify_hmac_sha256_base64,
    verify_hmac_sha256_of_body,
)

BODY = b'{"id": 1, "line_items": []}'


def test_hmac_sha256_accepts_either_secret_during_a_rotation_and_nothing_else() -> None:
    signature = base64.b64encode(hmac.new(b"old-secret", BODY, hashlib.sha256).digest()).decode()
    assert verify_hmac_sha256_base64(["new-secret", "old-secret"], BODY, signature)
    assert not verify_hmac_sha256_base64(["new-secret"], BODY, signature)
    assert not verify_hmac_sha256_base64(["old-secret"], BODY + b" ", signature)
    assert not verify_hmac_sha256_base64(["old-secret"], BODY, None)


def test_standard_webhooks_signature_from_the_sandbox_verifies_with_a_whsec_secret() -> None:
    secret = generic_orders.new_secret()
    now = int(time.time())
    headers = generic_orders.sign("msg_1", now, BODY, [secret])
    assert verify_standard_webhooks(
        [secret], BODY, webhook_id="msg_1", timestamp=str(now), signatures=headers["webhook-signature"], now=now
    )
    # Another id, another body or another key: refused.
    assert not verify_standard_webhooks(
        [secret], BODY, webhook_id="msg_2", timestamp=str(now), signatures=headers["webhook-signature"], now=now
    )
    assert not verify_standard_webhooks(
        [secret], BODY + b"x", webhook_id="msg_1", timestamp=str(now), signatures=headers["webhook-signature"], now=now
    )
    assert not verify_standard_webhooks(
        [generic_orders.new_secret()],
        BODY,
        webhook_id="msg_1",
        timestamp=str(now),
        signatures=headers["webhook-signature"],
        now=now,
    )


def test_standard_webhooks_accepts_any_of_several_signatures_while_the_sender_rotates() -> None:
    old, new = generic_orders.new_secret(), generic_orders.new_secret()
    now = int(time.time())
    both = generic_orders.sign("msg_1", now, BODY, [new, old])["webhook-signature"]
    assert len(both.split()) == 2
    assert verify_standard_webhooks([old], BODY, webhook_id="msg_1", timestamp=str(now), signatures=both, now=now)
    assert verify_standard_webhooks([new], BODY, webhook_id="msg_1", timestamp=str(now), signatures=both, now=now)


def test_standard_webhooks_refuses_a_timestamp_more_than_five_minutes_away() -> None:
    secret = generic_orders.new_secret()
    now = int(time.time())
    for sent_at, accepted in ((now - 299, True), (now - 301, False), (now + 301, False)):
        signatures = generic_orders.sign("msg_1", sent_at, BODY, [secret])["webhook-signature"]
        assert (
            verify_standard_webhooks(
                [secret], BODY, webhook_id="msg_1", timestamp=str(sent_at), signatures=signatures, now=now
            )
            is accepted
        )


def test_api_key_must_match_exactly() -> None:
    assert verify_api_key(["k" * 20], "k" * 20)
    assert not verify_api_key(["k" * 20], "k" * 19)
    assert not verify_api_key(["k" * 20], None)


def test_walmart_hmac_is_of_the_complete_body_in_hex_or_base64() -> None:
    # Walmart: "HMACSHA256 of complete response, using clientSecret as key" (encoding unstated).
    digest = hmac.new(b"client-secret", BODY, hashlib.sha256).digest()
    for value in (base64.b64encode(digest).decode(), digest.hex(), digest.hex().upper(), f"HMACSHA256 {digest.hex()}"):
        assert verify_hmac_sha256_of_body(["other", "client-secret"], BODY, value), value
    sandbox = walmart_orders.sign("client-secret", BODY)["Authorization"]
    assert verify_hmac_sha256_of_body(["client-secret"], BODY, sandbox)
    assert verify_hmac_sha256_of_body(
        ["client-secret"], BODY, walmart_orders.sign("client-secret", BODY, encoding="hex")["Authorization"]
    )
    assert not verify_hmac_sha256_of_body(["client-secret"], BODY + b" ", sandbox)
    assert not verify_hmac_sha256_of_body(["another-secret"], BODY, sandbox)
    for bad in (None, "", "abc", base64.b64encode(digest[:16]).decode(), "z" * 64):
        assert not verify_hmac_sha256_of_body(["client-secret"], BODY, bad)


def test_ecdsa_sha1_verifies_ebay_style_signatures_over_the_compact_message() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    signature = base64.b64encode(key.sign(BODY, ec.ECDSA(hashes.SHA1()))).decode()
    assert verify_ecdsa_sha1(key.public_key(), BODY, signature)
    assert not verify_ecdsa_sha1(key.public_key(), BODY.replace(b"1", b"2"), signature)
    assert not verify_ecdsa_sha1(key.public_key(), BODY, "not base64!")
    assert not verify_ecdsa_sha1(ec.generate_private_key(ec.SECP256R1()).public_key(), BODY, signature)


def test_an_ebay_key_is_read_on_one_line_as_ebay_writes_it_or_as_a_proper_pem() -> None:
    public = ec.generate_private_key(ec.SECP256R1()).public_key()
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    one_line = pem.replace("\n", "")
    for text in (pem, one_line):
        key = ebay_public_key(text)
        assert key is not None and key.public_numbers() == public.public_numbers()
    assert ebay_public_key("-----BEGIN PUBLIC KEY-----not a key-----END PUBLIC KEY-----") is None
