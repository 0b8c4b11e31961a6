"""The push history as the API lists it (`GET /v1/pushes`): a merchant's pushes, filtered,
in push_id order, a page at a time; and what each channel last accepted."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from channel_publisher.adapters import push_store
from channel_publisher.adapters.push_store import PushFilter

__all__ = ["PushFilter", "published_quantities", "push_history"]


async def push_history(
    engine: AsyncEngine, merchant_id: uuid.UUID, where: PushFilter, *, newest_first: bool, limit: int
) -> Sequence[sa.Row[Any]]:
    async with engine.connect() as conn:
        return await push_store.history(conn, merchant_id, where, newest_first=newest_first, limit=limit)


async def published_quantities(
    engine: AsyncEngine, merchant_id: uuid.UUID, skus: Iterable[str]
) -> Sequence[sa.Row[Any]]:
    """What each of the merchant's channels last accepted for these SKUs (with the rules that
    decided it), by SKU, connection and location."""
    async with engine.connect() as conn:
        return await push_store.published_quantities(conn, merchant_id, skus)
