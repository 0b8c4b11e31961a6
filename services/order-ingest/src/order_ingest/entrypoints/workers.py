"""Background work of the order-ingest process: the Mirakl poller, the retention sweep."""

from __future__ import annotations

import logging
from datetime import timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from stocksync_common.contracts import utcnow
from stocksync_common.periodic import Periodic
from stocksync_common.uow import UnitOfWorkFactory

from order_ingest.adapters.delivery_store import delete_expired_deliveries
from order_ingest.config import IngestSettings
from order_ingest.service_layer.polling import due_connections, poll_connection

log = logging.getLogger(__name__)


def mirakl_poller(units: UnitOfWorkFactory, settings: IngestSettings, http: httpx.AsyncClient) -> Periodic:
    async def poll_due() -> None:
        for connection, updated_since in await due_connections(units.engine, utcnow()):
            await poll_connection(units, http, settings, connection, updated_since)

    return Periodic("mirakl-poller", settings.poller_tick_s, poll_due)


def retention_sweep(engine: AsyncEngine, settings: IngestSettings) -> Periodic:
    async def sweep() -> None:
        deleted = await delete_expired_deliveries(engine, timedelta(days=settings.delivery_retention_days))
        if deleted:
            log.info("expired deliveries deleted", extra={"deleted": deleted})

    return Periodic("delivery-retention", settings.retention_sweep_interval_s, sweep)
