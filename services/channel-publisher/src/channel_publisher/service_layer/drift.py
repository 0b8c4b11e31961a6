"""Drift check: read back what the channel shows and compare it with what was last sent.

Only channels whose API can read quantities (Shopify, WooCommerce, eBay). A SKU with a
push waiting is skipped (it is about to change), and so is a SKU sent more recently than
the channel's measured display delay (it may not show the new quantity yet); a difference
is recorded only if nothing was sent for that SKU while the channel was being read, so a
push racing the read-back is not reported as drift. Drift is reported, not corrected:
someone changed the stock on the marketplace by hand, and the merchant decides.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Any

from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncEngine

from stocksync_common.contracts import utcnow
from stocksync_common.periodic import Periodic

from channel_publisher.adapters import connection_store, drift_store, push_store
from channel_publisher.adapters.channels.registry import READABLE_CHANNELS
from channel_publisher.config import PublisherSettings
from channel_publisher.domain.pushes import PushItem, ReadsQuantities
from channel_publisher.service_layer.connection_adapters import AdapterSource
from channel_publisher.service_layer.display_delays import read_display_delay

log = logging.getLogger(__name__)

DRIFT = Counter(
    "stocksync_drift_detected_total", "SKUs whose channel quantity differs from the last sent", ["channel_type"]
)
# How often the scheduler looks for connections whose check is due.
SCAN_PERIOD_S = 15.0


class DriftCheckUnsupported(Exception):
    """The channel's API cannot read quantities back."""


def drift_checker(engine: AsyncEngine, settings: PublisherSettings, adapters: AdapterSource) -> Periodic:
    """The background worker that runs the drift checks that are due, every `SCAN_PERIOD_S`."""

    async def check_due() -> None:
        for connection_id in await _due_connections(engine, settings):
            try:
                await check_drift(engine, settings, adapters, connection_id)
            except Exception as exc:
                # One unreachable channel must not hold the others' checks back; it is
                # tried again at its next period.
                log.warning("drift check failed", extra={"connection_id": str(connection_id), "error": str(exc)})
                await _mark_checked(engine, connection_id)

    return Periodic("drift-checks", SCAN_PERIOD_S, check_due)


async def _mark_checked(engine: AsyncEngine, connection_id: uuid.UUID) -> None:
    async with engine.begin() as conn:
        await connection_store.mark_drift_checked(conn, connection_id, utcnow())


async def _due_connections(engine: AsyncEngine, settings: PublisherSettings) -> list[uuid.UUID]:
    now = utcnow()
    async with engine.connect() as conn:
        rows = await connection_store.drift_check_candidates(conn, READABLE_CHANNELS)
    due = []
    for row in rows:
        interval = float(row.settings.get("drift_check_interval_s", settings.drift_check_interval_s))
        if row.last_drift_check_at is None or row.last_drift_check_at + timedelta(seconds=interval) <= now:
            due.append(row.connection_id)
    return due


async def check_drift(
    engine: AsyncEngine, settings: PublisherSettings, adapters: AdapterSource, connection_id: uuid.UUID
) -> list[dict[str, Any]]:
    """Read the channel's quantities of every sent SKU; record and return the differences."""
    found = await adapters.adapter_for(connection_id)
    if found is None:
        return []
    connection, adapter = found.connection, found.adapter
    if not isinstance(adapter, ReadsQuantities):
        raise DriftCheckUnsupported(connection.channel_type)
    async with engine.connect() as conn:
        # A channel that shows a change late (its measured display delay) still shows the
        # previous quantity for a while after accepting a new one: that is not drift.
        display = await read_display_delay(conn, settings, connection_id)
        shown_since = utcnow() - timedelta(seconds=display.p95_s) if display.measured else None
        sent = await push_store.sent_and_listed(conn, connection_id, shown_since)
    checked_at = utcnow()
    differences = []
    for start in range(0, len(sent), adapter.batch_limit):
        chunk = sent[start : start + adapter.batch_limit]
        items = [PushItem(r.sku, r.location, r.quantity, dict(r.external), r.version) for r in chunk]
        shown = await adapter.read_quantities(items)
        differences += [(row, shown.get(i)) for i, row in enumerate(chunk) if shown.get(i) != row.quantity]
    findings = []
    async with engine.begin() as conn:
        for row, channel_quantity in differences:
            if await push_store.still_last_sent(conn, connection_id, row.sku, row.location, row.version):
                findings.append(
                    {
                        "merchant_id": connection.merchant_id,
                        "connection_id": connection_id,
                        "sku": row.sku,
                        "location": row.location,
                        "sent_quantity": row.quantity,
                        "sent_version": row.version,
                        "channel_quantity": channel_quantity,
                        "checked_at": checked_at,
                    }
                )
        await drift_store.record_findings(conn, findings)
        if findings:
            DRIFT.labels(connection.channel_type).inc(len(findings))
            log.warning(
                "drift: the channel shows other quantities than the last sent",
                extra={"connection_id": str(connection_id), "skus": [f["sku"] for f in findings[:20]]},
            )
        await connection_store.mark_drift_checked(conn, connection_id, checked_at)
    return findings
