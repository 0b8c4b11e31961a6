"""What the publisher sends and what a channel answered, channel-neutral."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable


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
    """One SKU's fate in a call: accepted, rejected for good, or worth retrying alone.

    "retry" is a transient failure of this item only (a per-SKU 5xx, one of several
    single-SKU calls throttled): the other items of the batch are settled normally.
    """

    status: Literal["accepted", "rejected", "retry"]
    channel_response: str = ""
    retry_after: float | None = None

    @classmethod
    def of_failed_call(cls, exc: TransientChannelError | PermanentChannelError) -> ItemOutcome:
        """A failed call as the outcome of each item it carried: retried after a transient
        failure (not before its Retry-After), rejected after a permanent one."""
        if isinstance(exc, TransientChannelError):
            return cls("retry", str(exc), exc.retry_after)
        return cls("rejected", str(exc))


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


class ChannelAdapter(Protocol):
    """One connection's client of its channel's API, with that channel's limits."""

    channel_type: str
    batch_limit: int

    def ready_in(self) -> float:
        """Seconds before the channel may be called again (rate limit, Retry-After)."""
        ...

    async def push(self, items: list[PushItem]) -> BatchResult: ...


@runtime_checkable
class ReadsQuantities(Protocol):
    """Channels whose API can show the quantity a listing has now (the drift check)."""

    batch_limit: int

    async def read_quantities(self, items: list[PushItem]) -> dict[int, int | None]: ...


class CredentialsError(Exception):
    """The connection's credentials obtained no usable access token (a refresh refused, or
    a fresh token refused by the channel): a problem of the connection, which the merchant
    must fix, never an outcome of the SKUs that were waiting. Their quantities keep waiting."""
