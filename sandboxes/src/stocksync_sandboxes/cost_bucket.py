"""A leaky bucket of query cost, the way Shopify meters its GraphQL Admin API per app and store.

Shopify describes requests pouring their cost into a bucket that leaks at the restore rate.
This class keeps the equivalent figure Shopify reports back, the points still available:
a request takes its cost out, and points flow back at the restore rate up to the bucket
size. The clock is injected so tests can move time without sleeping.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ThrottleStatus:
    maximum_available: float
    currently_available: float
    restore_rate: float

    def as_json(self) -> dict[str, Any]:
        """The `extensions.cost.throttleStatus` object of a Shopify GraphQL answer."""
        return {
            "maximumAvailable": self.maximum_available,
            # Shopify reports whole points; a few decimals keep sub-second restores visible.
            "currentlyAvailable": round(self.currently_available, 3),
            "restoreRate": self.restore_rate,
        }


class LeakyBucket:
    def __init__(self, size: float, restore_rate: float, clock: Callable[[], float]) -> None:
        _check_positive(size=size, restore_rate=restore_rate)
        self._size = float(size)
        self._restore_rate = float(restore_rate)
        self._clock = clock
        self._available = self._size
        self._updated_at = clock()

    def _restore(self) -> None:
        now = self._clock()
        # A clock that steps back (it never should) must not drain the bucket.
        elapsed = max(0.0, now - self._updated_at)
        self._available = min(self._size, self._available + elapsed * self._restore_rate)
        self._updated_at = now

    @property
    def size(self) -> float:
        return self._size

    def status(self) -> ThrottleStatus:
        self._restore()
        return ThrottleStatus(self._size, self._available, self._restore_rate)

    def try_take(self, cost: float) -> bool:
        """Take `cost` points if they are all available; take nothing otherwise."""
        self._restore()
        if cost > self._available:
            return False
        self._available -= cost
        return True

    def reconfigure(
        self,
        *,
        size: float | None = None,
        restore_rate: float | None = None,
        currently_available: float | None = None,
    ) -> ThrottleStatus:
        """Change the limits at run time; points restored so far are kept, capped at the size."""
        self._restore()
        _check_positive(
            size=self._size if size is None else size,
            restore_rate=self._restore_rate if restore_rate is None else restore_rate,
        )
        if size is not None:
            self._size = float(size)
        if restore_rate is not None:
            self._restore_rate = float(restore_rate)
        if currently_available is not None:
            if currently_available < 0:
                raise ValueError("currently_available must not be negative")
            self._available = float(currently_available)
        self._available = min(self._available, self._size)
        return ThrottleStatus(self._size, self._available, self._restore_rate)

    def fill(self) -> None:
        self._available = self._size
        self._updated_at = self._clock()


def _check_positive(*, size: float, restore_rate: float) -> None:
    if size <= 0 or restore_rate <= 0:
        raise ValueError("bucket size and restore rate must be positive")
