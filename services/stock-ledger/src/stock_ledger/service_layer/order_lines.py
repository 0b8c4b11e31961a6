"""Order-line movements from orders.v1 become ledger entries: the consumer's use case.

A consumer batch is applied in one transaction with three statements, whatever its
size (adapters/ledger_store.py): lock every SKU's row in lock order and claim the event
ids in the inbox; read the causations already recorded and the lines' totals; then
write all ledger entries, all lines, one update per stock row and one StockChanged per
SKU. A hot SKU with 500 order lines in a batch costs the same round trips as 500 SKUs
with one each.

Locations: before the locks, one statement reads the locations of the batch's
connections and where its known lines reserved (adapters/connection_locations_store.py);
the batch then locks every location a line could reserve at, and a new line reserves
at the location `domain.allocation.allocate` chooses from the levels read under the
locks. A known line's movements apply where it reserved.

Exactly once: an event id is claimed in the inbox in the transaction of its effects;
a movement that comes again under another event id (a channel's redelivery turned
into a new event) has the same causation id, which is unique in the ledger.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import replace

from stocksync_common.contracts import DEFAULT_LOCATION, OrderLineMoved, StockChanged, utcnow
from stocksync_common.topics import ORDERS
from stocksync_common.uow import UnitOfWork

from stock_ledger.adapters import ledger_store
from stock_ledger.adapters.connection_locations_store import Routes, read_routes
from stock_ledger.adapters.ledger_store import LedgerEntry, LineKey, OrderLineRow, SkuKey
from stock_ledger.domain.allocation import allocate
from stock_ledger.domain.stock import LineState, order_line_effect
from stock_ledger.service_layer.stock_rows import MOVEMENTS, SkuChange, plan_stock_changes, save_stock_changes


def movement_causation_id(event: OrderLineMoved) -> str:
    """Channel + order + line + kind (+ which partial movement): unique per movement."""
    base = f"{event.channel_type}:{event.connection_id}:{event.external_order_id}:{event.line_id}:{event.movement}"
    return f"{base}:{event.movement_ref}" if event.movement_ref else base


def _line_key(event: OrderLineMoved) -> LineKey:
    return (event.merchant_id, event.connection_id, event.external_order_id, event.line_id)


class LinePlacedElsewhere(RuntimeError):
    """A line was first recorded, by a concurrent writer, at a location this batch did not
    lock; the batch rolls back and is applied again (it then knows the line)."""


def _candidates(event: OrderLineMoved, routes: Routes) -> tuple[str, ...]:
    """Where the event's line can reserve: where it already did; a location the channel
    named itself; otherwise the connection's locations, first choice first."""
    known = routes.line_locations.get(_line_key(event))
    if known is not None:
        return (known,)
    if event.location != DEFAULT_LOCATION:
        return (event.location,)
    return routes.priority(event.merchant_id, event.connection_id)


async def apply_order_lines(events: Sequence[OrderLineMoved], uow: UnitOfWork) -> list[StockChanged]:
    """Apply a consumer batch in one unit of work; return the StockChanged events written."""
    if not events:
        return []
    async with uow:
        changed = await _apply(uow, events)
        await uow.commit()
    return changed


async def _apply(uow: UnitOfWork, events: Sequence[OrderLineMoved]) -> list[StockChanged]:
    conn = uow.connection
    routes = await read_routes(conn, {e.connection_id for e in events}, (_line_key(e) for e in events))
    candidates = {e.event_id: _candidates(e, routes) for e in events}
    locked = await ledger_store.lock_stock(
        conn,
        ((e.merchant_id, e.sku, location) for e in events for location in candidates[e.event_id]),
        claim=list(dict.fromkeys(e.event_id for e in events)),
        topic=ORDERS.name,
    )
    levels, claimed = locked.levels, locked.claimed
    fresh: dict[tuple[uuid.UUID, str], OrderLineMoved] = {}
    for event in events:
        if event.event_id in claimed:
            claimed.discard(event.event_id)  # the same event twice in one batch applies once
            fresh.setdefault((event.merchant_id, movement_causation_id(event)), event)
    if not fresh:
        return []
    recorded = await ledger_store.read_recorded(conn, fresh, (_line_key(e) for e in fresh.values()))
    for causation in recorded.causations:
        fresh.pop(causation, None)
    if not fresh:
        return []

    lines = recorded.lines
    placed_at = dict(recorded.line_locations)
    for event in fresh.values():
        location = placed_at.get(_line_key(event))
        if location is not None and location not in candidates[event.event_id]:
            raise LinePlacedElsewhere(f"line {_line_key(event)} reserved at {location!r}, not locked by this batch")
    before = dict(levels)
    moves: list[tuple[OrderLineMoved, SkuKey, str, int, int]] = []  # event, row, causation id, deltas
    moved_lines: dict[LineKey, tuple[OrderLineMoved, SkuKey, LineState]] = {}
    applied: dict[SkuKey, list[OrderLineMoved]] = {}
    for (_, causation_id), event in fresh.items():
        line_key = _line_key(event)
        location = placed_at.get(line_key)
        if location is None:
            choices = candidates[event.event_id]
            location = allocate(
                event.quantity, choices, {loc: levels[(event.merchant_id, event.sku, loc)].available for loc in choices}
            )
            placed_at[line_key] = location
        key = (event.merchant_id, event.sku, location)
        level = levels[key]
        effect = order_line_effect(
            lines.get(line_key, LineState()),
            event.movement,
            event.quantity,
            restock=event.restock,
            counts_on_hand=level.counts_on_hand_of(event.received_at),
        )
        lines[line_key] = effect.line
        moved_lines[line_key] = (event, key, effect.line)
        levels[key] = level.moved(effect.delta_on_hand, effect.delta_reserved)
        applied.setdefault(key, []).append(event)
        moves.append((event, key, causation_id, effect.delta_on_hand, effect.delta_reserved))
        MOVEMENTS.labels(f"order_{event.movement}").inc()

    changes: list[SkuChange] = []
    for key, sku_events in applied.items():
        after = levels[key]
        if (after.on_hand, after.reserved) != (before[key].on_hand, before[key].reserved):
            after = replace(after, version=before[key].version + 1)
        levels[key] = after
        changes.append(
            SkuChange(key, before[key], after, sku_events[-1].causation_id, min(e.received_at for e in sku_events))
        )
    entries = [
        LedgerEntry(
            merchant_id=event.merchant_id,
            sku=event.sku,
            location=key[2],
            causation_id=causation_id,
            kind=f"order_{event.movement}",
            quantity=event.quantity,
            delta_on_hand=delta_on_hand,
            delta_reserved=delta_reserved,
            version=levels[key].version,
            occurred_at=event.received_at,
            event_id=event.event_id,
        )
        for event, key, causation_id, delta_on_hand, delta_reserved in moves
    ]
    order_lines = [
        OrderLineRow(
            merchant_id=event.merchant_id,
            connection_id=event.connection_id,
            external_order_id=event.external_order_id,
            line_id=event.line_id,
            sku=event.sku,
            location=key[2],
            placed=line.placed,
            reserved=line.reserved,
            shipped=line.shipped,
            cancelled=line.cancelled,
            returned=line.returned,
            restocked=line.restocked,
        )
        for event, key, line in moved_lines.values()
    ]
    return await save_stock_changes(uow, plan_stock_changes(changes, utcnow()), entries, order_lines)
