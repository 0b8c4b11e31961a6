"""Background work of the order-ingest process: the Mirakl poller, the retention sweep."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from stocksync_common.contracts import utcnow
from stocksync_common.runtime import BackgroundWorker

from order_ingest.config import IngestSettings
from order_ingest.service_layer.ingest import delete_expired_deliveries
from order_ingest.service_layer.polling import due_connections, poll_connection

log = logging.getLogger(__name__)


def periodic(name: str, interval_s: float, step: Callable[[], Awaitable[None]]) -> BackgroundWorker:
    """Run `step` every `interval_s` until asked to stop; a failing step is logged and retried."""
    stopping = asyncio.Event()

    async def run() -> None:
        while not stopping.is_set():
            try:
                await step()
            except Exception:
                log.exception("background step failed; retrying", extra={"worker": name})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), interval_s)

    return BackgroundWorker(name, run, stopping.set)


def mirakl_poller(
    engine: AsyncEngine, settings: IngestSettings, http: httpx.AsyncClient, wake_relay: Callable[[], None]
) -> BackgroundWorker:
    async def poll_due() -> None:
        for connection, updated_since in await due_connections(engine, utcnow()):
            outcome = await poll_connection(engine, http, settings, connection, updated_since)
            if outcome.events:
                wake_relay()

    return periodic("mirakl-poller", settings.poller_tick_s, poll_due)


def retention_sweep(engine: AsyncEngine, settings: IngestSettings) -> BackgroundWorker:
    async def sweep() -> None:
        deleted = await delete_expired_deliveries(engine, timedelta(days=settings.delivery_retention_days))
        if deleted:
            log.info("expired deliveries deleted", extra={"deleted": deleted})

    return periodic("delivery-retention", settings.retention_sweep_interval_s, sweep)
