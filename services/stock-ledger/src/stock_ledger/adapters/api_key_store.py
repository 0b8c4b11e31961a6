"""Merchants and their API keys: the one store of the `merchants` and `api_keys` tables.

A key is valid while it is not revoked and its `expires_at` (set by a rotation with a grace
period) has not passed. Only a SHA-256 digest of a key is stored; a presented key is found
by its public key id and its digest compared in constant time.

`last_used_at` is written at most once per `LAST_USED_EVERY_S` per key: the process
remembers when it last wrote it, and the update itself is guarded so that several
instances do not write more often either.
"""

from __future__ import annotations

import hmac
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from stocksync_common.auth import (
    ApiKeyOwner,
    api_key_id,
    is_legacy_api_key,
    key_digest,
    new_api_key,
    verify_api_key,
)
from stocksync_common.contracts import utcnow

from stock_ledger.adapters.tables import api_keys, merchants

LAST_USED_EVERY_S = 60.0
LEGACY_KEY_NAME = "legacy key"


@dataclass(frozen=True)
class StoredKey:
    key_id: str
    merchant_id: uuid.UUID
    name: str
    legacy: bool
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None
    replaced_by: str | None

    def active(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


def _stored(row: sa.Row[tuple[object, ...]]) -> StoredKey:
    return StoredKey(
        key_id=row.key_id,
        merchant_id=row.merchant_id,
        name=row.name,
        legacy=row.legacy,
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        replaced_by=row.replaced_by,
    )


class ApiKeyStore:
    def __init__(self, engine: AsyncEngine, legacy_secret: str, legacy_until: datetime | None = None) -> None:
        self.engine = engine
        self.legacy_secret = legacy_secret
        self.legacy_until = legacy_until
        self._last_used_written: dict[str, float] = {}

    # ---- issuing --------------------------------------------------------------------

    async def create_merchant(self, name: str) -> tuple[uuid.UUID, str]:
        """A new merchant and its first key, in one transaction: the merchant's id and the
        key (shown once). A merchant never exists without a key to act as it."""
        merchant_id = uuid.uuid4()
        async with self.engine.begin() as conn:
            await conn.execute(sa.insert(merchants).values(merchant_id=merchant_id, name=name))
            _, key = await self.create(merchant_id, "creation key", conn)
        return merchant_id, key

    async def create(
        self, merchant_id: uuid.UUID, name: str, conn: AsyncConnection | None = None
    ) -> tuple[StoredKey, str]:
        """A new key for the merchant: the stored row, and the key (shown once)."""
        key, key_id = new_api_key()
        insert = (
            sa.insert(api_keys)
            .values(key_id=key_id, merchant_id=merchant_id, name=name, digest=key_digest(key))
            .returning(*api_keys.c)
        )
        if conn is not None:
            row = (await conn.execute(insert)).one()
        else:
            async with self.engine.begin() as own:
                row = (await own.execute(insert)).one()
        return _stored(row), key

    async def rotate(self, merchant_id: uuid.UUID, key_id: str, grace: timedelta) -> tuple[StoredKey, str] | None:
        """A new key with the old one's name; the old one stays valid for `grace` (zero:
        revoked at once). None when the merchant has no such active key."""
        now = utcnow()
        async with self.engine.begin() as conn:
            old = await self._active_for_update(conn, merchant_id, key_id, now)
            if old is None:
                return None
            new, key = await self.create(merchant_id, old.name, conn)
            ends = {"revoked_at": now} if grace <= timedelta(0) else {"expires_at": now + grace}
            await conn.execute(
                sa.update(api_keys).where(api_keys.c.key_id == key_id).values(replaced_by=new.key_id, **ends)
            )
        return new, key

    async def revoke(self, merchant_id: uuid.UUID, key_id: str) -> StoredKey | bool | None:
        """Revokes the key: the revoked row; None when the merchant has no such active key;
        False when it is the merchant's last active key (kept: the merchant would be locked out)."""
        now = utcnow()
        async with self.engine.begin() as conn:
            old = await self._active_for_update(conn, merchant_id, key_id, now)
            if old is None:
                return None
            others = await conn.scalar(
                sa.select(sa.func.count())
                .select_from(api_keys)
                .where(
                    api_keys.c.merchant_id == merchant_id,
                    api_keys.c.key_id != key_id,
                    api_keys.c.revoked_at.is_(None),
                    sa.or_(api_keys.c.expires_at.is_(None), api_keys.c.expires_at > now),
                )
            )
            if not others:
                return False
            row = (
                await conn.execute(
                    sa.update(api_keys).where(api_keys.c.key_id == key_id).values(revoked_at=now).returning(*api_keys.c)
                )
            ).one()
        return _stored(row)

    async def _active_for_update(
        self, conn: AsyncConnection, merchant_id: uuid.UUID, key_id: str, now: datetime
    ) -> StoredKey | None:
        row = (
            await conn.execute(
                sa.select(api_keys)
                .where(api_keys.c.key_id == key_id, api_keys.c.merchant_id == merchant_id)
                .with_for_update()
            )
        ).one_or_none()
        if row is None:
            return None
        stored = _stored(row)
        return stored if stored.active(now) else None

    # ---- reading --------------------------------------------------------------------

    async def list(self, merchant_id: uuid.UUID, limit: int, after: str | None = None) -> list[StoredKey]:
        """The merchant's keys, newest first (revoked ones too), `after` a key id of the previous page."""
        query = sa.select(api_keys).where(api_keys.c.merchant_id == merchant_id)
        async with self.engine.connect() as conn:
            if after is not None:
                cursor = await conn.scalar(
                    sa.select(api_keys.c.created_at).where(
                        api_keys.c.merchant_id == merchant_id, api_keys.c.key_id == after
                    )
                )
                if cursor is None:
                    return []
                query = query.where(sa.tuple_(api_keys.c.created_at, api_keys.c.key_id) < (cursor, after))
            query = query.order_by(api_keys.c.created_at.desc(), api_keys.c.key_id.desc()).limit(limit)
            return [_stored(row) for row in await conn.execute(query)]

    # ---- verifying ------------------------------------------------------------------

    async def verify(self, presented: str) -> ApiKeyOwner | None:
        """The owner of a valid key, else None. Legacy keys are stored the first time they
        verify (until `legacy_until`, if set)."""
        key_id = api_key_id(presented)
        if not key_id:
            return None
        now = utcnow()
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(api_keys).where(api_keys.c.key_id == key_id))).one_or_none()
        if row is None:
            stored = await self._store_legacy(presented, key_id, now)
            if stored is None:
                return None
        else:
            if not hmac.compare_digest(row.digest.encode(), key_digest(presented).encode()):
                return None
            stored = _stored(row)
        if not stored.active(now) or (stored.legacy and not self._legacy_accepted(now)):
            return None
        await self._touch(stored.key_id)
        return ApiKeyOwner(merchant_id=stored.merchant_id, key_id=stored.key_id)

    def _legacy_accepted(self, now: datetime) -> bool:
        return self.legacy_until is None or now < self.legacy_until

    async def _store_legacy(self, presented: str, key_id: str, now: datetime) -> StoredKey | None:
        if not is_legacy_api_key(presented) or not self._legacy_accepted(now):
            return None
        merchant_id = verify_api_key(self.legacy_secret, presented)
        if merchant_id is None:
            return None
        insert = (
            pg_insert(api_keys)
            .values(
                key_id=key_id, merchant_id=merchant_id, name=LEGACY_KEY_NAME, digest=key_digest(presented), legacy=True
            )
            .on_conflict_do_nothing(index_elements=[api_keys.c.key_id])
        )
        async with self.engine.begin() as conn:
            await conn.execute(insert)
            row = (await conn.execute(sa.select(api_keys).where(api_keys.c.key_id == key_id))).one()
        if not hmac.compare_digest(row.digest.encode(), key_digest(presented).encode()):
            return None
        return _stored(row)

    async def _touch(self, key_id: str) -> None:
        now = time.monotonic()
        if now - self._last_used_written.get(key_id, -LAST_USED_EVERY_S) < LAST_USED_EVERY_S:
            return
        self._last_used_written[key_id] = now
        if len(self._last_used_written) > 100_000:
            self._last_used_written.clear()
        async with self.engine.begin() as conn:
            await conn.execute(
                sa.update(api_keys)
                .where(
                    api_keys.c.key_id == key_id,
                    sa.or_(
                        api_keys.c.last_used_at.is_(None),
                        api_keys.c.last_used_at
                        < sa.func.now() - sa.text(f"interval '{int(LAST_USED_EVERY_S)} seconds'"),
                    ),
                )
                .values(last_used_at=sa.func.now())
            )
