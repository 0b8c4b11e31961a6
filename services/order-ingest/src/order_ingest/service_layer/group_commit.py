"""Group commit: deliveries that arrive together share one transaction.

Each webhook used to pay its own transaction (BEGIN, two statements, COMMIT): four
round trips and a commit's fsync per delivery. Here a delivery joins a queue and waits
for its own result; one transaction at a time stores everything queued
(`accept_deliveries`: two statements whatever the group's size), so under load the
groups grow while a commit is in flight and the cost per delivery falls, and a lone
delivery is stored at once (nothing waits for company).

A failure never spreads: if a group's transaction fails, nothing of it was stored and
each of its deliveries is tried again in a transaction of its own, so only the delivery
at fault (or all of them, when the database is down) gets an error.

`admit` bounds the work in flight: past `max_in_flight` deliveries being received, a new
one is refused (`Overloaded`, answered 503 with Retry-After, which every channel
retries) instead of queueing for seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence

from prometheus_client import Histogram
from sqlalchemy.ext.asyncio import AsyncEngine

from order_ingest.service_layer.ingest import Accepted, Delivery, accept_deliveries

log = logging.getLogger(__name__)

GROUP_SIZE = Histogram(
    "stocksync_ingest_group_size",
    "Deliveries stored per transaction (group commit)",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500),
)


class Overloaded(Exception):
    """More deliveries in flight than the bound: refuse, the channel retries."""


class DeliveryGroups:
    def __init__(
        self,
        engine: AsyncEngine,
        on_commit: Callable[[], None],
        *,
        max_group: int = 200,
        max_in_flight: int = 200,
    ) -> None:
        self.engine = engine
        # Called after every commit that stored something (wakes the outbox relay).
        self.on_commit = on_commit
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
            results: Sequence[Accepted | BaseException] = await accept_deliveries(self.engine, deliveries)
        except Exception as exc:
            if len(deliveries) == 1:
                results = [exc]
            else:
                log.warning("a group commit failed; storing its deliveries one by one", exc_info=True)
                results = [await self._alone(delivery) for delivery in deliveries]
        if any(isinstance(r, Accepted) and not r.duplicate for r in results):
            self.on_commit()
        for future, result in zip(futures, results, strict=True):
            if future.done():  # the request went away (client disconnected); its delivery is stored or not
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def _alone(self, delivery: Delivery) -> Accepted | BaseException:
        try:
            (accepted,) = await accept_deliveries(self.engine, [delivery])
        except Exception as exc:
            return exc
        return accepted
