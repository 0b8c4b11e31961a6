"""Where a new order line reserves: the allocation rule (docs/stock.md).

A connection sells from a list of locations, first choice first. A line the ledger has
not seen yet reserves, whole, at the first location whose available covers it. When
none does, it still reserves (a marketplace order is a fact), at the location with the
most available (the first of those in priority order on a tie): the smallest shortfall,
which opens an oversell at that location. A line is never split and never moves: its
later movements (cancellation, shipment, return) apply where it reserved.

What this rule never does is let one location's stock hide another's shortfall: each
location keeps its own available, negative if need be, with its own oversell; a
channel fed from several locations is shown their sum, negatives included, so the units
a location owes are never shown twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def allocate(quantity: int, priority: Sequence[str], available: Mapping[str, int]) -> str:
    """The location, among `priority` (not empty), where a new line of `quantity` reserves."""
    if not priority:
        raise ValueError("a connection sells from at least one location")
    for location in priority:
        if available.get(location, 0) >= quantity:
            return location
    return max(priority, key=lambda location: (available.get(location, 0), -priority.index(location)))
