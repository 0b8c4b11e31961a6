"""eBay notification signatures, checked against eBay's own signed test message.

The vector is eBay's: repository eBay/event-notification-nodejs-sdk, file test/test.json
(entries VALID, SIGNATURE_MISMATCH, INVALID), commit
feaf3378ca263a81432cf5b8c8a6fd8cb3d3e2f3. That SDK verifies with `ssl3-sha1`
(ECDSA over SHA-1, DER signature in base64) over `JSON.stringify(message)`, the compact
JSON message; the key comes back from getPublicKey as PEM markers around base64 DER on
one line. eBay's Java SDK (eBay/event-notification-java-sdk, SignatureValidator.java)
does the same with `SHA1withECDSA` over Jackson's compact serialisation.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import httpx
import orjson
import pytest

from stocksync_sandboxes import ebay_orders
from stocksync_sandboxes.order_delivery import SandboxOrderLine

from order_ingest.adapters.channels import VerificationUnavailable, ebay
from order_ingest.adapters.channels.ebay import PUBLIC_KEY_PATH, EbayPublicKeys
from order_ingest.adapters.signatures import ebay_public_key, verify_ecdsa_sha1
from order_ingest.domain.connections import InboundConnection

# eBay's test vector, verbatim (test/test.json, "VALID").
EBAY_SIGNATURE_HEADER = (
    "eyJhbGciOiJlY2RzYSIsImtpZCI6Ijk5MzYyNjFhLTdkN2ItNDYyMS1hMGYxLTk2Y2NiNDI4YWY0OSIsInNpZ25hdHVyZSI6Ik1FWUNJUUNm"
    "eGZJV3V4bVdjSUJRSjljNS9YN2lHREpxczJSQ0dzQkVhQWppbnlycmZBSWhBSVY2d0djVGlCdVY1S0pVaWYyaG9reXJMK1E5c3NIa2FkK214"
    "Mm5FRTI1dyIsImRpZ2VzdCI6IlNIQTEifQ=="
)
EBAY_MESSAGE: dict[str, Any] = {
    "metadata": {"topic": "MARKETPLACE_ACCOUNT_DELETION", "schemaVersion": "1.0", "deprecated": False},
    "notification": {
        "notificationId": "49feeaeb-4982-42d9-a377-9645b8479411_33f7e043-fed8-442b-9d44-791923bd9a6d",
        "eventDate": "2021-03-19T20:43:59.462Z",
        "publishDate": "2021-03-19T20:43:59.679Z",
        "publishAttemptCount": 1,
        "data": {
            "username": "test_user",
            "userId": "ma8vp1jySJC",
            "eiasToken": "nY+sHZ2PrBmdj6wVnY+sEZ2PrA2dj6wJnY+gAZGEpwmdj6x9nY+seQ==",
        },
    },
}
EBAY_PUBLIC_KEY_RESPONSE = {
    "key": "-----BEGIN PUBLIC KEY-----MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEZhhxXKtR+TOvtDbgTPCkSof02qgBB7IsYOyf76ilExJ/"
    "upAa/vKIKheOoCyOpcLmi4t0b4uepb7LLjmMr90FUg==-----END PUBLIC KEY-----",
    "algorithm": "ECDSA",
    "digest": "SHA1",
}
EBAY_KID = "9936261a-7d7b-4621-a0f1-96ccb428af49"
# "SIGNATURE_MISMATCH": the same message, another signature.
EBAY_MISMATCHED_SIGNATURE_HEADER = (
    "eyJhbGciOiJlY2RzYSIsImtpZCI6Ijk5MzYyNjFhLTdkN2ItNDYyMS1hMGYxLTk2Y2NiNDI4YWY0OSIsInNpZ25hdHVyZSI6Ik1FVUNJUUNH"
    "Y1NubUFrVGZyK1paMlZnMGJXRW9zOGEvdGVCcWk3UGU2OCtoR21MTUNRSWdlRnZrcnRvKzhkczhSVndJM0dnbjFtTUdDck5NRVpKM1NSbE8y"
    "ZngveHFJPSIsImRpZ2VzdCI6IlNIQTEifQ=="
)
# JSON.stringify(message): what eBay signed, and the body it sends.
BODY = json.dumps(EBAY_MESSAGE, separators=(",", ":")).encode()


class KeyService:
    """eBay's getPublicKey as an HTTP handler, counting the calls it answers."""

    def __init__(self, status_code: int = 200) -> None:
        self.status_code = status_code
        self.calls = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        assert request.url.path == PUBLIC_KEY_PATH.format(kid=EBAY_KID)
        assert request.headers["authorization"] == "Bearer app-token"
        if self.status_code != 200:
            return httpx.Response(self.status_code, json={"errors": [{"errorId": 195001}]})
        return httpx.Response(200, json=EBAY_PUBLIC_KEY_RESPONSE)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


CONNECTION = InboundConnection(
    connection_id=uuid.uuid4(),
    merchant_id=uuid.uuid4(),
    channel_type="ebay",
    webhook_secrets=(),
    channel_api={"base_url": "https://api.ebay.example", "access_token": "app-token"},
)


def keys(service: KeyService, clock: Clock | None = None) -> EbayPublicKeys:
    return EbayPublicKeys(httpx.AsyncClient(transport=httpx.MockTransport(service)), clock=clock or Clock())


def header(**changes: str) -> str:
    fields = orjson.loads(base64.b64decode(EBAY_SIGNATURE_HEADER))
    return base64.b64encode(orjson.dumps({**fields, **changes})).decode()


def test_ebays_signed_test_message_verifies_with_ebays_key() -> None:
    key = ebay_public_key(EBAY_PUBLIC_KEY_RESPONSE["key"])
    assert key is not None
    signature = orjson.loads(base64.b64decode(EBAY_SIGNATURE_HEADER))
    assert signature["alg"] == "ecdsa"  # lower case, as eBay writes it
    assert verify_ecdsa_sha1(key, BODY, signature["signature"])


def test_ebays_mismatched_signature_and_a_tampered_message_are_refused() -> None:
    key = ebay_public_key(EBAY_PUBLIC_KEY_RESPONSE["key"])
    assert key is not None
    mismatched = orjson.loads(base64.b64decode(EBAY_MISMATCHED_SIGNATURE_HEADER))["signature"]
    assert not verify_ecdsa_sha1(key, BODY, mismatched)
    valid = orjson.loads(base64.b64decode(EBAY_SIGNATURE_HEADER))["signature"]
    tampered = BODY.replace(b'"publishAttemptCount":1', b'"publishAttemptCount":1000')
    assert not verify_ecdsa_sha1(key, tampered, valid)


async def test_the_notification_verifies_end_to_end_with_the_key_fetched_from_ebay() -> None:
    service = KeyService()
    assert await keys(service).verify(CONNECTION, {"x-ebay-signature": EBAY_SIGNATURE_HEADER}, BODY)
    assert service.calls == 1


async def test_a_reindented_body_verifies_in_its_compact_form() -> None:
    pretty = json.dumps(EBAY_MESSAGE, indent=2).encode()
    assert await keys(KeyService()).verify(CONNECTION, {"x-ebay-signature": EBAY_SIGNATURE_HEADER}, pretty)


@pytest.mark.parametrize(
    ("alg", "digest", "accepted"),
    [("ECDSA", "sha1", True), ("Ecdsa", "SHA1", True), ("rsa", "SHA1", False), ("ecdsa", "SHA256", False)],
)
async def test_alg_and_digest_are_compared_without_regard_to_case(alg: str, digest: str, accepted: bool) -> None:
    signed = header(alg=alg, digest=digest)
    assert await keys(KeyService()).verify(CONNECTION, {"x-ebay-signature": signed}, BODY) is accepted


async def test_a_header_that_is_not_ebays_is_refused_without_calling_ebay() -> None:
    service = KeyService()
    public_keys = keys(service)
    for bad in ("", "not base64!", base64.b64encode(b"[1]").decode(), header(kid="../../x"), header(kid="a" * 65)):
        assert not await public_keys.verify(CONNECTION, {"x-ebay-signature": bad}, BODY)
    assert service.calls == 0


async def test_the_public_key_is_cached_for_an_hour_then_fetched_again() -> None:
    service, clock = KeyService(), Clock()
    public_keys = keys(service, clock)
    headers = {"x-ebay-signature": EBAY_SIGNATURE_HEADER}
    assert await public_keys.verify(CONNECTION, headers, BODY)
    clock.now += 3599
    assert await public_keys.verify(CONNECTION, headers, BODY)
    assert service.calls == 1
    clock.now += 2
    assert await public_keys.verify(CONNECTION, headers, BODY)
    assert service.calls == 2


async def test_an_unknown_key_is_refused_and_asked_again_next_time() -> None:
    service = KeyService(status_code=404)
    public_keys = keys(service)
    headers = {"x-ebay-signature": EBAY_SIGNATURE_HEADER}
    assert not await public_keys.verify(CONNECTION, headers, BODY)
    assert not await public_keys.verify(CONNECTION, headers, BODY)
    assert service.calls == 2


async def test_a_key_service_that_fails_makes_the_signature_unverifiable_not_invalid() -> None:
    with pytest.raises(VerificationUnavailable):
        await keys(KeyService(status_code=503)).verify(CONNECTION, {"x-ebay-signature": EBAY_SIGNATURE_HEADER}, BODY)


async def test_the_sandbox_signs_and_serves_its_key_the_way_ebay_does() -> None:
    signing_key = ebay_orders.SigningKey(kid=EBAY_KID)
    notification = ebay_orders.build_notification("12-34567", [SandboxOrderLine(sku="EB-1", quantity=1)])
    body = orjson.dumps(notification)
    signature_header = signing_key.signature_header(body)
    fields = orjson.loads(base64.b64decode(signature_header))
    assert (fields["alg"], fields["digest"], fields["kid"]) == ("ecdsa", "SHA1", EBAY_KID)
    assert body == json.dumps(notification, separators=(",", ":")).encode()  # compact, like JSON.stringify
    pem = signing_key.public_pem
    assert pem.startswith("-----BEGIN PUBLIC KEY-----M") and "\n" not in pem

    def serve_sandbox_key(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"algorithm": "ECDSA", "digest": "SHA1", "key": pem})

    public_keys = EbayPublicKeys(httpx.AsyncClient(transport=httpx.MockTransport(serve_sandbox_key)))
    assert await public_keys.verify(CONNECTION, {"x-ebay-signature": signature_header}, body)
    changed = body.replace(b'"quantity":1', b'"quantity":9')
    assert changed != body
    assert not await public_keys.verify(CONNECTION, {"x-ebay-signature": signature_header}, changed)


async def test_a_key_duplicated_in_front_of_the_signed_one_cannot_change_what_is_read() -> None:
    signing_key = ebay_orders.SigningKey(kid=EBAY_KID)
    body = orjson.dumps(ebay_orders.build_notification("12-34567", [SandboxOrderLine(sku="SIGNED", quantity=1)]))
    signature_header = signing_key.signature_header(body)
    smuggled = body.replace(b'"sku":"SIGNED"', b'"sku":"SMUGGLED","sku":"SIGNED"')

    def serve_sandbox_key(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"algorithm": "ECDSA", "digest": "SHA1", "key": signing_key.public_pem})

    public_keys = EbayPublicKeys(httpx.AsyncClient(transport=httpx.MockTransport(serve_sandbox_key)))
    # Its compact form is the signed message, so it verifies; what is read is what was signed.
    assert await public_keys.verify(CONNECTION, {"x-ebay-signature": signature_header}, smuggled)
    assert [line.sku for line in ebay.parse({}, smuggled).lines] == ["SIGNED"]
