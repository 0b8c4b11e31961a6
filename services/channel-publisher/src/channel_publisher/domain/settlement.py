"""What one channel call settles, pure: the drain's decisions between the taken rows and
the channel's answer, without a database, a clock or a channel.

Of the rows a drain takes, a stale one (the channel has it or something newer,
domain/versions.py) is settled without a call, one without a listing is counted as
unmapped, and the rest are sent. After the call every taken row leaves the queue except
those that wait for a retry: an accepted one moves `last_sent` forward, a rejected one
is only recorded, a retried one waits (backoff with jitter, never before Retry-After)
with its attempt counted.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from channel_publisher.domain.backoff import retry_delay
from channel_publisher.domain.pushes import ItemOutcome, PushItem
from channel_publisher.domain.versions import needs_sending

# An item the channel gave no answer for is tried again.
NO_ANSWER = ItemOutcome("retry", "no answer for this item")


@dataclass(frozen=True)
class PendingPush:
    """A pending row taken for sending, with what the channel has and the listing."""

    connection_id: uuid.UUID
    sku: str
    location: str
    merchant_id: uuid.UUID
    quantity: int
    version: int
    stock_version: int
    rule_ids: list[uuid.UUID]
    causation_id: str
    origin_received_at: datetime | None
    attempts: int
    resync: bool
    # The version the channel last accepted (0 when none yet).
    sent_version: int
    # The listing's ids on the channel; None when the connection does not list the SKU.
    external: dict[str, Any] | None
    trace_context: str | None = None
    # Why an adaptive buffer hid what it hid (one line per such rule); None otherwise.
    reason: str | None = None

    def item(self) -> PushItem:
        return PushItem(self.sku, self.location, self.quantity, dict(self.external or {}), self.version)


@dataclass(frozen=True)
class HistoryEntry:
    """A row of the push history: one quantity's fate in one call."""

    merchant_id: uuid.UUID
    connection_id: uuid.UUID
    sku: str
    location: str
    quantity: int
    version: int
    stock_version: int
    rule_ids: list[uuid.UUID]
    causation_id: str
    status: str
    attempts: int
    channel_response: str
    origin_received_at: datetime | None
    finished_at: datetime
    sync_window_ms: float | None
    reason: str | None

    @classmethod
    def of(cls, push: PendingPush, status: str, response: str, finished: datetime) -> HistoryEntry:
        window = (
            (finished - push.origin_received_at).total_seconds() * 1000
            if status == "accepted" and push.origin_received_at is not None
            else None
        )
        return cls(
            push.merchant_id,
            push.connection_id,
            push.sku,
            push.location,
            push.quantity,
            push.version,
            push.stock_version,
            list(push.rule_ids),
            push.causation_id,
            status,
            push.attempts + 1,
            response[:2000],
            push.origin_received_at,
            finished,
            window,
            push.reason,
        )


@dataclass(frozen=True)
class Postponed:
    """A row that waits for a retry, at the version that was sent."""

    push: PendingPush
    outcome: ItemOutcome
    attempts: int
    not_before: datetime
    delay_s: float


@dataclass(frozen=True)
class Batch:
    """A drain's batch: the rows to send, those the connection does not list, and every row
    taken (stale ones included), all of which leave the queue unless postponed."""

    rows: Sequence[PendingPush]
    to_send: list[PendingPush] = field(default_factory=list)
    unmapped: list[PendingPush] = field(default_factory=list)

    @classmethod
    def of(cls, rows: Sequence[PendingPush]) -> Batch:
        batch = cls(rows)
        for row in rows:
            if not needs_sending(row.version, row.sent_version, resync=row.resync):
                continue  # stale: the channel already has this or something newer
            (batch.unmapped if row.external is None else batch.to_send).append(row)
        return batch


@dataclass(frozen=True)
class Settlement:
    accepted: list[PendingPush]
    postponed: list[Postponed]
    history: list[HistoryEntry]
    # Every taken row that leaves the queue: sent, rejected, unmapped or stale.
    settled: list[PendingPush]
    unmapped: list[PendingPush]

    @property
    def soonest_retry_s(self) -> float | None:
        return min((p.delay_s for p in self.postponed), default=None)


def settle_call(
    batch: Batch, outcomes: Mapping[int, ItemOutcome], finished: datetime, *, retries_in_history: bool = True
) -> Settlement:
    """The rows' fates after the call that sent `batch.to_send` answered `outcomes` (by
    index). `retries_in_history=False` when the retries are the connection's problem (its
    credentials), not the items': they wait without a history row."""
    accepted: list[PendingPush] = []
    postponed: list[Postponed] = []
    history: list[HistoryEntry] = []
    for index, push in enumerate(batch.to_send):
        outcome = outcomes.get(index, NO_ANSWER)
        if outcome.status == "retry":
            delay = retry_delay(push.attempts + 1, outcome.retry_after)
            postponed.append(Postponed(push, outcome, push.attempts + 1, finished + timedelta(seconds=delay), delay))
            continue
        history.append(HistoryEntry.of(push, outcome.status, outcome.channel_response, finished))
        if outcome.status == "accepted":
            accepted.append(push)
    if retries_in_history:
        history += [HistoryEntry.of(p.push, "retrying", p.outcome.channel_response, finished) for p in postponed]
    waiting = {(p.push.sku, p.push.location) for p in postponed}
    settled = [row for row in batch.rows if (row.sku, row.location) not in waiting]
    return Settlement(accepted, postponed, history, settled, list(batch.unmapped))
