"""What a channel's order notification means for stock, in channel-neutral terms."""

from __future__ import annotations

from dataclasses import dataclass

from stocksync_common.contracts import OrderMovement


@dataclass(frozen=True)
class LineMovement:
    external_order_id: str
    line_id: str
    sku: str
    movement: OrderMovement
    quantity: int


@dataclass(frozen=True)
class Notification:
    """A verified, parsed delivery: its dedupe key and the movements it carries."""

    channel_event_id: str
    topic: str
    movements: tuple[LineMovement, ...]
    skipped_lines: tuple[str, ...] = ()
