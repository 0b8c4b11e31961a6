"""Sending pending pushes: one drain task per connection with work.

A drain takes up to the channel's batch limit of due pending rows (locked with SKIP
LOCKED, so two publisher instances never send the same row), drops what is stale,
calls the channel, and in the same transaction records the history, moves `last_sent`
forward and deletes what was sent. A crash mid-call rolls all of it back: the same
absolute quantity is sent again, which is harmless. Transient failures set
`not_before` instead of sleeping while holding the rows.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import timedelta
from typing import Any, Protocol

import httpx
import sqlalchemy as sa
from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy.dialects import postgresql as pg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from stocksync_common.contracts import utcnow
from stocksync_common.logging import causation

from channel_publisher.adapters.channels.shopify import ShopifyAdapter
from channel_publisher.adapters.tables import last_sent, listings, pending_pushes, pushes
from channel_publisher.config import PublisherSettings
from channel_publisher.domain.backoff import retry_delay
from channel_publisher.domain.pushes import (
    BatchResult,
    ItemOutcome,
    PermanentChannelError,
    PushItem,
    TransientChannelError,
)
from channel_publisher.service_layer.connections import Connection, load_connection

log = logging.getLogger(__name__)

PUSHES = Counter("stocksync_pushes_total", "Pushed quantities by outcome", ["channel_type", "status"])
SYNC_WINDOW = Histogram(
    "stocksync_sync_window_seconds",
    "From the order reaching order-ingest to the channel accepting the new quantity",
    ["channel_type"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
PENDING = Gauge("stocksync_pending_pushes", "Quantities waiting to be sent", ["connection_id"])


class ChannelAdapter(Protocol):
    batch_limit: int

    async def push(self, items: list[PushItem]) -> BatchResult: ...


ADAPTERS: dict[str, Any] = {"shopify": ShopifyAdapter}


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
        try:
            while not self._stopping:
                try:
                    await self._start_due_drains()
                except Exception:
                    log.exception("could not look for pending pushes")
                try:
                    await asyncio.wait_for(self._wake.wait(), self.settings.push_poll_interval_s)
                except TimeoutError:
                    pass
                self._wake.clear()
        finally:
            # In-flight calls finish and commit before the process exits.
            if self._drains:
                await asyncio.wait(list(self._drains.values()), timeout=self.settings.graceful_shutdown_timeout_s)
            await self.http.aclose()

    async def _start_due_drains(self) -> None:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(
                sa.select(pending_pushes.c.connection_id, sa.func.count())
                .where(sa.or_(pending_pushes.c.not_before.is_(None), pending_pushes.c.not_before <= utcnow()))
                .group_by(pending_pushes.c.connection_id)
            )).all()
        for connection_id, count in rows:
            PENDING.labels(str(connection_id)).set(count)
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

    async def _adapter(self, conn: AsyncConnection, connection_id: uuid.UUID) -> tuple[Connection, ChannelAdapter] | None:
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
            found = await self._adapter(conn, connection_id)
            if found is None:
                return 0
            connection, adapter = found
            rows = (await conn.execute(
                sa.select(pending_pushes)
                .where(pending_pushes.c.connection_id == connection_id,
                       sa.or_(pending_pushes.c.not_before.is_(None), pending_pushes.c.not_before <= utcnow()))
                .order_by(pending_pushes.c.enqueued_at, pending_pushes.c.sku)
                .limit(adapter.batch_limit)
                .with_for_update(skip_locked=True)
            )).all()
            if not rows:
                return 0
            keys = [(row.sku, row.location) for row in rows]
            sent = {
                (r.sku, r.location): r.version
                for r in (await conn.execute(
                    sa.select(last_sent).where(last_sent.c.connection_id == connection_id,
                                               sa.tuple_(last_sent.c.sku, last_sent.c.location).in_(keys))
                )).all()
            }
            mapping = {
                (r.sku, r.location): dict(r.external)
                for r in (await conn.execute(
                    sa.select(listings).where(listings.c.connection_id == connection_id,
                                              sa.tuple_(listings.c.sku, listings.c.location).in_(keys))
                )).all()
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
            if to_send:
                items = [PushItem(r.sku, r.location, r.quantity, mapping[(r.sku, r.location)], r.version) for r in to_send]
                with causation(to_send[0].causation_id if len(to_send) == 1 else None):
                    try:
                        outcomes = (await adapter.push(items)).outcomes
                    except TransientChannelError as exc:
                        await self._postpone(conn, to_send, exc)
                        to_send_keys = {(r.sku, r.location) for r in to_send}
                        rows = [r for r in rows if (r.sku, r.location) not in to_send_keys]
                        to_send = []
                        log.warning("channel call failed; retrying later", extra={"error": str(exc)})
                    except PermanentChannelError as exc:
                        outcomes = {i: ItemOutcome("rejected", str(exc)) for i in range(len(to_send))}
            finished = utcnow()
            accepted = []
            for index, row in enumerate(to_send):
                outcome = outcomes.get(index, ItemOutcome("rejected", "no answer for this item"))
                history.append(_history(row, outcome.status, outcome.channel_response, finished))
                PUSHES.labels(connection.channel_type, outcome.status).inc()
                if outcome.status == "accepted":
                    accepted.append(row)
                    if row.origin_received_at is not None:
                        SYNC_WINDOW.labels(connection.channel_type).observe(
                            (finished - row.origin_received_at).total_seconds()
                        )
            if accepted:
                stmt = pg.insert(last_sent).values([
                    {"connection_id": connection_id, "sku": r.sku, "location": r.location,
                     "version": r.version, "quantity": r.quantity, "sent_at": finished}
                    for r in accepted
                ])
                await conn.execute(stmt.on_conflict_do_update(
                    index_elements=[last_sent.c.connection_id, last_sent.c.sku, last_sent.c.location],
                    set_={"version": stmt.excluded.version, "quantity": stmt.excluded.quantity,
                          "sent_at": stmt.excluded.sent_at},
                    where=last_sent.c.version < stmt.excluded.version,
                ))
            if history:
                await conn.execute(sa.insert(pushes), history)
            # Everything left in `rows` is settled: sent, rejected, unmapped or stale.
            settled = rows
            if settled:
                await conn.execute(sa.delete(pending_pushes).where(
                    pending_pushes.c.connection_id == connection_id,
                    sa.tuple_(pending_pushes.c.sku, pending_pushes.c.location, pending_pushes.c.version).in_(
                        [(r.sku, r.location, r.version) for r in settled]
                    ),
                ))
            return len(settled)

    async def _postpone(self, conn: AsyncConnection, rows: list[Any], exc: TransientChannelError) -> None:
        now = utcnow()
        for row in rows:
            delay = retry_delay(row.attempts + 1, exc.retry_after)
            await conn.execute(
                sa.update(pending_pushes)
                .where(pending_pushes.c.connection_id == row.connection_id, pending_pushes.c.sku == row.sku,
                       pending_pushes.c.location == row.location)
                .values(attempts=row.attempts + 1, not_before=now + timedelta(seconds=delay))
            )
        await conn.execute(sa.insert(pushes), [_history(r, "retrying", str(exc), now, r.attempts + 1) for r in rows])
        self.wake_later(min(retry_delay(rows[0].attempts + 1, exc.retry_after), 60.0))

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
        "merchant_id": row.merchant_id, "connection_id": row.connection_id, "sku": row.sku,
        "location": row.location, "quantity": row.quantity, "version": row.version,
        "stock_version": row.stock_version, "rule_ids": list(row.rule_ids), "causation_id": row.causation_id,
        "status": status, "attempts": attempts if attempts is not None else row.attempts + 1,
        "channel_response": response[:2000], "origin_received_at": row.origin_received_at,
        "finished_at": finished, "sync_window_ms": window,
    }
