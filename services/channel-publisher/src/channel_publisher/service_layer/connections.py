"""Channel connections: created here, announced on connections.v1 through the outbox."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from stocksync_common.contracts import DEFAULT_LOCATION, ConnectionChanged
from stocksync_common.ids import new_id
from stocksync_common.outbox import add_to_outbox
from stocksync_common.secrets import seal_connection

from channel_publisher.adapters.tables import connections, listings, outbox, pending_pushes
from channel_publisher.domain.channels import CHANNELS


@dataclass(frozen=True)
class Connection:
    connection_id: uuid.UUID
    merchant_id: uuid.UUID
    channel_type: str
    name: str
    base_url: str
    credentials: dict[str, Any]
    settings: dict[str, Any]
    active: bool


def _announcement(row: Any) -> ConnectionChanged:
    """The connection as connections.v1 carries it, its secrets sealed for the broker."""
    return seal_connection(
        ConnectionChanged(
            merchant_id=row.merchant_id,
            connection_id=row.connection_id,
            channel_type=row.channel_type,
            name=row.name,
            active=row.active,
            webhook_secrets=tuple(row.webhook_secrets),
            inbound=dict(row.inbound),
            # order-ingest polls Mirakl's OR11 and fetches eBay's public keys itself.
            channel_api={"base_url": row.base_url, **row.credentials} if row.channel_type in ("mirakl", "ebay") else {},
            locations=tuple(row.locations),
            per_location=CHANNELS[row.channel_type].per_location,
            causation_id=f"connection:{row.connection_id}",
        )
    )


async def create_connection(
    engine: AsyncEngine,
    *,
    merchant_id: uuid.UUID,
    channel_type: str,
    name: str,
    base_url: str,
    credentials: dict[str, Any],
    webhook_secrets: list[str],
    settings: dict[str, Any],
    inbound: dict[str, Any],
    listing_rows: list[dict[str, Any]],
    locations: Sequence[str] = (DEFAULT_LOCATION,),
) -> uuid.UUID:
    # Time-ordered: the rule engine waits a moment for a connection made just now.
    connection_id = new_id()
    async with engine.begin() as conn:
        row = (
            await conn.execute(
                sa.insert(connections)
                .values(
                    connection_id=connection_id,
                    merchant_id=merchant_id,
                    channel_type=channel_type,
                    name=name,
                    base_url=base_url,
                    credentials=credentials,
                    webhook_secrets=webhook_secrets,
                    settings=settings,
                    inbound=inbound,
                    locations=list(locations),
                    active=True,
                )
                .returning(connections)
            )
        ).one()
        if listing_rows:
            await conn.execute(sa.insert(listings), [{"connection_id": connection_id, **r} for r in listing_rows])
        await add_to_outbox(conn, outbox, [_announcement(row)])
    return connection_id


async def announce_all_connections(engine: AsyncEngine) -> int:
    """Announce every connection again (at start): a new or emptied broker catches up."""
    async with engine.begin() as conn:
        rows = (await conn.execute(sa.select(connections))).all()
        await add_to_outbox(conn, outbox, [_announcement(row) for row in rows])
    return len(rows)


async def merchant_connections(
    engine: AsyncEngine, merchant_id: uuid.UUID, connection_id: uuid.UUID | None = None
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
    async with engine.connect() as conn:
        return (await conn.execute(query.order_by(connections.c.created_at))).all()


async def load_connection(conn: AsyncConnection, connection_id: uuid.UUID) -> Connection | None:
    row = (await conn.execute(sa.select(connections).where(connections.c.connection_id == connection_id))).one_or_none()
    if row is None:
        return None
    return Connection(
        row.connection_id,
        row.merchant_id,
        row.channel_type,
        row.name,
        row.base_url,
        dict(row.credentials),
        dict(row.settings),
        row.active,
    )


async def _update_secrets(
    engine: AsyncEngine, merchant_id: uuid.UUID, connection_id: uuid.UUID, change: Any
) -> int | None:
    async with engine.begin() as conn:
        row = (
            await conn.execute(
                sa.select(connections.c.webhook_secrets)
                .where(connections.c.connection_id == connection_id, connections.c.merchant_id == merchant_id)
                .with_for_update()
            )
        ).one_or_none()
        if row is None:
            return None
        secrets: list[str] = change(list(row.webhook_secrets))
        updated = (
            await conn.execute(
                sa.update(connections)
                .where(connections.c.connection_id == connection_id)
                .values(webhook_secrets=secrets)
                .returning(connections)
            )
        ).one()
        await add_to_outbox(conn, outbox, [_announcement(updated)])
    return len(secrets)


async def add_webhook_secret(
    engine: AsyncEngine, merchant_id: uuid.UUID, connection_id: uuid.UUID, secret: str
) -> int | None:
    """The new secret first, the current one kept: both verify during the overlap."""
    return await _update_secrets(
        engine, merchant_id, connection_id, lambda current: [secret, *[s for s in current[:1] if s != secret]]
    )


async def retire_previous_webhook_secrets(
    engine: AsyncEngine, merchant_id: uuid.UUID, connection_id: uuid.UUID
) -> int | None:
    return await _update_secrets(engine, merchant_id, connection_id, lambda current: current[:1])


async def set_connection_locations(
    engine: AsyncEngine, merchant_id: uuid.UUID, connection_id: uuid.UUID, locations: Sequence[str]
) -> bool:
    """Replace the locations a connection sells from; connections.v1 tells the ledger
    (where its next orders reserve) and the rule engine (what it is shown)."""
    async with engine.begin() as conn:
        row = (
            await conn.execute(
                sa.update(connections)
                .where(connections.c.connection_id == connection_id, connections.c.merchant_id == merchant_id)
                .values(locations=list(locations))
                .returning(connections)
            )
        ).one_or_none()
        if row is None:
            return False
        await add_to_outbox(conn, outbox, [_announcement(row)])
    return True


async def pause_connection(engine: AsyncEngine, merchant_id: uuid.UUID, connection_id: uuid.UUID, reason: str) -> bool:
    """The merchant pauses: nothing is sent until the merchant resumes (no automatic retry)."""
    async with engine.begin() as conn:
        result = await conn.execute(
            sa.update(connections)
            .where(connections.c.connection_id == connection_id, connections.c.merchant_id == merchant_id)
            .values(
                paused_at=sa.func.coalesce(connections.c.paused_at, sa.func.now()), pause_reason=reason, resume_at=None
            )
        )
    return result.rowcount > 0


async def resume_connection(engine: AsyncEngine, merchant_id: uuid.UUID, connection_id: uuid.UUID) -> bool:
    """Send again now: the pause ends and waiting quantities are due at once."""
    async with engine.begin() as conn:
        result = await conn.execute(
            sa.update(connections)
            .where(connections.c.connection_id == connection_id, connections.c.merchant_id == merchant_id)
            .values(paused_at=None, pause_reason=None, resume_at=None, consecutive_failures=0)
        )
        if result.rowcount == 0:
            return False
        await conn.execute(
            sa.update(pending_pushes).where(pending_pushes.c.connection_id == connection_id).values(not_before=None)
        )
    return True
