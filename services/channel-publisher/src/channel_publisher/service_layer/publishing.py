"""Sending pending pushes: one drain task per connection with work.

A drain takes up to the channel's batch limit of due pending rows (locked with SKIP
LOCKED, so two publisher instances never send the same row), drops what is stale,
calls the channel, and in the same transaction records the history, moves `last_sent`
forward and deletes what was sent. A crash mid-call rolls all of it back: the same
absolute quantity is sent again, which is harmless. Transient failures set
`not_before` instead of sleeping while holding the rows; a connection that must wait
(rate limit, Retry-After, Mirakl's once a minute) takes no rows until it may call.

A connection whose calls keep failing as a whole is paused (an alert: log and gauge);
its quantities keep coalescing while paused. It tries again by itself after
`pause_duration_s`, or when the merchant resumes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
import sqlalchemy as sa
from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from stocksync_common.contracts import utcnow
from stocksync_common.logging import causation

from channel_publisher.adapters.channels.amazon import AmazonAdapter
from channel_publisher.adapters.channels.ebay import EbayAdapter
from channel_publisher.adapters.channels.generic_webhook import GenericWebhookAdapter
from channel_publisher.adapters.channels.mirakl import MiraklAdapter
from channel_publisher.adapters.channels.shopify import ShopifyAdapter
from channel_publisher.adapters.channels.walmart import WalmartAdapter
from channel_publisher.adapters.channels.woocommerce import WooCommerceAdapter
from channel_publisher.adapters.tables import connections, last_sent, listings, pending_pushes, pushes
from channel_publisher.config import PublisherSettings
from channel_publisher.domain.backoff import retry_delay
from channel_publisher.domain.pushes import (
    ChannelAdapter,
    ItemOutcome,
    PermanentChannelError,
    PushItem,
    TransientChannelError,
)
from channel_publisher.service_layer.connections import Connection, load_connection
from channel_publisher.service_layer.drift import run_drift_checks

log = logging.getLogger(__name__)

PUSHES = Counter("stocksync_pushes_total", "Pushed quantities by outcome", ["channel_type", "status"])
SYNC_WINDOW = Histogram(
    "stocksync_sync_window_seconds",
    "From the order reaching order-ingest to the channel accepting the new quantity",
    ["channel_type"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
PENDING = Gauge("stocksync_pending_pushes", "Quantities waiting to be sent", ["connection_id"])
PAUSED = Gauge(
    "stocksync_connection_paused", "1 while a connection is paused (alert on it)", ["connection_id", "channel_type"]
)
CHANNEL_CALLS = Counter("stocksync_channel_calls_total", "Channel calls by result", ["channel_type", "result"])


ADAPTERS: dict[str, Any] = {
    "shopify": ShopifyAdapter,
    "woocommerce": WooCommerceAdapter,
    "amazon": AmazonAdapter,
    "ebay": EbayAdapter,
    "mirakl": MiraklAdapter,
    "walmart": WalmartAdapter,
    "generic": GenericWebhookAdapter,
}


class Publisher:
    def __init__(self, engine: AsyncEngine, settings: PublisherSettings) -> None:
        self.engine = engine
        self.settings = settings
        self.http = httpx.AsyncClient(timeout=settings.channel_timeout_s)
        self._wake = asyncio.Event()
        self._stopping = False
        self._drains: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._adapters: dict[uuid.UUID, tuple[Connection, ChannelAdapter]] = {}

    def wake(self) -> None:
        self._wake.set()

    def request_stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        drift = asyncio.create_task(run_drift_checks(self))
        try:
            while not self._stopping:
                try:
                    await self._start_due_drains()
                except Exception:
                    log.exception("could not look for pending pushes")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.settings.push_poll_interval_s)
                self._wake.clear()
        finally:
            drift.cancel()
            # In-flight calls finish and commit before the process exits.
            if self._drains:
                await asyncio.wait(list(self._drains.values()), timeout=self.settings.graceful_shutdown_timeout_s)
            await self.http.aclose()

    @property
    def stopping(self) -> bool:
        return self._stopping

    async def _start_due_drains(self) -> None:
        now = utcnow()
        async with self.engine.connect() as conn:
            counts = (
                await conn.execute(
                    sa.select(pending_pushes.c.connection_id, sa.func.count()).group_by(pending_pushes.c.connection_id)
                )
            ).all()
            due = set(
                (
                    await conn.execute(
                        sa.select(pending_pushes.c.connection_id)
                        .distinct()
                        .join(connections, connections.c.connection_id == pending_pushes.c.connection_id)
                        .where(
                            sa.or_(pending_pushes.c.not_before.is_(None), pending_pushes.c.not_before <= now),
                            sa.or_(connections.c.paused_at.is_(None), connections.c.resume_at <= now),
                        )
                    )
                ).scalars()
            )
        for connection_id, count in counts:
            PENDING.labels(str(connection_id)).set(count)
        for connection_id in due:
            task = self._drains.get(connection_id)
            if task is None or task.done():
                self._drains[connection_id] = asyncio.create_task(self._drain(connection_id))

    async def _drain(self, connection_id: uuid.UUID) -> None:
        while not self._stopping:
            try:
                if await self.publish_due_pushes(connection_id) == 0:
                    return
            except Exception:
                log.exception("push batch failed", extra={"connection_id": str(connection_id)})
                return

    async def adapter_for(
        self, conn: AsyncConnection, connection_id: uuid.UUID
    ) -> tuple[Connection, ChannelAdapter] | None:
        """The connection's adapter, kept for the life of the process so its pacing holds."""
        cached = self._adapters.get(connection_id)
        if cached is not None:
            return cached
        connection = await load_connection(conn, connection_id)
        if connection is None or connection.channel_type not in ADAPTERS:
            return None
        adapter = ADAPTERS[connection.channel_type](
            self.http, connection.base_url, connection.credentials, connection.settings
        )
        self._adapters[connection_id] = (connection, adapter)
        return connection, adapter

    async def publish_due_pushes(self, connection_id: uuid.UUID) -> int:
        """Send one batch for one connection; return how many pending rows it settled."""
        async with self.engine.begin() as conn:
            found = await self.adapter_for(conn, connection_id)
            if found is None:
                return 0
            connection, adapter = found
            state = (
                await conn.execute(
                    sa.select(
                        connections.c.paused_at, connections.c.resume_at, connections.c.consecutive_failures
                    ).where(connections.c.connection_id == connection_id)
                )
            ).one()
            now = utcnow()
            if state.paused_at is not None and (state.resume_at is None or state.resume_at > now):
                return 0
            wait = adapter.ready_in()
            if wait > 0:
                self.wake_later(wait)
                return 0
            rows = (
                await conn.execute(
                    sa.select(pending_pushes)
                    .where(
                        pending_pushes.c.connection_id == connection_id,
                        sa.or_(pending_pushes.c.not_before.is_(None), pending_pushes.c.not_before <= now),
                    )
                    .order_by(pending_pushes.c.enqueued_at, pending_pushes.c.sku)
                    .limit(adapter.batch_limit)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if not rows:
                return 0
            keys = [(row.sku, row.location) for row in rows]
            sent = {
                (r.sku, r.location): r.version
                for r in (
                    await conn.execute(
                        sa.select(last_sent).where(
                            last_sent.c.connection_id == connection_id,
                            sa.tuple_(last_sent.c.sku, last_sent.c.location).in_(keys),
                        )
                    )
                ).all()
            }
            mapping = {
                (r.sku, r.location): dict(r.external)
                for r in (
                    await conn.execute(
                        sa.select(listings).where(
                            listings.c.connection_id == connection_id,
                            sa.tuple_(listings.c.sku, listings.c.location).in_(keys),
                        )
                    )
                ).all()
            }
            to_send = []
            history: list[dict[str, Any]] = []
            for row in rows:
                if sent.get((row.sku, row.location), 0) >= row.version:
                    continue  # stale: the channel already has something newer
                if (row.sku, row.location) not in mapping:
                    history.append(_history(row, "unmapped", "no listing mapping for this SKU on the channel"))
                    continue
                to_send.append(row)
            outcomes: dict[int, ItemOutcome] = {}
            call_failed = False
            if to_send:
                items = [
                    PushItem(r.sku, r.location, r.quantity, mapping[(r.sku, r.location)], r.version) for r in to_send
                ]
                with causation(to_send[0].causation_id if len(to_send) == 1 else None):
                    try:
                        outcomes = (await adapter.push(items)).outcomes
                    except TransientChannelError as exc:
                        outcomes = {i: ItemOutcome("retry", str(exc), exc.retry_after) for i in range(len(to_send))}
                    except PermanentChannelError as exc:
                        call_failed = True
                        outcomes = {i: ItemOutcome("rejected", str(exc)) for i in range(len(to_send))}
            finished = utcnow()
            accepted, retrying = [], []
            for index, row in enumerate(to_send):
                outcome = outcomes.get(index, ItemOutcome("retry", "no answer for this item"))
                if outcome.status == "retry":
                    retrying.append((row, outcome))
                    continue
                history.append(_history(row, outcome.status, outcome.channel_response, finished))
                PUSHES.labels(connection.channel_type, outcome.status).inc()
                if outcome.status == "accepted":
                    accepted.append(row)
                    if row.origin_received_at is not None:
                        SYNC_WINDOW.labels(connection.channel_type).observe(
                            (finished - row.origin_received_at).total_seconds()
                        )
            if accepted:
                stmt = pg.insert(last_sent).values(
                    [
                        {
                            "connection_id": connection_id,
                            "sku": r.sku,
                            "location": r.location,
                            "version": r.version,
                            "quantity": r.quantity,
                            "sent_at": finished,
                        }
                        for r in accepted
                    ]
                )
                await conn.execute(
                    stmt.on_conflict_do_update(
                        index_elements=[last_sent.c.connection_id, last_sent.c.sku, last_sent.c.location],
                        set_={
                            "version": stmt.excluded.version,
                            "quantity": stmt.excluded.quantity,
                            "sent_at": stmt.excluded.sent_at,
                        },
                        where=last_sent.c.version < stmt.excluded.version,
                    )
                )
            if retrying:
                history.extend(await self._postpone(conn, retrying, finished))
            if history:
                await conn.execute(sa.insert(pushes), history)
            # Everything taken except what waits for a retry is settled: sent, rejected, unmapped or stale.
            retry_keys = {(r.sku, r.location) for r, _ in retrying}
            settled = [r for r in rows if (r.sku, r.location) not in retry_keys]
            if settled:
                await conn.execute(
                    sa.delete(pending_pushes).where(
                        pending_pushes.c.connection_id == connection_id,
                        sa.tuple_(pending_pushes.c.sku, pending_pushes.c.location, pending_pushes.c.version).in_(
                            [(r.sku, r.location, r.version) for r in settled]
                        ),
                    )
                )
            if to_send:
                failed_whole = not accepted and (call_failed or len(retrying) == len(to_send))
                CHANNEL_CALLS.labels(connection.channel_type, "failed" if failed_whole else "ok").inc()
                await self._track_health(conn, connection, state, failed_whole, outcomes, finished)
            return len(settled)

    async def _postpone(
        self, conn: AsyncConnection, retrying: list[tuple[Any, ItemOutcome]], now: datetime
    ) -> list[dict[str, Any]]:
        """Only the items that failed transiently wait (backoff with jitter, never before Retry-After)."""
        soonest = None
        for row, outcome in retrying:
            delay = retry_delay(row.attempts + 1, outcome.retry_after)
            soonest = delay if soonest is None else min(soonest, delay)
            await conn.execute(
                sa.update(pending_pushes)
                .where(
                    pending_pushes.c.connection_id == row.connection_id,
                    pending_pushes.c.sku == row.sku,
                    pending_pushes.c.location == row.location,
                    pending_pushes.c.version == row.version,
                )
                .values(attempts=row.attempts + 1, not_before=now + timedelta(seconds=delay))
            )
        log.warning(
            "channel call failed for %d items; retrying later",
            len(retrying),
            extra={"error": retrying[0][1].channel_response},
        )
        self.wake_later(min(soonest or 0.0, 60.0))
        return [_history(row, "retrying", outcome.channel_response, now, row.attempts + 1) for row, outcome in retrying]

    async def _track_health(
        self,
        conn: AsyncConnection,
        connection: Connection,
        state: Any,
        failed_whole: bool,
        outcomes: dict[int, ItemOutcome],
        now: datetime,
    ) -> None:
        """Count calls failing as a whole; pause the connection at the threshold, resume on success."""
        if not failed_whole:
            if state.consecutive_failures or state.paused_at is not None:
                await conn.execute(
                    sa.update(connections)
                    .where(connections.c.connection_id == connection.connection_id)
                    .values(consecutive_failures=0, paused_at=None, pause_reason=None, resume_at=None)
                )
                if state.paused_at is not None:
                    log.warning("connection resumed by itself", extra={"connection_id": str(connection.connection_id)})
                PAUSED.labels(str(connection.connection_id), connection.channel_type).set(0)
            return
        failures = state.consecutive_failures + 1
        values: dict[str, Any] = {"consecutive_failures": failures}
        limits = connection.settings
        if failures >= int(limits.get("pause_after_failures", self.settings.pause_after_failures)):
            reason = next(iter(outcomes.values())).channel_response if outcomes else "channel calls failing"
            values |= {
                "paused_at": state.paused_at or now,
                "pause_reason": f"{failures} failed calls in a row; last: {reason}"[:2000],
                "resume_at": now
                + timedelta(seconds=float(limits.get("pause_duration_s", self.settings.pause_duration_s))),
            }
            PAUSED.labels(str(connection.connection_id), connection.channel_type).set(1)
            log.error(
                "connection paused: its channel keeps failing",
                extra={
                    "connection_id": str(connection.connection_id),
                    "channel_type": connection.channel_type,
                    "failures": failures,
                    "error": reason,
                },
            )
        await conn.execute(
            sa.update(connections).where(connections.c.connection_id == connection.connection_id).values(**values)
        )

    def wake_later(self, delay: float) -> None:
        asyncio.get_running_loop().call_later(delay, self._wake.set)


def _history(row: Any, status: str, response: str, finished: Any = None, attempts: int | None = None) -> dict[str, Any]:
    finished = finished or utcnow()
    window = (
        (finished - row.origin_received_at).total_seconds() * 1000
        if status == "accepted" and row.origin_received_at is not None
        else None
    )
    return {
        "merchant_id": row.merchant_id,
        "connection_id": row.connection_id,
        "sku": row.sku,
        "location": row.location,
        "quantity": row.quantity,
        "version": row.version,
        "stock_version": row.stock_version,
        "rule_ids": list(row.rule_ids),
        "causation_id": row.causation_id,
        "status": status,
        "attempts": attempts if attempts is not None else row.attempts + 1,
        "channel_response": response[:2000],
        "origin_received_at": row.origin_received_at,
        "finished_at": finished,
        "sync_window_ms": window,
    }
