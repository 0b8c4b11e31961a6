"""The stock-ledger's API key store against the real database: keys stored as digests,
revocable, rotatable with a grace period, last use written at most once a minute, legacy
keys taken over on first use."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from stocksync_common.auth import issue_api_key, key_digest
from stocksync_common.contracts import utcnow
from stocksync_common.db import make_engine

from stock_ledger.adapters.api_key_store import ApiKeyStore
from stock_ledger.adapters.tables import api_keys, merchants

pytestmark = pytest.mark.integration

LEGACY_SECRET = "legacy-secret-for-tests"


@pytest.fixture(scope="module")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
def store(engine: AsyncEngine) -> ApiKeyStore:
    return ApiKeyStore(engine, LEGACY_SECRET)


async def _row(engine: AsyncEngine, key_id: str) -> sa.Row[tuple[object, ...]]:
    async with engine.connect() as conn:
        return (await conn.execute(sa.select(api_keys).where(api_keys.c.key_id == key_id))).one()


async def test_a_created_key_verifies_and_only_its_digest_is_stored(store: ApiKeyStore, engine: AsyncEngine) -> None:
    merchant = uuid.uuid4()
    stored, key = await store.create(merchant, "ERP")
    owner = await store.verify(key)
    assert owner is not None and (owner.merchant_id, owner.key_id) == (merchant, stored.key_id)
    row = await _row(engine, stored.key_id)
    assert row.digest == key_digest(key) and key not in str(tuple(row))
    # The right key id with a wrong secret is refused.
    assert await store.verify(key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")) is None


async def test_a_new_merchant_is_stored_with_a_first_key_that_acts_as_it(
    store: ApiKeyStore, engine: AsyncEngine
) -> None:
    merchant_id, key = await store.create_merchant("Corner shop")
    owner = await store.verify(key)
    assert owner is not None and owner.merchant_id == merchant_id
    async with engine.connect() as conn:
        name = await conn.scalar(sa.select(merchants.c.name).where(merchants.c.merchant_id == merchant_id))
    assert name == "Corner shop"
    assert [k.name for k in await store.list(merchant_id, 10)] == ["creation key"]


async def test_last_use_is_written_once_a_minute_at_most(store: ApiKeyStore, engine: AsyncEngine) -> None:
    stored, key = await store.create(uuid.uuid4(), "busy")
    await store.verify(key)
    first = (await _row(engine, stored.key_id)).last_used_at
    assert first is not None
    for _ in range(5):
        await store.verify(key)
    assert (await _row(engine, stored.key_id)).last_used_at == first
    # Another instance (a fresh store) does not write either within the minute.
    await ApiKeyStore(engine, LEGACY_SECRET).verify(key)
    assert (await _row(engine, stored.key_id)).last_used_at == first


async def test_a_revoked_key_is_refused_and_the_last_active_key_cannot_be_revoked(store: ApiKeyStore) -> None:
    merchant = uuid.uuid4()
    first, first_key = await store.create(merchant, "first")
    second, second_key = await store.create(merchant, "second")
    revoked = await store.revoke(merchant, first.key_id)
    assert revoked and not isinstance(revoked, bool) and revoked.revoked_at is not None
    assert await store.verify(first_key) is None
    assert await store.revoke(merchant, second.key_id) is False  # the last one
    assert await store.verify(second_key) is not None
    assert await store.revoke(merchant, first.key_id) is None  # already revoked
    assert await store.revoke(uuid.uuid4(), second.key_id) is None  # another merchant's: unknown


async def test_rotation_keeps_the_old_key_for_the_grace_period_or_revokes_it_at_once(store: ApiKeyStore) -> None:
    merchant = uuid.uuid4()
    old, old_key = await store.create(merchant, "nightly")
    rotated = await store.rotate(merchant, old.key_id, timedelta(hours=1))
    assert rotated is not None
    new, new_key = rotated
    assert new.name == "nightly" and new.key_id != old.key_id
    assert await store.verify(old_key) is not None and await store.verify(new_key) is not None
    listed = {key.key_id: key for key in await store.list(merchant, 10)}
    assert listed[old.key_id].replaced_by == new.key_id
    expires_at = listed[old.key_id].expires_at
    assert expires_at is not None and timedelta(minutes=59) < expires_at - utcnow() <= timedelta(hours=1)

    again = await store.rotate(merchant, new.key_id, timedelta(0))
    assert again is not None
    assert await store.verify(new_key) is None and await store.verify(again[1]) is not None
    assert await store.rotate(uuid.uuid4(), again[0].key_id, timedelta(0)) is None


async def test_the_list_pages_newest_first(store: ApiKeyStore) -> None:
    merchant = uuid.uuid4()
    created = [(await store.create(merchant, f"k{n}"))[0].key_id for n in range(5)]
    first = await store.list(merchant, 2)
    rest = await store.list(merchant, 10, after=first[-1].key_id)
    assert [k.key_id for k in first + rest] == list(reversed(created))
    assert await store.list(uuid.uuid4(), 10) == []


async def test_a_legacy_key_is_stored_on_first_use_then_revocable(store: ApiKeyStore, engine: AsyncEngine) -> None:
    merchant = uuid.uuid4()
    await store.create(merchant, "stored")  # so that the legacy one is not the last
    legacy = issue_api_key(LEGACY_SECRET, merchant)
    owner = await store.verify(legacy)
    assert owner is not None and owner.merchant_id == merchant
    (listed,) = [k for k in await store.list(merchant, 10) if k.legacy]
    assert listed.key_id == owner.key_id
    assert await store.revoke(merchant, owner.key_id)
    assert await store.verify(legacy) is None
    # A legacy key under another secret, or after the cut-off date, is refused.
    assert await store.verify(issue_api_key("another-secret", merchant)) is None
    cut_off = ApiKeyStore(engine, LEGACY_SECRET, legacy_until=utcnow() - timedelta(seconds=1))
    assert await cut_off.verify(issue_api_key(LEGACY_SECRET, merchant)) is None
