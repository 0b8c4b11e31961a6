"""Polling channels that have no order webhooks (Mirakl's OR11) into the webhook path.

Each poll asks for orders updated since a little before the newest update already
seen (the overlap misses nothing; the dedupe absorbs what comes twice), turns every
order into a delivery and accepts it exactly as a webhook. A connection is polled at
its interval, never more than Mirakl allows, and after a 429 not before Retry-After.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncEngine

from stocksync_common.contracts import utcnow
from stocksync_common.uow import UnitOfWorkFactory

from order_ingest.adapters.channels import MalformedDelivery, mirakl
from order_ingest.adapters.channels.registry import PARSERS
from order_ingest.adapters.delivery_store import active_connections_of_type
from order_ingest.adapters.tables import order_polls
from order_ingest.config import IngestSettings
from order_ingest.domain.connections import InboundConnection
from order_ingest.service_layer.deliveries import accept_delivery

log = logging.getLogger(__name__)

MIRAKL_MIN_INTERVAL_S = 60.0


@dataclass(frozen=True)
class PollOutcome:
    orders: int
    events: int
    error: str | None = None


def poll_interval_s(connection: InboundConnection, settings: IngestSettings) -> float:
    if settings.mirakl_poll_interval_override_s is not None:
        return settings.mirakl_poll_interval_override_s
    return max(MIRAKL_MIN_INTERVAL_S, float(connection.inbound.get("poll_interval_s", MIRAKL_MIN_INTERVAL_S)))


async def due_connections(engine: AsyncEngine, now: datetime) -> list[tuple[InboundConnection, datetime | None]]:
    """Active Mirakl connections whose next poll is due, with where their last poll got to."""
    candidates = await active_connections_of_type(engine, "mirakl")
    if not candidates:
        return []
    async with engine.begin() as conn:
        await conn.execute(
            pg.insert(order_polls)
            .values([{"connection_id": c.connection_id, "next_poll_at": now} for c in candidates])
            .on_conflict_do_nothing()
        )
        rows = (
            await conn.execute(
                sa.select(order_polls).where(
                    order_polls.c.connection_id.in_([c.connection_id for c in candidates]),
                    order_polls.c.next_poll_at <= now,
                )
            )
        ).all()
    due = {row.connection_id: row.updated_since for row in rows}
    return [(c, due[c.connection_id]) for c in candidates if c.connection_id in due]


async def poll_connection(
    units: UnitOfWorkFactory,
    http: httpx.AsyncClient,
    settings: IngestSettings,
    connection: InboundConnection,
    updated_since: datetime | None,
) -> PollOutcome:
    started = utcnow()
    next_poll_at = started + timedelta(seconds=poll_interval_s(connection, settings))
    base_url, api_key = connection.channel_api.get("base_url"), connection.channel_api.get("api_key")
    if not base_url or not api_key:
        return await _record(
            units.engine,
            connection.connection_id,
            updated_since,
            next_poll_at,
            started,
            PollOutcome(0, 0, "the connection has no Mirakl base_url and api_key"),
        )
    since = updated_since or started - timedelta(seconds=settings.mirakl_initial_lookback_s)
    start = since - timedelta(seconds=settings.mirakl_poll_overlap_s)
    try:
        raw_orders = await mirakl.fetch_updated_orders(
            http, str(base_url), str(api_key), start, settings.mirakl_page_size
        )
    except mirakl.MiraklThrottled as exc:
        retry_at = started + timedelta(seconds=max(exc.retry_after_s, 1.0))
        return await _record(
            units.engine,
            connection.connection_id,
            updated_since,
            max(retry_at, next_poll_at),
            started,
            PollOutcome(0, 0, str(exc)),
        )
    except (httpx.HTTPError, mirakl.MiraklUnavailable, ValueError) as exc:
        return await _record(
            units.engine,
            connection.connection_id,
            updated_since,
            next_poll_at,
            started,
            PollOutcome(0, 0, f"{type(exc).__name__}: {exc}"),
        )
    events, newest, errors = 0, updated_since, []
    for raw in raw_orders:
        try:
            notification = PARSERS["mirakl"]({}, raw)
        except MalformedDelivery as exc:
            errors.append(str(exc.detail))
            continue
        accepted = await accept_delivery(units, connection, notification, raw, {}, utcnow())
        events += len(accepted.movements)
        updated = mirakl.last_updated(raw)
        if updated is not None and (newest is None or updated > newest):
            newest = updated
    if errors:
        log.error("Mirakl orders that could not be read were skipped", extra={"errors": errors[:5]})
    return await _record(
        units.engine,
        connection.connection_id,
        newest or since,
        next_poll_at,
        started,
        PollOutcome(len(raw_orders), events, "; ".join(errors[:3]) or None),
    )


async def _record(
    engine: AsyncEngine,
    connection_id: uuid.UUID,
    updated_since: datetime | None,
    next_poll_at: datetime,
    polled_at: datetime,
    outcome: PollOutcome,
) -> PollOutcome:
    async with engine.begin() as conn:
        await conn.execute(
            sa.update(order_polls)
            .where(order_polls.c.connection_id == connection_id)
            .values(
                updated_since=updated_since,
                next_poll_at=next_poll_at,
                last_polled_at=polled_at,
                last_error=outcome.error,
            )
        )
    if outcome.error:
        log.warning("Mirakl poll failed", extra={"connection_id": str(connection_id), "error": outcome.error})
    return outcome
