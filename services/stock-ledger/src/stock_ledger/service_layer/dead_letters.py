"""Every service's dead letters in one place, for the merchant's list and for replay.

Each consuming service writes its dead letters in its own `dead_letters` table and
publishes them to `<topic>.dlq`; the stock-ledger collects those topics into its own
table, which `GET /v1/dead-letters` lists. A replay puts the original record back on
its topic, byte for byte, through the outbox: every consumer group of that topic sees
it again, and the inboxes and versions make it a no-op for those that had applied it.
A replay that fails again becomes a new dead letter.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from stocksync_common.contracts import DeadLetterRecorded
from stocksync_common.dead_letters import dead_letter_row
from stocksync_common.topics import BY_NAME
from stocksync_common.uow import UnitOfWorkFactory

from stock_ledger.adapters.tables import dead_letters


async def collect_dead_letters(events: Sequence[DeadLetterRecorded], engine: AsyncEngine) -> None:
    """Record dead letters published by any service; one seen before is left as it is."""
    if not events:
        return
    async with engine.begin() as conn:
        await conn.execute(
            pg.insert(dead_letters).on_conflict_do_nothing(index_elements=["dead_letter_id"]),
            [dead_letter_row(event) for event in events],
        )


async def list_dead_letters(
    conn: AsyncConnection,
    *,
    merchant_id: uuid.UUID | None,
    topic: str | None = None,
    consumer_group: str | None = None,
    replayed: bool | None = None,
    before: uuid.UUID | None = None,
    limit: int = 100,
) -> list[Any]:
    """Newest first; `before` is the last id of the previous page. None: every merchant."""
    query = sa.select(dead_letters)
    if merchant_id is not None:
        query = query.where(dead_letters.c.merchant_id == merchant_id)
    if topic is not None:
        query = query.where(dead_letters.c.topic == topic)
    if consumer_group is not None:
        query = query.where(dead_letters.c.consumer_group == consumer_group)
    if replayed is not None:
        query = query.where(
            dead_letters.c.replayed_at.is_not(None) if replayed else dead_letters.c.replayed_at.is_(None)
        )
    if before is not None:
        cursor_time = (
            sa.select(dead_letters.c.dead_lettered_at).where(dead_letters.c.dead_letter_id == before).scalar_subquery()
        )
        query = query.where(
            sa.tuple_(dead_letters.c.dead_lettered_at, dead_letters.c.dead_letter_id)
            < sa.tuple_(cursor_time, sa.literal(before, pg.UUID(as_uuid=True)))
        )
    query = query.order_by(dead_letters.c.dead_lettered_at.desc(), dead_letters.c.dead_letter_id.desc())
    return list((await conn.execute(query.limit(limit))).all())


async def replay_dead_letters(
    units: UnitOfWorkFactory,
    *,
    merchant_id: uuid.UUID | None,
    dead_letter_id: uuid.UUID | None = None,
    topic: str | None = None,
) -> list[uuid.UUID]:
    """Put dead letters back on their topics; return the ids replayed.

    One id (`dead_letter_id`), or every dead letter of the merchant not replayed yet
    (optionally of one topic). `merchant_id` None is the operators' scope. The rows are
    locked so that two concurrent replays do not both send (a second send would be
    harmless, but counted twice).
    """
    conditions: list[sa.ColumnElement[bool]] = []
    if merchant_id is not None:
        conditions.append(dead_letters.c.merchant_id == merchant_id)
    if dead_letter_id is not None:
        conditions.append(dead_letters.c.dead_letter_id == dead_letter_id)
    else:
        conditions.append(dead_letters.c.replayed_at.is_(None))
    if topic is not None:
        conditions.append(dead_letters.c.topic == topic)
    async with units.begin() as uow:
        conn = uow.sqlalchemy
        rows = (
            await conn.execute(
                sa.select(dead_letters)
                .where(*conditions)
                .order_by(dead_letters.c.dead_lettered_at, dead_letters.c.dead_letter_id)
                .with_for_update()
            )
        ).all()
        replayable = [row for row in rows if row.topic in BY_NAME]
        if not replayable:
            return []
        # The original record, byte for byte (it may not decode: that is why it is here).
        uow.add_records(
            (
                row.topic,
                row.key or b"",
                row.value,
                BY_NAME[row.topic].event_type.__name__,
                f"replay:{row.dead_letter_id}",
                None,
            )
            for row in replayable
        )
        ids = [row.dead_letter_id for row in replayable]
        await conn.execute(
            sa.update(dead_letters)
            .where(dead_letters.c.dead_letter_id.in_(ids))
            .values(replayed_at=sa.func.now(), replay_count=dead_letters.c.replay_count + 1)
        )
    return ids
