"""The drainer's policies through its seams, without a database: an in-memory push queue
(the contract of adapters/push_store.py) and channels that answer as each test says.

What a drain takes, sends, settles and postpones, what it does to the connection's
health, and the metrics it records. The same drain against the real database and its
lock is tests/integration/test_publisher_drain.py.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

from prometheus_client import REGISTRY

from channel_publisher.adapters.push_store import Backlog
from channel_publisher.config import PublisherSettings
from channel_publisher.domain.connection_health import ConnectionHealth, HealthChange
from channel_publisher.domain.pushes import (
    BatchResult,
    CredentialsError,
    ItemOutcome,
    PermanentChannelError,
    PushItem,
)
from channel_publisher.domain.settlement import HistoryEntry, PendingPush, Settlement
from channel_publisher.service_layer.connection_adapters import ConnectionAdapter
from channel_publisher.service_layer.connections import Connection
from channel_publisher.service_layer.drainer import Drainer

CONNECTION = uuid.uuid4()
LISTED = {"inventory_item_id": "gid://shopify/InventoryItem/1"}


def pending(sku: str, version: int = 2, *, sent_version: int = 1) -> PendingPush:
    return PendingPush(
        connection_id=CONNECTION,
        sku=sku,
        location="default",
        merchant_id=uuid.UUID(int=1),
        quantity=version * 10,
        version=version,
        stock_version=version,
        rule_ids=[],
        causation_id=f"order:{sku}",
        origin_received_at=datetime.now(UTC) - timedelta(seconds=2),
        attempts=0,
        resync=False,
        sent_version=sent_version,
        external=LISTED,
    )


class InMemoryQueue:
    """The push queue's contract in memory: rows wait until settled at the version sent."""

    def __init__(self, *rows: PendingPush, health: ConnectionHealth | None = None) -> None:
        self.pending = {(row.sku, row.location): row for row in rows}
        self.health = health or ConnectionHealth()
        self.history: list[HistoryEntry] = []
        self.last_sent: dict[str, int] = {}
        self.unmapped: list[str] = []
        self.not_before: dict[str, datetime] = {}
        self.drains = 0

    async def backlog(self, now: datetime) -> list[Backlog]:
        return [Backlog(CONNECTION, len(self.pending), bool(self.pending) and self.health.accepts_pushes(now))]

    @asynccontextmanager
    async def draining(self, connection_id: uuid.UUID) -> AsyncIterator[InMemoryDrain]:
        self.drains += 1
        yield InMemoryDrain(self)


class InMemoryDrain:
    def __init__(self, queue: InMemoryQueue) -> None:
        self.queue = queue

    async def take(self, now: datetime, limit: int) -> tuple[ConnectionHealth, list[PendingPush]] | None:
        if not self.queue.health.accepts_pushes(now):
            return self.queue.health, []
        due = [row for row in self.queue.pending.values() if self.queue.not_before.get(row.sku, now) <= now]
        return self.queue.health, due[:limit]

    async def settle(self, settlement: Settlement, finished: datetime) -> None:
        for push in settlement.accepted:
            self.queue.last_sent[push.sku] = max(push.version, self.queue.last_sent.get(push.sku, 0))
        for postponed in settlement.postponed:
            self.queue.pending[(postponed.push.sku, postponed.push.location)] = dataclasses.replace(
                postponed.push, attempts=postponed.attempts
            )
            self.queue.not_before[postponed.push.sku] = postponed.not_before
        for push in settlement.settled:
            # Only at the version sent: a newer one that arrived meanwhile stays.
            waiting = self.queue.pending.get((push.sku, push.location))
            if waiting is not None and waiting.version == push.version:
                del self.queue.pending[(push.sku, push.location)]
        self.queue.history += settlement.history
        self.queue.unmapped += [push.sku for push in settlement.unmapped]

    async def reset_health(self) -> None:
        self.queue.health = ConnectionHealth()

    async def record_failure(self, change: HealthChange) -> None:
        before = self.queue.health
        failures = change.after.consecutive_failures
        self.queue.health = (
            change.after if change.paused else ConnectionHealth(before.paused_at, before.resume_at, failures)
        )


class Channel:
    """Answers each call with `answer(items)`; `wait` seconds of pacing before it may be called."""

    channel_type = "shopify"
    batch_limit = 250

    def __init__(self, answer: object = None, wait: float = 0.0) -> None:
        self.answer = answer
        self.wait = wait
        self.calls: list[list[str]] = []

    def ready_in(self) -> float:
        return self.wait

    async def push(self, items: list[PushItem]) -> BatchResult:
        self.calls.append([item.sku for item in items])
        if isinstance(self.answer, Exception):
            raise self.answer
        if callable(self.answer):
            result: BatchResult = self.answer(items)
            return result
        return BatchResult({i: ItemOutcome("accepted", "applied") for i in range(len(items))})


class OneChannel:
    """The adapter source: the one connection of these tests, on `channel`."""

    def __init__(self, channel: Channel, settings: dict[str, object] | None = None) -> None:
        connection = Connection(CONNECTION, uuid.UUID(int=1), "shopify", "test", "http://x", {}, settings or {}, True)
        self.found = ConnectionAdapter(connection, channel)

    async def adapter_for(self, connection_id: uuid.UUID) -> ConnectionAdapter | None:
        return self.found if connection_id == CONNECTION else None


def drainer(queue: InMemoryQueue, channel: Channel, **connection_settings: object) -> Drainer:
    return Drainer(queue, OneChannel(channel, connection_settings), PublisherSettings())


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_connection_that_must_wait_for_its_pacing_takes_no_rows() -> None:
    queue = InMemoryQueue(pending("A"))
    channel = Channel(wait=5.0)
    assert await drainer(queue, channel).publish_due_pushes(CONNECTION) == 0
    assert (queue.drains, channel.calls, list(queue.pending)) == (0, [], [("A", "default")])


async def test_accepted_quantities_leave_the_queue_move_last_sent_and_are_counted() -> None:
    queue = InMemoryQueue(pending("A"), pending("B", version=5))
    accepted_before = metric("stocksync_pushes_total", channel_type="shopify", status="accepted")
    assert await drainer(queue, Channel()).publish_due_pushes(CONNECTION) == 2
    assert (queue.pending, queue.last_sent) == ({}, {"A": 2, "B": 5})
    assert [(h.sku, h.status, h.attempts) for h in queue.history] == [("A", "accepted", 1), ("B", "accepted", 1)]
    assert all(h.sync_window_ms is not None and h.sync_window_ms >= 2000 for h in queue.history)
    assert metric("stocksync_pushes_total", channel_type="shopify", status="accepted") == accepted_before + 2


async def test_stale_and_unlisted_quantities_are_settled_without_a_call_and_unlisted_ones_counted() -> None:
    stale = pending("STALE", version=3, sent_version=3)
    unlisted = dataclasses.replace(pending("UNLISTED"), external=None)
    queue = InMemoryQueue(stale, unlisted)
    channel = Channel()
    assert await drainer(queue, channel).publish_due_pushes(CONNECTION) == 2
    assert (channel.calls, queue.pending, queue.history, queue.unmapped) == ([], {}, [], ["UNLISTED"])
    assert queue.health == ConnectionHealth()  # no call: nothing to say about the connection


async def test_a_resync_sends_again_the_version_the_channel_accepted() -> None:
    queue = InMemoryQueue(dataclasses.replace(pending("A", version=3, sent_version=3), resync=True))
    channel = Channel()
    assert await drainer(queue, channel).publish_due_pushes(CONNECTION) == 1
    assert channel.calls == [["A"]]


async def test_an_item_the_channel_did_not_answer_waits_alone_and_the_connection_stays_healthy() -> None:
    queue = InMemoryQueue(pending("A"), pending("B"))
    channel = Channel(lambda items: BatchResult({0: ItemOutcome("accepted", "applied")}))
    failed_before = metric("stocksync_push_retries_total", channel_type="shopify", cause="failed")
    assert await drainer(queue, channel, pause_after_failures=1).publish_due_pushes(CONNECTION) == 1
    assert list(queue.pending) == [("B", "default")] and queue.pending[("B", "default")].attempts == 1
    assert [(h.sku, h.status) for h in queue.history] == [("A", "accepted"), ("B", "retrying")]
    assert queue.history[1].channel_response == "no answer for this item"
    assert queue.health == ConnectionHealth()
    assert metric("stocksync_push_retries_total", channel_type="shopify", cause="failed") == failed_before + 1


async def test_a_throttled_item_waits_at_least_its_retry_after_and_counts_as_throttled() -> None:
    queue = InMemoryQueue(pending("A"))
    channel = Channel(lambda items: BatchResult({0: ItemOutcome("retry", "HTTP 429", 30.0)}))
    throttled_before = metric("stocksync_push_retries_total", channel_type="shopify", cause="throttled")
    before = datetime.now(UTC)
    assert await drainer(queue, channel).publish_due_pushes(CONNECTION) == 0
    assert queue.not_before["A"] >= before + timedelta(seconds=30)
    assert metric("stocksync_push_retries_total", channel_type="shopify", cause="throttled") == throttled_before + 1
    # Until then the row is not taken again and the channel not called.
    assert await drainer(queue, channel).publish_due_pushes(CONNECTION) == 0
    assert channel.calls == [["A"]]


async def test_a_credentials_error_keeps_every_quantity_waiting_without_history_and_counts_a_failure() -> None:
    queue = InMemoryQueue(pending("A"), pending("B"))
    channel = Channel(CredentialsError("refresh token revoked"))
    assert await drainer(queue, channel).publish_due_pushes(CONNECTION) == 0
    assert sorted(queue.pending) == [("A", "default"), ("B", "default")]
    assert queue.history == []  # no SKU is blamed
    assert queue.health.consecutive_failures == 1 and queue.health.paused_at is None


async def test_a_connection_whose_calls_are_refused_is_paused_at_the_threshold_and_sends_nothing_meanwhile() -> None:
    queue = InMemoryQueue(pending("A"), pending("B"))
    channel = Channel(PermanentChannelError("HTTP 401: bad token"))
    drain = drainer(queue, channel, pause_after_failures=2, pause_duration_s=300)
    # A refused call rejects its items for good: they leave the queue with the refusal.
    assert await drain.publish_due_pushes(CONNECTION) == 2
    assert [(h.status, h.channel_response) for h in queue.history] == [("rejected", "HTTP 401: bad token")] * 2
    assert (queue.health.consecutive_failures, queue.health.paused_at) == (1, None)

    queue.pending[("C", "default")] = pending("C")
    assert await drain.publish_due_pushes(CONNECTION) == 1
    assert queue.health.consecutive_failures == 2 and queue.health.paused_at is not None
    assert metric("stocksync_connection_paused", connection_id=str(CONNECTION), channel_type="shopify") == 1

    # Paused: what arrives waits, the channel is not called.
    queue.pending[("D", "default")] = pending("D")
    assert await drain.publish_due_pushes(CONNECTION) == 0
    assert len(channel.calls) == 2 and list(queue.pending) == [("D", "default")]

    # Once resume_at has passed, a call that goes through clears the pause.
    queue.health = dataclasses.replace(queue.health, resume_at=datetime.now(UTC) - timedelta(seconds=1))
    channel.answer = None
    assert await drain.publish_due_pushes(CONNECTION) == 1
    assert queue.health == ConnectionHealth()
    assert metric("stocksync_connection_paused", connection_id=str(CONNECTION), channel_type="shopify") == 0


async def test_a_connection_that_is_gone_is_not_drained() -> None:
    queue = InMemoryQueue(pending("A"))
    assert await drainer(queue, Channel()).publish_due_pushes(uuid.uuid4()) == 0
    assert queue.drains == 0
