"""The stock model, pure: what a movement does to a SKU's stock and to its order line.

available = on_hand - reserved. A cancellation releases only what its line still
holds; a shipment releases what the line holds (up to its quantity) and takes the
quantity from on_hand. A marketplace order is a fact and is never refused: available
may go below zero, which is an oversell the merchant must see.
"""

from __future__ import annotations

from dataclasses import dataclass

from stocksync_common.contracts import OrderMovement


@dataclass(frozen=True)
class StockLevel:
    on_hand: int = 0
    reserved: int = 0
    version: int = 0

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved

    def moved(self, delta_on_hand: int, delta_reserved: int) -> StockLevel:
        return StockLevel(self.on_hand + delta_on_hand, self.reserved + delta_reserved, self.version)


@dataclass(frozen=True)
class LineState:
    """What one order line holds: reserved units not yet shipped or cancelled."""

    reserved: int = 0
    shipped: int = 0
    cancelled: int = 0


@dataclass(frozen=True)
class MovementEffect:
    delta_on_hand: int
    delta_reserved: int
    line: LineState


def order_line_effect(line: LineState, movement: OrderMovement, quantity: int) -> MovementEffect:
    if quantity <= 0:
        raise ValueError("a movement quantity is positive")
    if movement == "placed":
        return MovementEffect(0, quantity, LineState(line.reserved + quantity, line.shipped, line.cancelled))
    if movement == "cancelled":
        released = min(quantity, line.reserved)
        return MovementEffect(
            0, -released, LineState(line.reserved - released, line.shipped, line.cancelled + released)
        )
    if movement == "shipped":
        released = min(quantity, line.reserved)
        return MovementEffect(
            -quantity, -released, LineState(line.reserved - released, line.shipped + quantity, line.cancelled)
        )
    if movement == "returned":
        # A return with restock puts the units back on hand.
        return MovementEffect(quantity, 0, line)
    raise ValueError(f"unknown movement {movement!r}")


def snapshot_effect(level: StockLevel, on_hand: int) -> MovementEffect:
    """An absolute on_hand from the merchant's ERP, as a signed delta on the ledger."""
    return MovementEffect(on_hand - level.on_hand, 0, LineState())
