"""What a delivery does to its order lines: store it once, advance each line it reports,
emit one OrderLineMoved per movement; and the group commit that stores deliveries
arriving together in one transaction. Replaying a stored delivery and keeping the
connections projection are here too.

The group commit lives with the use case, not with the store: what it batches is this
use case (`accept_deliveries` is written for a group, each delivery applied from the
state the previous one left), and its failure rule (a failed group is retried one
delivery at a time) and its bound on deliveries in flight are decisions about
deliveries, not about SQL. adapters/delivery_store.py has the statements and the lock
order.

Group commit: each webhook used to pay its own transaction (BEGIN, two statements,
COMMIT): four round trips and a commit's fsync per delivery. Here a delivery joins a
queue and waits for its own result; one transaction at a time stores everything queued
(two statements whatever the group's size), so under load the groups grow while a
commit is in flight and the cost per delivery falls, and a lone delivery is stored at
once (nothing waits for company). A failure never spreads: if a group's transaction
fails, nothing of it was stored and each of its deliveries is tried again in a
transaction of its own, so only the delivery at fault (or all of them, when the
database is down) gets an error. `admit` bounds the work in flight: past
`max_in_flight` deliveries being received, a new one is refused (`Overloaded`, answered
503 with Retry-After, which every channel retries) instead of queueing for seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from prometheus_client import Histogram

from stocksync_common.contracts import ConnectionChanged, OrderLineMoved, utcnow
from stocksync_common.tracing import current_span
from stocksync_common.uow import UnitOfWork, UnitOfWorkFactory

from order_ingest.adapters import delivery_store
from order_ingest.adapters.channels import MalformedDelivery
from order_ingest.adapters.channels.registry import PARSERS
from order_ingest.adapters.delivery_store import ConnectionDirectory, LineKey, LineToLock, NewDelivery
from order_ingest.domain.connections import InboundConnection
from order_ingest.domain.movements import EmittedLine, LineMovement, LineReport, Notification, advance_line

log = logging.getLogger(__name__)

GROUP_SIZE = Histogram(
    "stocksync_ingest_group_size",
    "Deliveries stored per transaction (group commit)",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500),
)


@dataclass(frozen=True)
class Delivery:
    """A verified, parsed delivery, ready to be stored."""

    connection: InboundConnection
    notification: Notification
    raw_body: bytes
    headers: Mapping[str, str]
    received_at: datetime
    # The request's span (tracing on): its events carry it, whichever task stores them.
    span: Any = field(default=None, compare=False)

    @property
    def key(self) -> tuple[uuid.UUID, str]:
        """The dedupe key: a channel event is stored once per connection."""
        return self.connection.connection_id, self.notification.channel_event_id


@dataclass(frozen=True)
class Accepted:
    duplicate: bool
    delivery_id: uuid.UUID | None
    outbox_ids: list[int]
    movements: list[LineMovement]


DUPLICATE = Accepted(True, None, [], [])


async def accept_delivery(
    units: UnitOfWorkFactory,
    connection: InboundConnection,
    notification: Notification,
    raw_body: bytes,
    headers: Mapping[str, str],
    received_at: datetime,
) -> Accepted:
    """Store one delivery (a group of one, `accept_deliveries`)."""
    (accepted,) = await accept_deliveries(
        units, [Delivery(connection, notification, raw_body, headers, received_at, current_span())]
    )
    return accepted


async def accept_deliveries(units: UnitOfWorkFactory, group: Sequence[Delivery]) -> list[Accepted]:
    """Store deliveries, advance their order lines and write their events, in one
    transaction; the result of each, in the order given.

    A delivery already stored (same connection and channel event id), or given twice,
    is a duplicate and changes nothing. Deliveries about the same order line are applied
    in the order given, each from the state the previous one left, exactly as if they
    had arrived one after the other. If the transaction fails, nothing of the group is
    stored (the caller decides whether to try its deliveries one by one).
    """
    delivery_ids = [uuid.uuid4() for _ in group]
    first_of: dict[tuple[uuid.UUID, str], int] = {}
    for i, delivery in enumerate(group):
        first_of.setdefault(delivery.key, i)
    unique = list(first_of.values())
    by_line = {i: _reports_by_line(group[i].notification.lines) for i in unique}
    # Each line once, with the deliveries that name it.
    lines: dict[LineKey, LineToLock] = {}
    for i in unique:
        delivery = group[i]
        for (order_id, line_id), report in by_line[i].items():
            key = (delivery.connection.connection_id, order_id, line_id)
            line = lines.setdefault(
                key, LineToLock(key, delivery.connection.merchant_id, report.sku, delivery.received_at, [])
            )
            line.delivery_ids.append(delivery_ids[i])
    new = [
        NewDelivery(
            delivery_id=delivery_ids[i],
            connection_id=group[i].connection.connection_id,
            merchant_id=group[i].connection.merchant_id,
            channel_event_id=group[i].notification.channel_event_id,
            topic=group[i].notification.topic,
            received_at=group[i].received_at,
            raw_body=group[i].raw_body,
            headers=group[i].headers,
            secret_headers=group[i].connection.signature_headers,
        )
        for i in unique
    ]
    async with units() as uow:
        accepted = await delivery_store.accept(uow.connection, new, list(lines.values()))
        # Applied in the order given (arrival order), each from what the previous left.
        applied = [
            _Applied(group[i].connection, delivery_ids[i], by_line[i], group[i].received_at, group[i].span)
            for i in unique
            if delivery_ids[i] in accepted.inserted
        ]
        await _advance_lines(uow, applied, accepted.lines, None)
        await uow.commit()
    results = {a.delivery_id: Accepted(False, a.delivery_id, a.outbox_ids, a.movements) for a in applied}
    return [results.get(delivery_ids[i], DUPLICATE) for i in range(len(group))]


class ReplayRefused(Exception):
    """A stored delivery that cannot be replayed: `reason` says why."""

    def __init__(self, reason: Literal["unknown_delivery", "inactive_connection", "malformed"], detail: object) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


async def replay_stored_delivery(
    units: UnitOfWorkFactory, merchant_id: uuid.UUID, delivery_id: uuid.UUID
) -> list[LineMovement]:
    """Parse one of the merchant's stored deliveries again and run it through the line
    state (`replay_delivery`): the movements it produced, none of them emitted before."""
    row = await delivery_store.stored_delivery(units.engine, merchant_id, delivery_id)
    if row is None:
        raise ReplayRefused("unknown_delivery", "no such delivery")
    connection = await delivery_store.find_connection(units.engine, row.connection_id)
    if connection is None:
        raise ReplayRefused("inactive_connection", "the delivery's connection is no longer active")
    try:
        notification = PARSERS[connection.channel_type](dict(row.headers), bytes(row.raw_body))
    except MalformedDelivery as exc:
        raise ReplayRefused("malformed", exc.detail) from None
    return await replay_delivery(units, connection, delivery_id, notification)


async def replay_delivery(
    units: UnitOfWorkFactory, connection: InboundConnection, delivery_id: uuid.UUID, notification: Notification
) -> list[LineMovement]:
    """Run a stored delivery through the line state again: only what was never emitted
    (say, after a mapping fix) comes out; everything already emitted stays emitted once."""
    now = utcnow()
    by_line = _reports_by_line(notification.lines)
    replayed = _Applied(connection, delivery_id, by_line, now)
    async with units() as uow:
        locked = await delivery_store.lock_lines(
            uow.connection, connection, now, {k: r.sku for k, r in by_line.items()}
        )
        await _advance_lines(uow, [replayed], locked, now)
        await uow.commit()
    return replayed.movements


@dataclass
class _Applied:
    """A delivery being applied: what it reports per line, and what it produced."""

    connection: InboundConnection
    delivery_id: uuid.UUID
    by_line: Mapping[tuple[str, str], LineReport]
    at: datetime
    span: Any = None
    movements: list[LineMovement] = field(default_factory=list)
    outbox_ids: list[int] = field(default_factory=list)


def _reports_by_line(reports: Sequence[LineReport]) -> dict[tuple[str, str], LineReport]:
    # A report per line: if a delivery names a line twice, its last word counts.
    by_line = {(r.external_order_id, r.line_id): r for r in reports}
    return {key: by_line[key] for key in sorted(by_line)}


async def _advance_lines(
    uow: UnitOfWork, applied: Sequence[_Applied], states: dict[LineKey, EmittedLine], replayed_at: datetime | None
) -> None:
    """Advance the locked lines (`states`) delivery after delivery, then record the
    lines' new states, what each delivery produced and the events, in the unit of work's
    transaction (nothing at all when no delivery moved anything, unless it is a replay)."""
    moved: dict[LineKey, tuple[EmittedLine, datetime]] = {}
    events: list[OrderLineMoved] = []
    spans: dict[tuple[Any, ...], Any] = {}
    for delivery in applied:
        connection_id = delivery.connection.connection_id
        for (order_id, line_id), report in delivery.by_line.items():
            key = (connection_id, order_id, line_id)
            if key not in states:
                continue
            after, line_movements = advance_line(states[key], report)
            if line_movements:
                states[key] = after
                moved[key] = (after, delivery.at)
                delivery.movements.extend(line_movements)
                for movement in line_movements:
                    event = _event(delivery.connection, movement, delivery.at)
                    events.append(event)
                    if delivery.span is not None:
                        spans[(event.event_id,)] = delivery.span
    producing = {d.delivery_id: d.movements for d in applied if d.movements or replayed_at is not None}
    if not producing:
        return
    uow.add(events)
    outbox_ids = await delivery_store.record_movements(uow, moved, producing, spans=spans, replayed_at=replayed_at)
    for delivery in applied:
        delivery.outbox_ids, outbox_ids = outbox_ids[: len(delivery.movements)], outbox_ids[len(delivery.movements) :]


def _event(connection: InboundConnection, movement: LineMovement, received_at: datetime) -> OrderLineMoved:
    # The first movement of a kind on a line has no ref; later (partial) ones are told
    # apart by the cumulative quantity they bring the line to.
    ref = None if movement.quantity == movement.cumulative else f"upto:{movement.cumulative}"
    return OrderLineMoved(
        merchant_id=connection.merchant_id,
        connection_id=connection.connection_id,
        channel_type=connection.channel_type,  # type: ignore[arg-type]
        external_order_id=movement.external_order_id,
        line_id=movement.line_id,
        sku=movement.sku,
        movement=movement.movement,
        quantity=movement.quantity,
        movement_ref=ref,
        received_at=received_at,
        causation_id=f"{connection.channel_type}:{movement.external_order_id}:{movement.line_id}:{movement.movement}"
        + (f":{ref}" if ref else ""),
    )


class Overloaded(Exception):
    """More deliveries in flight than the bound: refuse, the channel retries."""


class DeliveryGroups:
    """The group commit (the module docstring): `admit`, then `accept`."""

    def __init__(self, units: UnitOfWorkFactory, *, max_group: int = 200, max_in_flight: int = 200) -> None:
        self.units = units
        self.max_group = max_group
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self._queue: list[tuple[Delivery, asyncio.Future[Accepted]]] = []
        self._committer: asyncio.Task[None] | None = None

    @contextlib.contextmanager
    def admit(self) -> Iterator[None]:
        """Count a delivery in flight for as long as the block runs; `Overloaded` past the bound."""
        if self.in_flight >= self.max_in_flight:
            raise Overloaded
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1

    async def accept(self, delivery: Delivery) -> Accepted:
        """Store `delivery` with whatever else is queued; its own result, or its own error."""
        future: asyncio.Future[Accepted] = asyncio.get_running_loop().create_future()
        self._queue.append((delivery, future))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_queued(), name="ingest-group-commit")
        return await future

    async def _commit_queued(self) -> None:
        while self._queue:
            group, self._queue = self._queue[: self.max_group], self._queue[self.max_group :]
            GROUP_SIZE.observe(len(group))
            await self._commit([delivery for delivery, _ in group], [future for _, future in group])

    async def _commit(self, deliveries: Sequence[Delivery], futures: Sequence[asyncio.Future[Accepted]]) -> None:
        try:
            results: Sequence[Accepted | BaseException] = await accept_deliveries(self.units, deliveries)
        except Exception as exc:
            if len(deliveries) == 1:
                results = [exc]
            else:
                log.warning("a group commit failed; storing its deliveries one by one", exc_info=True)
                results = [await self._alone(delivery) for delivery in deliveries]
        for future, result in zip(futures, results, strict=True):
            if future.done():  # the request went away (client disconnected); its delivery is stored or not
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def _alone(self, delivery: Delivery) -> Accepted | BaseException:
        try:
            (accepted,) = await accept_deliveries(self.units, [delivery])
        except Exception as exc:
            return exc
        return accepted


async def apply_connection_changes(changes: Sequence[ConnectionChanged], directory: ConnectionDirectory) -> None:
    """Keep the connections projection; then this process's directory forgets its copies
    (another instance's expire within their ttl)."""
    await delivery_store.save_connection_changes(directory.engine, changes)
    directory.invalidate()
