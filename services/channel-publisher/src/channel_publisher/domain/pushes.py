"""What the publisher sends and what a channel answered, channel-neutral."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class PushItem:
    sku: str
    location: str
    quantity: int
    external: dict[str, Any]
    # The channel-quantity version: makes a batch's identity unique (idempotency keys).
    version: int = 0


@dataclass(frozen=True)
class ItemOutcome:
    status: Literal["accepted", "rejected"]
    channel_response: str = ""


class TransientChannelError(Exception):
    """A failure worth retrying (429, 5xx, timeout, throttled); `retry_after` in seconds."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentChannelError(Exception):
    """The whole call was refused for a reason retrying cannot fix (auth, shape)."""


@dataclass
class BatchResult:
    outcomes: dict[int, ItemOutcome] = field(default_factory=dict)
