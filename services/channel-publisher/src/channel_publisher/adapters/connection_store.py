"""Every statement on the connection aggregate: a connection and its listings.

Tables `connections` (what the merchant set up, its pause and call health, its last
drift check) and `listings` (which SKU is which item on the channel). SQLAlchemy Core on
the caller's connection, in the caller's transaction; a drain's writes to the call
health (consecutive failures, an automatic pause) are hand-written SQL on the drain's
asyncpg connection, in its transaction, with the rows it settles (the lock protocol is
in adapters/push_store.py). Other stores only read `connections`, joined into their own
statements: the push queue reads a connection's pause in the statement that takes its
rows, without a round trip of its own.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import asyncpg
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from channel_publisher.adapters.tables import connections, listings
from channel_publisher.domain.connection_health import HealthChange


def _owned(merchant_id: uuid.UUID, connection_id: uuid.UUID) -> sa.ColumnElement[bool]:
    return sa.and_(connections.c.connection_id == connection_id, connections.c.merchant_id == merchant_id)


async def insert_connection(
    conn: AsyncConnection, values: Mapping[str, Any], listing_rows: Iterable[Mapping[str, Any]]
) -> sa.Row[Any]:
    """A new connection (`values`: its columns, connection_id included) and its listings."""
    row: sa.Row[Any] = (await conn.execute(sa.insert(connections).values(**values).returning(connections))).one()
    listed = [{"connection_id": row.connection_id, **r} for r in listing_rows]
    if listed:
        await conn.execute(sa.insert(listings), listed)
    return row


async def all_connections(conn: AsyncConnection) -> Sequence[sa.Row[Any]]:
    return (await conn.execute(sa.select(connections))).all()


async def merchant_connections(
    conn: AsyncConnection, merchant_id: uuid.UUID, connection_id: uuid.UUID | None = None
) -> Sequence[sa.Row[Any]]:
    """The merchant's connections (or only `connection_id`) in the order they were created,
    each with its number of listings (`listing_count`): one statement for any number."""
    listing_count = (
        sa.select(sa.func.count())
        .select_from(listings)
        .where(listings.c.connection_id == connections.c.connection_id)
        .scalar_subquery()
    )
    query = sa.select(connections, listing_count.label("listing_count")).where(connections.c.merchant_id == merchant_id)
    if connection_id is not None:
        query = query.where(connections.c.connection_id == connection_id)
    return (await conn.execute(query.order_by(connections.c.created_at))).all()


async def connection_row(conn: AsyncConnection, connection_id: uuid.UUID) -> sa.Row[Any] | None:
    return (
        await conn.execute(sa.select(connections).where(connections.c.connection_id == connection_id))
    ).one_or_none()


async def owned_connection_row(
    conn: AsyncConnection, merchant_id: uuid.UUID, connection_id: uuid.UUID
) -> sa.Row[Any] | None:
    """The connection's row if it is the merchant's."""
    return (await conn.execute(sa.select(connections).where(_owned(merchant_id, connection_id)))).one_or_none()


async def is_owned(
    conn: AsyncConnection, merchant_id: uuid.UUID, connection_id: uuid.UUID, *, lock: bool = False
) -> bool:
    """Whether the connection is the merchant's; with `lock`, its row is locked until commit."""
    query = sa.select(connections.c.connection_id).where(_owned(merchant_id, connection_id))
    if lock:
        query = query.with_for_update()
    return (await conn.execute(query)).one_or_none() is not None


async def lock_webhook_secrets(
    conn: AsyncConnection, merchant_id: uuid.UUID, connection_id: uuid.UUID
) -> list[str] | None:
    """The merchant's connection's webhook secrets, its row locked; None if not the merchant's."""
    row = (
        await conn.execute(
            sa.select(connections.c.webhook_secrets).where(_owned(merchant_id, connection_id)).with_for_update()
        )
    ).one_or_none()
    return None if row is None else list(row.webhook_secrets)


async def update_connection(
    conn: AsyncConnection, merchant_id: uuid.UUID, connection_id: uuid.UUID, **values: Any
) -> sa.Row[Any] | None:
    """Set columns of the merchant's connection; its row after, or None if not the merchant's."""
    row: sa.Row[Any] | None = (
        await conn.execute(
            sa.update(connections).where(_owned(merchant_id, connection_id)).values(**values).returning(connections)
        )
    ).one_or_none()
    return row


async def pause(conn: AsyncConnection, merchant_id: uuid.UUID, connection_id: uuid.UUID, reason: str) -> bool:
    """Paused by the merchant (no `resume_at`): an earlier pause keeps its start."""
    result = await conn.execute(
        sa.update(connections)
        .where(_owned(merchant_id, connection_id))
        .values(paused_at=sa.func.coalesce(connections.c.paused_at, sa.func.now()), pause_reason=reason, resume_at=None)
    )
    return result.rowcount > 0


async def resume(conn: AsyncConnection, merchant_id: uuid.UUID, connection_id: uuid.UUID) -> bool:
    """The pause ends and the failures are forgotten."""
    result = await conn.execute(
        sa.update(connections)
        .where(_owned(merchant_id, connection_id))
        .values(paused_at=None, pause_reason=None, resume_at=None, consecutive_failures=0)
    )
    return result.rowcount > 0


async def drift_check_candidates(conn: AsyncConnection, channel_types: Sequence[str]) -> Sequence[sa.Row[Any]]:
    """The active, unpaused connections of these channel types: id, settings, last drift check."""
    query: sa.Select[Any] = sa.select(
        connections.c.connection_id, connections.c.settings, connections.c.last_drift_check_at
    ).where(
        connections.c.active,
        connections.c.paused_at.is_(None),
        connections.c.channel_type.in_(channel_types),
    )
    rows: Sequence[sa.Row[Any]] = (await conn.execute(query)).all()
    return rows


async def mark_drift_checked(conn: AsyncConnection, connection_id: uuid.UUID, at: datetime) -> None:
    await conn.execute(
        sa.update(connections).where(connections.c.connection_id == connection_id).values(last_drift_check_at=at)
    )


# A drain's call that did not fail as a whole clears the failures and the pause.
HEALTH_RESET_SQL = f"""
UPDATE {connections.fullname} SET consecutive_failures = 0, paused_at = NULL, pause_reason = NULL, resume_at = NULL
WHERE connection_id = $1::uuid
"""

# A call that failed as a whole: failures in a row, and the pause when $3 to $5 are set.
HEALTH_FAILED_SQL = f"""
UPDATE {connections.fullname}
SET consecutive_failures = $2::int, paused_at = coalesce($3::timestamptz, paused_at),
    pause_reason = coalesce($4::text, pause_reason), resume_at = coalesce($5::timestamptz, resume_at)
WHERE connection_id = $1::uuid
"""


async def reset_health(conn: asyncpg.Connection, connection_id: uuid.UUID) -> None:
    """On a drain's connection: the call went through, the failures and the pause end."""
    await conn.execute(HEALTH_RESET_SQL, connection_id)


async def record_failure(conn: asyncpg.Connection, connection_id: uuid.UUID, change: HealthChange) -> None:
    """On a drain's connection: a call failed as a whole, the failures in a row, and the
    pause if it paused."""
    pause = (change.after.paused_at, change.pause_reason, change.after.resume_at) if change.paused else (None,) * 3
    await conn.execute(HEALTH_FAILED_SQL, connection_id, change.after.consecutive_failures, *pause)
