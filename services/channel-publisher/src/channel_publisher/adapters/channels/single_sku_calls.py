"""Channels that take one SKU per call (Amazon, Walmart): a batch is many paced calls.

The calls of one batch run concurrently behind the connection's pacer, so they leave as
fast as the rate limit allows and no faster. Each SKU gets its own outcome: a throttled
or failed call is retried alone, the others are settled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from channel_publisher.domain.pushes import (
    BatchResult,
    ItemOutcome,
    PermanentChannelError,
    PushItem,
    TransientChannelError,
)


async def push_each(items: list[PushItem], call_one: Callable[[PushItem], Awaitable[ItemOutcome]]) -> BatchResult:
    result = BatchResult()

    async def one(index: int, item: PushItem) -> None:
        try:
            result.outcomes[index] = await call_one(item)
        except (TransientChannelError, PermanentChannelError) as exc:
            result.outcomes[index] = ItemOutcome.of_failed_call(exc)

    await asyncio.gather(*(one(index, item) for index, item in enumerate(items)))
    return result
