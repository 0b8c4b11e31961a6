"""The console's live feed: one poller per merchant, its changes fanned out to every open stream."""

from __future__ import annotations

import asyncio
from typing import Any

from merchant_console.adapters.api import ApiError
from merchant_console.adapters.live_feed import SIGNED_OUT, TOPICS, LiveFeeds


class FakeApi:
    """Answers each question with a counter the test moves; counts the questions asked."""

    def __init__(self) -> None:
        self.state = dict.fromkeys(("/v1/pushes", "/v1/deliveries", "/v1/stock", "/v1/oversells", "/v1/connections"), 0)
        self.asked = 0
        self.revoked = False

    async def get(self, path: str, params: Any = None) -> Any:
        self.asked += 1
        if self.revoked:
            raise ApiError(401, "invalid API key")
        return {"newest": self.state[path]}


def test_two_streams_of_one_merchant_share_one_poller_and_both_hear_what_changed() -> None:
    async def scenario() -> None:
        apis: dict[str, FakeApi] = {}

        def api_for(key: str) -> Any:
            return apis.setdefault(key, FakeApi())

        feeds = LiveFeeds(api_for, interval_s=0.01)
        async with feeds.subscribe("key-a") as first, feeds.subscribe("key-a") as second:
            async with feeds.subscribe("key-b") as other:
                assert feeds.pollers == 2 and set(apis) == {"key-a", "key-b"}
                await asyncio.sleep(0.05)  # the first answers are the baseline: no event
                assert await first.next(0.01) == set()
                apis["key-a"].state["/v1/pushes"] += 1
                assert await first.next(2) == {"pushes"}
                assert await second.next(2) == {"pushes"}
                assert await other.next(0.05) == set()  # another merchant's stream hears nothing
                apis["key-a"].state["/v1/stock"] += 1
                apis["key-a"].state["/v1/connections"] += 1
                heard: set[str] = set()
                while heard != {"stock", "channels"}:
                    heard |= await first.next(2)
            assert feeds.pollers == 1  # key-b's poller ended with its last stream
        assert feeds.pollers == 0

    asyncio.run(scenario())


def test_a_revoked_key_tells_every_stream_it_is_signed_out() -> None:
    async def scenario() -> None:
        api = FakeApi()
        feeds = LiveFeeds(lambda key: api, interval_s=0.01)  # type: ignore[arg-type,return-value]
        async with feeds.subscribe("key") as stream:
            await asyncio.sleep(0.03)
            api.revoked = True
            assert SIGNED_OUT in await stream.next(2)
        assert SIGNED_OUT not in TOPICS

    asyncio.run(scenario())
