"""What a channel's order notification means for stock, in channel-neutral terms.

Channels report an order line's *state* (ordered 3, shipped 1, cancelled 1), not
movements, and they resend states twice or out of order. order-ingest keeps, per order
line, the cumulative quantities it has already emitted (`EmittedLine`) and emits only the
difference between what a report says and what was emitted. So a duplicate report emits
nothing, a stale report (an older state arriving after a newer one) emits nothing, and a
cancellation that arrives before its order emits "placed" then "cancelled".

Invariants of an `EmittedLine`, kept by `advance_line` whatever the reports say:
    0 <= shipped + cancelled <= placed      (units leave a reservation at most once)
    0 <= returned <= shipped                (only shipped units come back)
and every field only grows, so a movement is never emitted twice.
"""

from __future__ import annotations

from dataclasses import dataclass

from stocksync_common.contracts import OrderMovement


@dataclass(frozen=True)
class LineReport:
    """What one notification says about one order line: cumulative quantities."""

    external_order_id: str
    line_id: str
    sku: str
    ordered: int
    shipped: int = 0
    cancelled: int = 0
    returned: int = 0


@dataclass(frozen=True)
class Notification:
    """A verified, parsed delivery: its dedupe key and what it says about order lines."""

    channel_event_id: str
    topic: str
    lines: tuple[LineReport, ...]
    skipped_lines: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class EmittedLine:
    """Cumulative quantities already emitted to orders.v1 for one order line. Not the
    stock-ledger's `LineTotals` (what it has applied, in whatever order it came)."""

    placed: int = 0
    shipped: int = 0
    cancelled: int = 0
    returned: int = 0


@dataclass(frozen=True)
class LineMovement:
    external_order_id: str
    line_id: str
    sku: str
    movement: OrderMovement
    quantity: int
    # The line's cumulative quantity for this movement once this one is applied: it
    # tells partial movements of one line apart (shipped 1 of 3, then up to 3).
    cumulative: int


def advance_line(state: EmittedLine, report: LineReport) -> tuple[EmittedLine, list[LineMovement]]:
    """The movements that bring `state` up to what `report` says, and the new state.

    Order of the movements: placed first (a cancellation implies the order), then
    shipped, cancelled, returned. Shipped wins over cancelled when a report asks for
    more than was placed: units that left the warehouse are a fact.
    """
    placed = max(state.placed, report.ordered)
    shipped = min(max(state.shipped, report.shipped), placed - state.cancelled)
    cancelled = min(max(state.cancelled, report.cancelled), placed - shipped)
    returned = min(max(state.returned, report.returned), shipped)
    new_state = EmittedLine(placed=placed, shipped=shipped, cancelled=cancelled, returned=returned)
    steps: tuple[tuple[OrderMovement, int, int], ...] = (
        ("placed", state.placed, placed),
        ("shipped", state.shipped, shipped),
        ("cancelled", state.cancelled, cancelled),
        ("returned", state.returned, returned),
    )
    movements = [
        LineMovement(report.external_order_id, report.line_id, report.sku, kind, after - before, after)
        for kind, before, after in steps
        if after > before
    ]
    return new_state, movements
