import asyncio
import uuid

import pytest

from stocksync_common.auth import (
    ApiKeyOwner,
    ApiKeysUnavailable,
    ApiKeyVerifier,
    LedgerKeyLookup,
    api_key_id,
    is_legacy_api_key,
    issue_api_key,
    key_digest,
    new_api_key,
    verify_api_key,
)
from stocksync_embedded.stack import free_port


def test_issued_key_names_its_merchant() -> None:
    merchant = uuid.uuid4()
    for _ in range(200):  # macs with "_" and "-" in them too
        assert verify_api_key("secret", issue_api_key("secret", merchant)) == merchant


def test_key_signed_with_another_secret_is_refused() -> None:
    assert verify_api_key("secret", issue_api_key("other", uuid.uuid4())) is None


def test_key_with_another_merchant_id_is_refused() -> None:
    key = issue_api_key("secret", uuid.uuid4())
    forged = "_".join(["ssk", uuid.uuid4().hex, *key.split("_", 3)[2:]])
    assert verify_api_key("secret", forged) is None


def test_garbage_is_refused() -> None:
    for garbage in ["", "ssk", "ssk_zz_1_2", "Bearer x", "ssk_" + "0" * 32 + "_x"]:
        assert verify_api_key("secret", garbage) is None


# ---- stored keys: their form and the verifier's cache ----------------------------------


def test_a_new_key_shows_its_key_id_and_its_digest_is_not_the_key() -> None:
    key, key_id = new_api_key()
    assert key.startswith(f"ssk2_{key_id}_") and len(key_id) == 16
    assert api_key_id(key) == key_id
    assert key_digest(key) != key and key not in key_digest(key)
    assert not is_legacy_api_key(key)
    legacy = issue_api_key("secret", uuid.uuid4())
    assert is_legacy_api_key(legacy) and api_key_id(legacy) == legacy.split("_")[2]


class CountingLookup:
    """The stock-ledger's answers, counted: the cache must spare it repeated questions."""

    def __init__(self, valid: dict[str, ApiKeyOwner]) -> None:
        self.valid = valid
        self.asked: list[str] = []

    async def __call__(self, api_key: str) -> ApiKeyOwner | None:
        self.asked.append(api_key)
        return self.valid.get(api_key)


async def test_answers_are_cached_for_their_ttl_and_refusals_too() -> None:
    key, key_id = new_api_key()
    owner = ApiKeyOwner(uuid.uuid4(), key_id)
    lookup = CountingLookup({key: owner})
    verifier = ApiKeyVerifier(lookup, ttl_s=60, negative_ttl_s=60)
    assert [await verifier.verify(key) for _ in range(3)] == [owner] * 3
    assert [await verifier.verify("ssk2_0000000000000000_x") for _ in range(3)] == [None] * 3
    assert len(lookup.asked) == 2
    verifier.clear()  # a revocation on this instance
    lookup.valid.clear()
    assert await verifier.verify(key) is None


async def test_a_revoked_key_is_refused_once_its_cached_answer_expires() -> None:
    key, key_id = new_api_key()
    lookup = CountingLookup({key: ApiKeyOwner(uuid.uuid4(), key_id)})
    verifier = ApiKeyVerifier(lookup, ttl_s=0.05, negative_ttl_s=0.05)
    assert await verifier.verify(key) is not None
    lookup.valid.clear()
    await asyncio.sleep(0.06)  # the TTL itself is what is under test
    assert await verifier.verify(key) is None


async def test_the_cache_is_bounded_and_forgets_the_oldest() -> None:
    lookup = CountingLookup({})
    verifier = ApiKeyVerifier(lookup, ttl_s=60, negative_ttl_s=60, max_entries=3)
    for n in range(5):
        await verifier.verify(f"ssk2_{n:016x}_x")
    await verifier.verify(f"ssk2_{0:016x}_x")
    assert len(lookup.asked) == 6


async def test_input_no_key_can_be_is_refused_without_a_lookup() -> None:
    lookup = CountingLookup({})
    verifier = ApiKeyVerifier(lookup, ttl_s=60, negative_ttl_s=60)
    for garbage in ["", "x" * 201, "ssk2_é_x", "ssk2_\x00_x"]:
        assert await verifier.verify(garbage) is None
    assert lookup.asked == []


async def test_an_unreachable_stock_ledger_is_unavailable_not_a_refusal() -> None:
    lookup = LedgerKeyLookup(f"http://127.0.0.1:{free_port()}", timeout_s=2)
    verifier = ApiKeyVerifier(lookup, ttl_s=60, negative_ttl_s=60)
    try:
        with pytest.raises(ApiKeysUnavailable):
            await verifier.verify(new_api_key()[0])
    finally:
        await lookup.close()
