"""Order-line movements from orders.v1 become ledger entries: the consumer's use case.

A consumer batch is applied in one transaction with three statements, whatever its
size (adapters/ledger_store.py): lock every SKU's row in lock order and claim the event
ids in the inbox; read the causations already recorded and the lines' totals; then
write all ledger entries, all lines, one update per stock row and one StockChanged per
SKU. A hot SKU with 500 order lines in a batch costs the same round trips as 500 SKUs
with one each.

Locations: before the locks, one statement reads the locations of the batch's
connections and where its known lines reserved (`ledger_store.read_routes`);
the batch then locks every location a line could reserve at, and a new line reserves
at the location `domain.allocation.allocate` chooses from the levels read under the
locks. A known line's movements apply where it reserved.

Bundles: a line of a bundle SKU reserves its components (each unit of the line, the
component's quantity per bundle), all at one location; which components and how many
is recorded with the line when it is placed (order_line_components), so its later
movements undo exactly that. Each component gets its own ledger entry, whose causation
id is the movement's with `>component` appended.

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

from stock_ledger.adapters import bundle_store, ledger_store
from stock_ledger.adapters.bundle_store import Definition
from stock_ledger.adapters.ledger_store import MOVEMENTS, LedgerEntry, LineKey, OrderLineRow, Routes
from stock_ledger.domain.allocation import allocate
from stock_ledger.domain.bundles import buildable
from stock_ledger.domain.stock import LineTotals, SkuChange, SkuKey, order_line_effect, plan_stock_changes


def movement_causation_id(event: OrderLineMoved) -> str:
    """Channel + order + line + kind (+ which partial movement): unique per movement."""
    base = f"{event.channel_type}:{event.connection_id}:{event.external_order_id}:{event.line_id}:{event.movement}"
    return f"{base}:{event.movement_ref}" if event.movement_ref else base


def _line_key(event: OrderLineMoved) -> LineKey:
    return (event.merchant_id, event.connection_id, event.external_order_id, event.line_id)


class LinePlacedElsewhere(RuntimeError):
    """A line was first recorded, by a concurrent writer, at a location this batch did not
    lock; the batch rolls back and is applied again (it then knows the line)."""

    # A serialization failure in PostgreSQL's terms: the consumer retries the batch as it
    # does one (stocksync_common.dead_letters.is_transient), it never dead-letters it.
    sqlstate = "40001"


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
    routes = await ledger_store.read_routes(
        conn,
        {e.connection_id for e in events},
        (_line_key(e) for e in events),
        ((e.merchant_id, e.sku) for e in events),
    )
    known_parts, bundles = routes.line_parts, routes.bundles

    def parts(event: OrderLineMoved) -> Definition:
        """What one unit of the line reserves: itself, or a bundle's components (as
        the line recorded them when placed, else as the bundle is defined now)."""
        line_key = _line_key(event)
        if line_key in known_parts:
            return known_parts[line_key]
        if line_key in routes.line_locations:
            return {event.sku: 1}
        return bundles.get((event.merchant_id, event.sku)) or {event.sku: 1}

    candidates = {e.event_id: _candidates(e, routes) for e in events}
    parts_of = {e.event_id: parts(e) for e in events}
    locked = await ledger_store.lock_stock(
        conn,
        (
            (e.merchant_id, part, location)
            for e in events
            for location in candidates[e.event_id]
            for part in parts_of[e.event_id]
        ),
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

    def causations(base: str, event: OrderLineMoved) -> dict[str, str]:
        """Part -> the causation id of its ledger entry: a bundle line's movement is one
        entry per component, each unique."""
        part_list = parts_of[event.event_id]
        if set(part_list) == {event.sku}:
            return {event.sku: base}
        return {part: f"{base}>{part}" for part in part_list}

    recorded = await ledger_store.read_recorded(
        conn,
        ((m, cid) for (m, base), e in fresh.items() for cid in causations(base, e).values()),
        (_line_key(e) for e in fresh.values()),
    )
    for (m, base), event in list(fresh.items()):
        if any((m, cid) in recorded.causations for cid in causations(base, event).values()):
            del fresh[(m, base)]
    if not fresh:
        return []

    lines = recorded.lines
    placed_at = dict(recorded.line_locations)
    for event in fresh.values():
        line_key = _line_key(event)
        location = placed_at.get(line_key)
        if location is not None and (
            location not in candidates[event.event_id] or line_key not in routes.line_locations
        ):
            raise LinePlacedElsewhere(f"line {line_key} was placed at {location!r} by a concurrent batch")
    before = dict(levels)
    moves: list[tuple[OrderLineMoved, SkuKey, str, int, int, int]] = []  # event, row, causation, quantity, deltas
    moved_lines: dict[LineKey, tuple[OrderLineMoved, SkuKey, LineTotals]] = {}
    new_bundle_lines: dict[LineKey, Definition] = {}
    applied: dict[SkuKey, list[OrderLineMoved]] = {}
    for (merchant_id, base), event in fresh.items():
        line_key, line_parts = _line_key(event), parts_of[event.event_id]
        location = placed_at.get(line_key)
        if location is None:
            choices = candidates[event.event_id]
            location = allocate(
                event.quantity,
                choices,
                {
                    loc: buildable(line_parts, {p: levels[(merchant_id, p, loc)].available for p in line_parts})
                    for loc in choices
                },
            )
            placed_at[line_key] = location
            if set(line_parts) != {event.sku}:
                new_bundle_lines[line_key] = line_parts
        effect = order_line_effect(
            lines.get(line_key, LineTotals()), event.movement, event.quantity, restock=event.restock
        )
        lines[line_key] = effect.line
        moved_lines[line_key] = (event, (merchant_id, event.sku, location), effect.line)
        for part, causation_id in causations(base, event).items():
            per_unit = line_parts[part]
            key = (merchant_id, part, location)
            level = levels[key]
            # A movement at or before the row's last snapshot is already in its on_hand.
            delta_on_hand = effect.delta_on_hand * per_unit if level.counts_on_hand_of(event.received_at) else 0
            delta_reserved = effect.delta_reserved * per_unit
            levels[key] = level.moved(delta_on_hand, delta_reserved)
            applied.setdefault(key, []).append(event)
            moves.append((event, key, causation_id, event.quantity * per_unit, delta_on_hand, delta_reserved))
        MOVEMENTS.labels(f"order_{event.movement}").inc()
    await bundle_store.save_line_components(conn, new_bundle_lines)

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
            sku=key[1],
            location=key[2],
            causation_id=causation_id,
            kind=f"order_{event.movement}",
            quantity=quantity,
            delta_on_hand=delta_on_hand,
            delta_reserved=delta_reserved,
            version=levels[key].version,
            occurred_at=event.received_at,
            event_id=event.event_id,
        )
        for event, key, causation_id, quantity, delta_on_hand, delta_reserved in moves
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
    return await ledger_store.save_stock_changes(uow, plan_stock_changes(changes, utcnow()), entries, order_lines)
