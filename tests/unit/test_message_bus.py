"""The handler table: a batch becomes one use case call per event type, in the table's order."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence

from stocksync_common.contracts import ConnectionChanged, Event, OrderLineMoved, utcnow
from stocksync_common.kafka import ConsumedEvent
from stocksync_common.logging import causation_id_var
from stocksync_common.message_bus import HandlerTable, batch_handler
from stocksync_common.topics import CONNECTIONS, ORDERS, Topic

MERCHANT = uuid.uuid4()


def moved(line_id: str) -> OrderLineMoved:
    return OrderLineMoved(
        causation_id=f"shopify:1:{line_id}:placed",
        merchant_id=MERCHANT,
        connection_id=uuid.uuid4(),
        channel_type="shopify",
        external_order_id="1",
        line_id=line_id,
        sku="A",
        movement="placed",
        quantity=1,
        received_at=utcnow(),
    )


def changed() -> ConnectionChanged:
    return ConnectionChanged(
        causation_id="connection", merchant_id=MERCHANT, connection_id=uuid.uuid4(), channel_type="shopify",
        name="shop", active=True,
    )  # fmt: skip


def consumed(topic: Topic, events: Sequence[Event]) -> list[ConsumedEvent]:
    return [ConsumedEvent(topic, event, 0, offset) for offset, event in enumerate(events)]


def apply(table: HandlerTable[int], context: Callable[[], int], batch: list[ConsumedEvent]) -> None:
    async def run() -> None:
        await batch_handler(table, context)(batch)

    asyncio.run(run())


class Calls:
    """Records each use case call: its name, its events and the context it was given."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[Event], int, str | None]] = []
        self.contexts = 0

    def context(self) -> int:
        self.contexts += 1
        return self.contexts

    def use_case(self, name: str) -> Callable[[list[Event], int], Awaitable[None]]:
        async def handle(events: list[Event], context: int) -> None:
            self.calls.append((name, events, context, causation_id_var.get()))

        return handle


def test_groups_apply_in_the_tables_order_with_a_context_each_and_batch_order_within_a_type() -> None:
    first, second, connection = moved("L1"), moved("L2"), changed()
    calls = Calls()
    table: HandlerTable[int] = {
        ConnectionChanged: calls.use_case("connections"),
        OrderLineMoved: calls.use_case("orders"),
    }
    batch = [*consumed(ORDERS, [first]), *consumed(CONNECTIONS, [connection]), *consumed(ORDERS, [second])]

    apply(table, calls.context, batch)

    assert [(name, events, context) for name, events, context, _ in calls.calls] == [
        ("connections", [connection], 1),
        ("orders", [first, second], 2),
    ]


def test_a_lone_event_is_handled_under_its_causation_id_and_a_type_without_handler_is_not_called() -> None:
    lone = moved("L1")
    calls = Calls()
    table: HandlerTable[int] = {OrderLineMoved: calls.use_case("orders")}

    apply(table, calls.context, [*consumed(ORDERS, [lone]), *consumed(CONNECTIONS, [changed()])])
    apply(table, calls.context, consumed(ORDERS, [moved("L2"), moved("L3")]))

    assert [(name, causation) for name, _, _, causation in calls.calls] == [
        ("orders", "shopify:1:L1:placed"),
        ("orders", None),
    ]
    assert calls.contexts == 2
