"""A consumer's handler table: which use case applies each event type of a batch.

A service declares, per consumer group, a table from event type to use case, each use
case called as `handle(events, context)`: the events of that type in the batch (in
batch order) and what the use case works with, made afresh for each call (a unit of
work, usually). The entrypoint only turns a Kafka batch into those calls
(`batch_handler`); what the events mean is the use cases'.

The table's order is the order in which a batch's groups are applied: a ConnectionChanged
listed before an OrderLineMoved is applied first, so the orders of the same batch see
it. A group of one event logs under that event's causation id.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeAlias, TypeVar

from stocksync_common.contracts import Event
from stocksync_common.kafka import BatchHandler, ConsumedEvent
from stocksync_common.logging import causation

Context = TypeVar("Context")

HandlerTable: TypeAlias = Mapping[type[Event], Callable[[Any, Context], Awaitable[object]]]
"""Event type -> `handle(events, context)`, in the order the groups are applied."""


def batch_handler(table: HandlerTable[Context], context: Callable[[], Context]) -> BatchHandler:
    """The consumer's batch handler for `table`; `context()` is called once per use case call."""

    async def handle_batch(batch: list[ConsumedEvent]) -> None:
        for event_type, handle in table.items():
            events = [item.event for item in batch if isinstance(item.event, event_type)]
            if events:
                with causation(events[0].causation_id if len(events) == 1 else None):
                    await handle(events, context())

    return handle_batch
