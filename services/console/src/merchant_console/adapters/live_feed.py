"""What changed for a merchant, for the console's server-sent events: one poller per merchant, fanned out.

The console uses the public API only, and the API has no push channel, so the console
asks it: one task per signed-in merchant (per API key) that has a stream open asks a few
cheap questions every `interval_s` (the newest push, the newest delivery, the most
recently changed stock row, the open oversells, the connections) and tells every stream
of that merchant which of them changed. However many tabs a merchant has open, the API
sees one poller; the task ends with the merchant's last stream.

A topic is only a signal ("pushes changed"): the page then fetches the fragment it
shows, so a stream that falls behind loses nothing by skipping repeats.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from merchant_console.adapters.api import ApiError, ApiUnavailable, StocksyncApi

log = logging.getLogger(__name__)

SIGNED_OUT = "signed-out"

# Each topic and the API call whose answer changes when it does.
QUESTIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "pushes": ("/v1/pushes", {"order": "desc", "limit": 1}),
    "deliveries": ("/v1/deliveries", {"limit": 1}),
    "stock": ("/v1/stock", {"sort": "updated_at", "order": "desc", "limit": 1}),
    "oversells": ("/v1/oversells", {"status": "open", "limit": 20}),
    "channels": ("/v1/connections", {}),
}
TOPICS = frozenset(QUESTIONS)


@dataclass(eq=False)
class Subscriber:
    """One open stream: the topics that changed since it last wrote."""

    pending: set[str] = field(default_factory=set)
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def tell(self, topics: set[str]) -> None:
        self.pending |= topics
        self.wake.set()

    async def next(self, timeout: float) -> set[str]:
        """The topics that changed, or an empty set after `timeout` seconds of quiet."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), timeout)
        self.wake.clear()
        topics, self.pending = self.pending, set()
        return topics


@dataclass(eq=False)
class _Feed:
    subscribers: set[Subscriber] = field(default_factory=set)
    task: asyncio.Task[None] | None = None


class LiveFeeds:
    def __init__(self, api_for: Callable[[str], StocksyncApi], interval_s: float) -> None:
        self._api_for = api_for
        self.interval_s = interval_s
        self._feeds: dict[str, _Feed] = {}

    @property
    def pollers(self) -> int:
        return sum(1 for feed in self._feeds.values() if feed.task is not None and not feed.task.done())

    @contextlib.asynccontextmanager
    async def subscribe(self, api_key: str) -> AsyncIterator[Subscriber]:
        name = hashlib.sha256(api_key.encode()).hexdigest()
        feed = self._feeds.setdefault(name, _Feed())
        subscriber = Subscriber()
        feed.subscribers.add(subscriber)
        if feed.task is None or feed.task.done():
            feed.task = asyncio.create_task(self._poll(feed, self._api_for(api_key)), name=f"live-{name[:8]}")
        try:
            yield subscriber
        finally:
            feed.subscribers.discard(subscriber)
            if not feed.subscribers:
                self._feeds.pop(name, None)
                if feed.task is not None:
                    feed.task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await feed.task

    async def close(self) -> None:
        for feed in list(self._feeds.values()):
            if feed.task is not None:
                feed.task.cancel()
        self._feeds.clear()

    async def _poll(self, feed: _Feed, api: StocksyncApi) -> None:
        seen: dict[str, bytes] = {}
        while feed.subscribers:
            try:
                answers = await _ask_all(api)
            except ApiError as exc:
                if exc.status_code == 401:
                    for subscriber in feed.subscribers:
                        subscriber.tell({SIGNED_OUT})
                    return
                log.warning("live feed: the API refused a question", extra={"status": exc.status_code})
                answers = {}
            except ApiUnavailable:
                answers = {}  # asked again at the next tick
            changed = {topic for topic, digest in answers.items() if seen.get(topic, digest) != digest}
            seen.update(answers)
            if changed:
                for subscriber in feed.subscribers:
                    subscriber.tell(changed)
            await asyncio.sleep(self.interval_s)


async def _ask_all(api: StocksyncApi) -> dict[str, bytes]:
    async def ask(path: str, params: dict[str, Any]) -> bytes:
        answer = await api.get(path, params)
        return hashlib.sha256(orjson.dumps(answer, option=orjson.OPT_SORT_KEYS)).digest()

    calls: list[Awaitable[bytes]] = [ask(path, params) for path, params in QUESTIONS.values()]
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, ApiError) and result.status_code == 401:
            raise result
    answers: dict[str, bytes] = {}
    for topic, result in zip(QUESTIONS, results, strict=True):
        if isinstance(result, BaseException):
            if not isinstance(result, ApiError | ApiUnavailable):
                raise result
            continue
        answers[topic] = result
    return answers
