"""Sending pending pushes: one drain task per connection with work.

A drain takes up to the channel's batch limit of the connection's due rows under its
drain lock (the lock protocol is in adapters/push_store.py), calls the channel, and
settles the call in the same transaction. What the rows become is the domain's decision
(domain/settlement.py), and so is what the call does to the connection's health
(domain/connection_health.py); the drainer schedules the drains, applies those decisions
through the store, and records the metrics.

Transient failures set `not_before` instead of sleeping while holding the rows; a
connection that must wait (rate limit, Retry-After, Mirakl's once a minute) takes no rows
until it may call. A connection whose calls keep failing as a whole is paused (an alert:
log and gauge); its quantities keep coalescing while paused. It tries again by itself
after `pause_duration_s`, or when the merchant resumes it.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from prometheus_client import Counter, Gauge, Histogram

from stocksync_common.contracts import ChannelQuantityChanged, utcnow
from stocksync_common.logging import causation
from stocksync_common.periodic import Periodic
from stocksync_common.tracing import pushing

from channel_publisher.adapters.push_store import Backlog, PushStore
from channel_publisher.config import PublisherSettings
from channel_publisher.domain.connection_health import ConnectionHealth, HealthChange, after_call, failed_as_a_whole
from channel_publisher.domain.pushes import (
    ChannelAdapter,
    CredentialsError,
    ItemOutcome,
    PermanentChannelError,
    TransientChannelError,
)
from channel_publisher.domain.settlement import Batch, PendingPush, Settlement, settle_call
from channel_publisher.service_layer.connection_adapters import AdapterSource, ConnectionAdapter

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
# Quantities put back to wait, apart from the pushes' outcomes: "throttled" when the
# channel said when to come back (429, a throttled answer with Retry-After), "failed"
# for the other transient failures (5xx, timeouts). Throttling is the channel's normal
# pacing, not an error: the error alerts leave it out.
PUSH_RETRIES = Counter(
    "stocksync_push_retries_total", "Quantities postponed for a retry, by cause", ["channel_type", "cause"]
)

# The longest a postponed row waits for the scan that sends it again; a longer
# Retry-After is honoured by `not_before` itself.
MAX_WAKE_DELAY_S = 60.0


class DrainTransaction(Protocol):
    """One drain of one connection (adapters/push_store.py `Drain`)."""

    async def take(self, now: datetime, limit: int) -> tuple[ConnectionHealth, list[PendingPush]] | None: ...

    async def settle(self, settlement: Settlement, finished: datetime) -> None: ...

    async def reset_health(self) -> None: ...

    async def record_failure(self, change: HealthChange) -> None: ...


class PushQueue(Protocol):
    """The pending pushes (adapters/push_store.py `PushStore`)."""

    async def backlog(self, now: datetime) -> list[Backlog]: ...

    def draining(self, connection_id: uuid.UUID) -> AbstractAsyncContextManager[DrainTransaction]: ...


@dataclass
class CallAnswer:
    """The channel's answer to one call, by item index."""

    outcomes: dict[int, ItemOutcome] = field(default_factory=dict)
    # The channel refused the call as a whole (PermanentChannelError).
    refused: bool = False
    # The connection's credentials failed: the items wait, and no SKU is blamed.
    credentials_error: str | None = None


async def call_channel(adapter: ChannelAdapter, batch: Batch) -> CallAnswer:
    """The channel's answer to `batch.to_send`, a failure of the whole call as every item's."""
    count = len(batch.to_send)
    try:
        return CallAnswer((await adapter.push([row.item() for row in batch.to_send])).outcomes)
    except (TransientChannelError, PermanentChannelError) as exc:
        outcome = ItemOutcome.of_failed_call(exc)
        return CallAnswer(dict.fromkeys(range(count), outcome), refused=isinstance(exc, PermanentChannelError))
    except CredentialsError as exc:
        problem = f"credentials: {exc}"
        return CallAnswer(dict.fromkeys(range(count), ItemOutcome("retry", problem)), credentials_error=problem)


class Drainer:
    def __init__(self, store: PushQueue, adapters: AdapterSource, settings: PublisherSettings) -> None:
        self.store = store
        self.adapters = adapters
        self.settings = settings
        # Looks for connections with due pushes every poll interval, or when woken.
        self._scan = Periodic("push-scan", settings.push_poll_interval_s, self._start_due_drains)
        self._stopping = False
        self._drains: dict[uuid.UUID, asyncio.Task[None]] = {}
        # Connections given new work while their drain was running: it looks once more.
        self._kicked: set[uuid.UUID] = set()

    def wake(self) -> None:
        """Look for due connections now."""
        self._scan.wake()

    def wake_later(self, delay: float) -> None:
        asyncio.get_running_loop().call_later(delay, self._scan.wake)

    def drain_now(self, connection_ids: Iterable[uuid.UUID]) -> None:
        """These connections have new work: drain them now, without a scan for due ones."""
        for connection_id in connection_ids:
            self._start_drain(connection_id)

    def request_stop(self) -> None:
        self._stopping = True
        self._scan.request_stop()

    async def run(self) -> None:
        try:
            await self._scan.run()
        finally:
            # In-flight calls finish and commit before the process exits.
            if self._drains:
                await asyncio.wait(list(self._drains.values()), timeout=self.settings.graceful_shutdown_timeout_s)

    async def _start_due_drains(self) -> None:
        backlog = await self.store.backlog(utcnow())
        for connection in backlog:
            PENDING.labels(str(connection.connection_id)).set(connection.pending)
        for connection in backlog:
            if connection.due:
                self._start_drain(connection.connection_id)

    def _start_drain(self, connection_id: uuid.UUID) -> None:
        if self._stopping:
            return
        task = self._drains.get(connection_id)
        if task is None or task.done():
            self._drains[connection_id] = asyncio.create_task(self._drain(connection_id))
        else:
            self._kicked.add(connection_id)

    async def _drain(self, connection_id: uuid.UUID) -> None:
        while not self._stopping:
            # Work enqueued after this batch's read is seen by the next one, not left
            # for the poll: the kick arrives while this task still runs.
            self._kicked.discard(connection_id)
            try:
                if await self.publish_due_pushes(connection_id) == 0 and connection_id not in self._kicked:
                    return
            except Exception:
                log.exception("push batch failed", extra={"connection_id": str(connection_id)})
                return

    async def publish_due_pushes(self, connection_id: uuid.UUID) -> int:
        """Send one batch for one connection; return how many pending rows it settled."""
        found = await self.adapters.adapter_for(connection_id)
        if found is None:
            return 0
        # Pacing first: a connection that must wait takes no rows (nor a statement).
        wait = found.adapter.ready_in()
        if wait > 0:
            self.wake_later(wait)
            return 0
        now = utcnow()
        async with self.store.draining(connection_id) as drain:
            taken = await drain.take(now, found.adapter.batch_limit)
            if taken is None:
                return 0  # the connection is gone, or another instance is draining it
            health, rows = taken
            if not health.accepts_pushes(now) or not rows:
                return 0
            batch = Batch.of(rows)
            answer = CallAnswer()
            if batch.to_send:
                answer = await self._call(found, batch)
            finished = utcnow()
            settlement = settle_call(
                batch, answer.outcomes, finished, retries_in_history=answer.credentials_error is None
            )
            self._count(found.connection.channel_type, settlement, finished)
            await drain.settle(settlement, finished)
            if batch.to_send:
                failed_whole = failed_as_a_whole(
                    sent=len(batch.to_send),
                    accepted=len(settlement.accepted),
                    retrying=len(settlement.postponed),
                    refused=answer.refused,
                )
                CHANNEL_CALLS.labels(found.connection.channel_type, "failed" if failed_whole else "ok").inc()
                await self._track_health(drain, found, health, failed_whole, answer, finished)
            return len(settlement.settled)

    async def _call(self, found: ConnectionAdapter, batch: Batch) -> CallAnswer:
        connection = found.connection
        to_send = batch.to_send
        with (
            causation(to_send[0].causation_id if len(to_send) == 1 else None),
            pushing(connection.channel_type, connection.connection_id, to_send) as spans,
        ):
            answer = await call_channel(found.adapter, batch)
            if spans.spans:
                for index, outcome in answer.outcomes.items():
                    spans.answered(index, outcome.status, outcome.channel_response)
        return answer

    def _count(self, channel_type: str, settlement: Settlement, finished: datetime) -> None:
        for entry in settlement.history:
            if entry.status != "retrying":
                PUSHES.labels(channel_type, entry.status).inc()
        for push in settlement.accepted:
            if push.origin_received_at is not None:
                SYNC_WINDOW.labels(channel_type).observe((finished - push.origin_received_at).total_seconds())
        if not settlement.postponed:
            return
        for postponed in settlement.postponed:
            cause = "throttled" if postponed.outcome.retry_after is not None else "failed"
            PUSH_RETRIES.labels(channel_type, cause).inc()
        log.warning(
            "channel call failed for %d items; retrying later",
            len(settlement.postponed),
            extra={"error": settlement.postponed[0].outcome.channel_response},
        )
        self.wake_later(min(settlement.soonest_retry_s or 0.0, MAX_WAKE_DELAY_S))

    async def _track_health(
        self,
        drain: DrainTransaction,
        found: ConnectionAdapter,
        before: ConnectionHealth,
        failed_whole: bool,
        answer: CallAnswer,
        now: datetime,
    ) -> None:
        """Count calls failing as a whole; pause the connection at the threshold, resume on
        success (domain/connection_health.py decides)."""
        connection = found.connection
        limits = connection.settings
        change = after_call(
            before,
            failed_whole=failed_whole,
            now=now,
            pause_after_failures=int(limits.get("pause_after_failures", self.settings.pause_after_failures)),
            pause_duration_s=float(limits.get("pause_duration_s", self.settings.pause_duration_s)),
            last_error=next(iter(answer.outcomes.values())).channel_response
            if answer.outcomes
            else "channel calls failing",
        )
        if not failed_whole:
            if change.after != before:
                await drain.reset_health()
                if change.resumed:
                    log.warning("connection resumed by itself", extra={"connection_id": str(connection.connection_id)})
                PAUSED.labels(str(connection.connection_id), connection.channel_type).set(0)
            return
        if change.paused:
            PAUSED.labels(str(connection.connection_id), connection.channel_type).set(1)
            log.error(
                "connection paused: its channel keeps failing",
                extra={
                    "connection_id": str(connection.connection_id),
                    "channel_type": connection.channel_type,
                    "failures": change.after.consecutive_failures,
                    "error": change.pause_reason,
                },
            )
        await drain.record_failure(change)


@dataclass(frozen=True)
class PushIntake:
    """What the channel.quantity.v1 consumer works with: the store that queues, the drainer that sends."""

    store: PushStore
    drainer: Drainer


async def queue_channel_quantities(changes: Sequence[ChannelQuantityChanged], intake: PushIntake) -> None:
    """Queue a consumer batch (coalesced: the newest quantity per key); the connections
    with new work start draining now, without waiting for a scan."""
    intake.drainer.drain_now(await intake.store.enqueue(changes))
