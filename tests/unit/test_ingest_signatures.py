"""One verifier per scheme, over the raw body, accepting any current secret."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from stocksync_sandboxes import generic_orders, walmart_orders

from order_ingest.adapters.signatures import (
    verify_api_key,
    verify_ecdsa_sha1,
    verify_hmac_sha256_base64,
    verify_standard_webhooks,
    verify_walmart_hmac,
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


def test_walmart_signature_covers_method_path_timestamp_and_body() -> None:
    now_ms = int(time.time() * 1000)
    headers = walmart_orders.sign("secret-1", "/webhooks/walmart/c1", now_ms, BODY)
    common = {
        "method": "POST",
        "timestamp": headers["WM_SEC.TIMESTAMP"],
        "signature": headers["WM_SEC.SIGNATURE"],
        "now_ms": now_ms,
    }
    assert verify_walmart_hmac(["secret-1"], BODY, path_and_query="/webhooks/walmart/c1", **common)  # type: ignore[arg-type]
    assert not verify_walmart_hmac(["secret-1"], BODY, path_and_query="/webhooks/walmart/c2", **common)  # type: ignore[arg-type]
    assert not verify_walmart_hmac(["secret-2"], BODY, path_and_query="/webhooks/walmart/c1", **common)  # type: ignore[arg-type]


def test_ecdsa_sha1_verifies_ebay_style_signatures_over_the_raw_body() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    signature = base64.b64encode(key.sign(BODY, ec.ECDSA(hashes.SHA1()))).decode()
    assert verify_ecdsa_sha1(pem, BODY, signature)
    assert not verify_ecdsa_sha1(pem, BODY + b" ", signature)
    assert not verify_ecdsa_sha1(pem, BODY, "not base64!")
