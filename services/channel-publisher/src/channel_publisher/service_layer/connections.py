"""Channel connections: created here, announced on connections.v1 through the outbox."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from stocksync_common.contracts import DEFAULT_LOCATION, ConnectionChanged
from stocksync_common.ids import new_id
from stocksync_common.secrets import seal_connection
from stocksync_common.uow import UnitOfWorkFactory

from channel_publisher.adapters import connection_store, drift_store, push_store
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
    units: UnitOfWorkFactory,
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
    async with units.begin() as uow:
        row = await connection_store.insert_connection(
            uow.sqlalchemy,
            {
                "connection_id": connection_id,
                "merchant_id": merchant_id,
                "channel_type": channel_type,
                "name": name,
                "base_url": base_url,
                "credentials": credentials,
                "webhook_secrets": webhook_secrets,
                "settings": settings,
                "inbound": inbound,
                "locations": list(locations),
                "active": True,
            },
            listing_rows,
        )
        uow.add([_announcement(row)])
    return connection_id


async def announce_all_connections(units: UnitOfWorkFactory) -> None:
    """Announce every connection again (at start): a new or emptied broker catches up."""
    async with units.begin() as uow:
        uow.add([_announcement(row) for row in await connection_store.all_connections(uow.sqlalchemy)])


async def merchant_connections(
    engine: AsyncEngine, merchant_id: uuid.UUID, connection_id: uuid.UUID | None = None
) -> Sequence[sa.Row[Any]]:
    """The merchant's connections (or only `connection_id`) in the order they were created,
    each with its number of listings (`listing_count`): one statement for any number."""
    async with engine.connect() as conn:
        return await connection_store.merchant_connections(conn, merchant_id, connection_id)


async def load_connection(conn: AsyncConnection, connection_id: uuid.UUID) -> Connection | None:
    row = await connection_store.connection_row(conn, connection_id)
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
    units: UnitOfWorkFactory, merchant_id: uuid.UUID, connection_id: uuid.UUID, change: Any
) -> int | None:
    async with units.begin() as uow:
        conn = uow.sqlalchemy
        current = await connection_store.lock_webhook_secrets(conn, merchant_id, connection_id)
        if current is None:
            return None
        secrets: list[str] = change(current)
        updated = await connection_store.update_connection(conn, merchant_id, connection_id, webhook_secrets=secrets)
        assert updated is not None, "the row is locked"
        uow.add([_announcement(updated)])
    return len(secrets)


async def add_webhook_secret(
    units: UnitOfWorkFactory, merchant_id: uuid.UUID, connection_id: uuid.UUID, secret: str
) -> int | None:
    """The new secret first, the current one kept: both verify during the overlap."""
    return await _update_secrets(
        units, merchant_id, connection_id, lambda current: [secret, *[s for s in current[:1] if s != secret]]
    )


async def retire_previous_webhook_secrets(
    units: UnitOfWorkFactory, merchant_id: uuid.UUID, connection_id: uuid.UUID
) -> int | None:
    return await _update_secrets(units, merchant_id, connection_id, lambda current: current[:1])


async def set_connection_locations(
    units: UnitOfWorkFactory, merchant_id: uuid.UUID, connection_id: uuid.UUID, locations: Sequence[str]
) -> bool:
    """Replace the locations a connection sells from; connections.v1 tells the ledger
    (where its next orders reserve) and the rule engine (what it is shown)."""
    async with units.begin() as uow:
        row = await connection_store.update_connection(
            uow.sqlalchemy, merchant_id, connection_id, locations=list(locations)
        )
        if row is None:
            return False
        uow.add([_announcement(row)])
    return True


async def pause_connection(engine: AsyncEngine, merchant_id: uuid.UUID, connection_id: uuid.UUID, reason: str) -> bool:
    """The merchant pauses: nothing is sent until the merchant resumes (no automatic retry)."""
    async with engine.begin() as conn:
        return await connection_store.pause(conn, merchant_id, connection_id, reason)


async def resume_connection(engine: AsyncEngine, merchant_id: uuid.UUID, connection_id: uuid.UUID) -> bool:
    """Send again now: the pause ends and waiting quantities are due at once."""
    async with engine.begin() as conn:
        if not await connection_store.resume(conn, merchant_id, connection_id):
            return False
        await push_store.make_due_now(conn, connection_id)
    return True


async def is_merchants(engine: AsyncEngine, merchant_id: uuid.UUID, connection_id: uuid.UUID) -> bool:
    async with engine.connect() as conn:
        return await connection_store.is_owned(conn, merchant_id, connection_id)


async def _read_owned(
    engine: AsyncEngine,
    merchant_id: uuid.UUID,
    connection_id: uuid.UUID,
    read: Callable[[AsyncConnection], Awaitable[Sequence[sa.RowMapping]]],
) -> list[dict[str, Any]] | None:
    """What `read` (a store's read about this connection) returns if the connection is the
    merchant's; None if not. Two statements on one pooled connection."""
    async with engine.connect() as conn:
        if not await connection_store.is_owned(conn, merchant_id, connection_id):
            return None
        return [dict(row) for row in await read(conn)]


async def pending_pushes_of(
    engine: AsyncEngine, merchant_id: uuid.UUID, connection_id: uuid.UUID, limit: int
) -> list[dict[str, Any]] | None:
    """The connection's waiting quantities, oldest first; None if it is not the merchant's."""
    return await _read_owned(
        engine, merchant_id, connection_id, lambda conn: push_store.pending_of(conn, connection_id, limit)
    )


async def unmapped_skus_of(
    engine: AsyncEngine, merchant_id: uuid.UUID, connection_id: uuid.UUID, after_sku: str, limit: int
) -> list[dict[str, Any]] | None:
    """The connection's SKUs without a listing, by SKU; None if it is not the merchant's."""
    return await _read_owned(
        engine, merchant_id, connection_id, lambda conn: push_store.unmapped_of(conn, connection_id, after_sku, limit)
    )


async def drift_findings_of(
    engine: AsyncEngine, merchant_id: uuid.UUID, connection_id: uuid.UUID, limit: int
) -> list[dict[str, Any]] | None:
    """The connection's drift findings, newest first; None if it is not the merchant's."""
    return await _read_owned(
        engine, merchant_id, connection_id, lambda conn: drift_store.newest_findings(conn, connection_id, limit)
    )
