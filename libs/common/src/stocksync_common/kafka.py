"""Kafka plumbing on aiokafka: serialisation, a producer, a batch consumer, topics.

The consumer hands a batch of decoded events to a handler that commits its effects to
the database, and only then commits the offsets. If the handler fails because the
database or the broker is unreachable, the whole batch is tried again after an
exponential backoff (capped): nothing is skipped, and the inbox makes the retry a no-op
for what was done. If it fails for any other reason, the events at fault are found by
bisection, every other event is applied, and each event at fault (or a message that
breaks its topic's contract) becomes a dead letter (stocksync_common.dead_letters): one
event never stops a partition.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from prometheus_client import Counter, Gauge, Histogram
from pydantic import ValidationError

from stocksync_common.contracts import Event
from stocksync_common.dead_letters import (
    DeadLetter,
    DeadLetterSink,
    backoff_delay,
    describe_error,
    is_transient,
    isolate_failures,
)
from stocksync_common.settings import ServiceSettings
from stocksync_common.topics import ALL_TOPICS, BY_NAME, Topic
from stocksync_common.tracing import consuming, enabled, header_trace_context

log = logging.getLogger(__name__)

CONSUMED = Counter("stocksync_events_consumed_total", "Events consumed", ["topic"])
REJECTED = Counter("stocksync_events_rejected_total", "Messages that did not match their topic's contract", ["topic"])
BATCH_SIZE = Histogram(
    "stocksync_consumer_batch_size",
    "Events per consumer batch",
    ["topic"],
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
)
HANDLER_FAILURES = Counter(
    "stocksync_consumer_handler_failures_total",
    "Batches whose handler failed transiently (database or broker unreachable) and were retried",
    ["group"],
)
CONSUMER_LAG = Gauge(
    "stocksync_consumer_lag",
    "Records between the group's committed offset and the partition's end, read from the broker",
    ["group", "topic", "partition"],
)


def encode_event(event: Event) -> bytes:
    return orjson.dumps(event.model_dump(mode="json"))


def decode_event(topic: Topic, value: bytes) -> Event:
    return topic.event_type.model_validate_json(value)


def make_producer(settings: ServiceSettings) -> AIOKafkaProducer:
    # acks=all and no idempotence: the embedded broker has no idempotent producer, and
    # consumers dedupe on event ids anyway.
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        acks="all",
        enable_idempotence=False,
        linger_ms=0,
        request_timeout_ms=10_000,
    )


async def ensure_topics(
    bootstrap_servers: str, topics: Sequence[Topic] = ALL_TOPICS, replication_factor: int = 1
) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(
                t.name,
                t.partitions,
                replication_factor,
                topic_configs={"cleanup.policy": "compact"} if t.compacted else {},
            )
            for t in topics
            if t.name not in existing
        ]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
    finally:
        await admin.close()


@dataclass(frozen=True)
class ConsumedEvent:
    topic: Topic
    event: Event
    partition: int
    offset: int
    # The record as consumed: what a dead letter keeps, so it can be replayed as it was.
    key: bytes | None = None
    value: bytes = b""
    # The record's W3C traceparent header, read only while tracing is on (stocksync_common.tracing).
    trace_context: str | None = None


BatchHandler = Callable[[list[ConsumedEvent]], Awaitable[None]]

# `getmany` returns after this long without records.
FETCH_POLL_MS = 200
# A consumer that found no records this many times in a row (a second) is idle: its
# fetches then wait longer on the broker (`KAFKA_IDLE_FETCH_MAX_WAIT_MS`), which costs
# the first record after a quiet second a few milliseconds and saves the CPU of idle
# fetch round trips (the embedded broker answers an idle fetch only when its wait ends).
# The first records switch it back.
IDLE_AFTER_EMPTY_POLLS = 5


class BatchConsumer:
    """Consumes topics in batches; offsets are committed only after the handler returns."""

    def __init__(
        self,
        settings: ServiceSettings,
        topics: Sequence[Topic],
        group_id: str,
        handler: BatchHandler,
        *,
        max_batch: int | None = None,
        retry_backoff_s: float = 0.5,
        retry_backoff_max_s: float = 30.0,
        dead_letters: DeadLetterSink | None = None,
    ) -> None:
        self.group_id = group_id
        self.handler = handler
        self.retry_backoff_s = retry_backoff_s
        self.retry_backoff_max_s = retry_backoff_max_s
        # None: an event that cannot be applied is logged and skipped (the consumer of
        # the dead-letter topics themselves, which must not dead-letter in a loop).
        self.dead_letters = dead_letters
        self.max_batch = max_batch or settings.kafka_max_batch
        self._busy_fetch_wait_ms = settings.kafka_fetch_max_wait_ms
        self._idle_fetch_wait_ms = max(settings.kafka_idle_fetch_max_wait_ms, settings.kafka_fetch_max_wait_ms)
        self._stopping = asyncio.Event()
        self._topics = [t.name for t in topics]
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
            max_poll_interval_ms=300_000,
            session_timeout_ms=settings.kafka_session_timeout_ms,
            heartbeat_interval_ms=settings.kafka_heartbeat_interval_ms,
            # A join waits at most this long for members to rejoin, instead of the whole
            # poll interval.
            rebalance_timeout_ms=settings.kafka_rebalance_timeout_ms,
        )

        self.lag = PartitionLag(group_id, self._consumer, settings.consumer_lag_interval_s)

    async def start(self) -> None:
        await self._consumer.start()
        self._consumer.subscribe(self._topics, listener=self.lag)

    async def report_lag(self) -> None:
        """Measure the lag on a timer until asked to stop (a task of its own)."""
        await self.lag.run(self._stopping)

    def request_stop(self) -> None:
        """Stop fetching; the batch in hand is finished and committed first."""
        self._stopping.set()

    async def stop(self) -> None:
        # Leaves the group, so partitions move to the other instances at once.
        await self._consumer.stop()

    async def run(self) -> None:
        """Fetch, apply, commit, pipelined: the offsets of a batch go to the broker while
        the next batch is fetched and applied (aiokafka fetches in the background, so a
        batch holds whatever arrived while the previous one was applied: batches grow
        with the load and the fixed cost per batch falls). One commit is in flight at a
        time and each covers everything before it; offsets are committed only after the
        database commit of their batch, so a crash redelivers at most what was applied
        and not yet committed, which the inbox makes harmless."""
        committing: asyncio.Task[None] | None = None
        empty_fetches = 0
        try:
            while not self._stopping.is_set():
                records = await self._consumer.getmany(timeout_ms=FETCH_POLL_MS, max_records=self.max_batch)
                if not records:
                    empty_fetches += 1
                    if empty_fetches == IDLE_AFTER_EMPTY_POLLS:
                        self._set_fetch_wait(self._idle_fetch_wait_ms)
                    continue
                if empty_fetches >= IDLE_AFTER_EMPTY_POLLS:
                    self._set_fetch_wait(self._busy_fetch_wait_ms)
                empty_fetches = 0
                if not await self._apply(records):
                    return  # stopping while the batch failed: it is redelivered after restart
                if committing is not None:
                    await self._settle(committing)
                offsets = {tp: msgs[-1].offset + 1 for tp, msgs in records.items()}
                committing = asyncio.create_task(self._consumer.commit(offsets), name=f"{self.group_id}-commit")
        finally:
            if committing is not None:
                await self._settle(committing)

    @property
    def fetch_wait_ms(self) -> int:
        """How long the next fetch may wait on the broker: `KAFKA_FETCH_MAX_WAIT_MS` while
        records come, `KAFKA_IDLE_FETCH_MAX_WAIT_MS` once none came for a second."""
        fetcher = self._consumer._fetcher  # None until the consumer has started
        return self._busy_fetch_wait_ms if fetcher is None else int(fetcher._fetch_max_wait_ms)

    def _set_fetch_wait(self, wait_ms: int) -> None:
        # aiokafka reads its fetcher's wait for every fetch request it builds and offers no
        # setter; tests/integration/test_consumer_idle_fetch.py holds this to the version
        # in use (an attribute renamed by an upgrade fails it, instead of idling at 15 ms).
        self._consumer._fetcher._fetch_max_wait_ms = wait_ms

    async def _apply(self, records: dict[TopicPartition, list[ConsumerRecord]]) -> bool:
        """Apply a batch, retrying it whole after a transient failure; False if asked to
        stop before it could be applied."""
        batch, rejected = self._decode(records)
        attempt = 0
        while True:
            try:
                with consuming(batch, self.group_id) as spans:
                    failed = await isolate_failures(batch, self.handler)
                    for item, error in failed:
                        spans.failed(item, error)
                await self._dead_letter([*rejected, *(self._letter(item, error) for item, error in failed)])
                return True
            except Exception as exc:
                HANDLER_FAILURES.labels(self.group_id).inc()
                delay = backoff_delay(attempt, self.retry_backoff_s, self.retry_backoff_max_s)
                log.warning(
                    "batch could not be completed; retrying the batch",
                    exc_info=True,
                    extra={"group": self.group_id, "transient": is_transient(exc), "retry_in_s": delay},
                )
                if self._stopping.is_set():
                    return False
                attempt += 1
                await asyncio.sleep(delay)

    async def _settle(self, committing: asyncio.Task[None]) -> None:
        """Wait for an offset commit. A failed one (a rebalance, the broker away) is only
        logged: the next commit covers its offsets, or the new owner gets the batch again."""
        try:
            await committing
        except Exception:
            log.warning(
                "offset commit failed; the batch may be redelivered", exc_info=True, extra={"group": self.group_id}
            )

    def _letter(self, item: ConsumedEvent, error: BaseException) -> DeadLetter:
        return DeadLetter(
            group=self.group_id,
            topic=item.topic.name,
            partition=item.partition,
            offset=item.offset,
            key=item.key,
            value=item.value,
            error=describe_error(error),
            merchant_id=item.event.merchant_id,
            event_id=item.event.event_id,
        )

    async def _dead_letter(self, letters: list[DeadLetter]) -> None:
        """Record dead letters before the offsets move past them (a failure retries the batch)."""
        if not letters:
            return
        if self.dead_letters is not None:
            await self.dead_letters(letters)
        for letter in letters:
            log.error(
                "event moved to a dead letter",
                extra={
                    "group": self.group_id,
                    "topic": letter.topic,
                    "partition": letter.partition,
                    "offset": letter.offset,
                    "merchant_id": str(letter.merchant),
                    "error": letter.error,
                    "recorded": self.dead_letters is not None,
                },
            )

    def _decode(
        self, records: dict[TopicPartition, list[ConsumerRecord]]
    ) -> tuple[list[ConsumedEvent], list[DeadLetter]]:
        batch: list[ConsumedEvent] = []
        rejected: list[DeadLetter] = []
        traced = enabled()
        for tp, msgs in records.items():
            topic = BY_NAME[tp.topic]
            BATCH_SIZE.labels(tp.topic).observe(len(msgs))
            for msg in msgs:
                value = msg.value or b""
                try:
                    event = decode_event(topic, value)
                except ValidationError as exc:
                    # A message that breaks the contract cannot be applied by retrying.
                    REJECTED.labels(tp.topic).inc()
                    rejected.append(
                        DeadLetter(
                            group=self.group_id,
                            topic=tp.topic,
                            partition=tp.partition,
                            offset=msg.offset,
                            key=msg.key,
                            value=value,
                            error=describe_error(exc),
                        )
                    )
                    continue
                CONSUMED.labels(tp.topic).inc()
                trace_context = header_trace_context(msg.headers) if traced else None
                batch.append(ConsumedEvent(topic, event, tp.partition, msg.offset, msg.key, value, trace_context))
        return batch, rejected


class PartitionLag(ConsumerRebalanceListener):  # type: ignore[misc]
    """`stocksync_consumer_lag` of one consumer, measured from the broker on a timer.

    Every `interval_s`, for each partition assigned to this member: the group's committed
    offset (OffsetFetch) against the partition's log end (ListOffsets). Measured so, the
    lag is right while the consumer is stuck on a batch or idle, which is when it
    matters; a partition that moves to another member loses its series here at once (the
    new owner reports it), so no stale value lingers after a rebalance.
    """

    def __init__(self, group_id: str, consumer: AIOKafkaConsumer, interval_s: float) -> None:
        self.group_id = group_id
        self.interval_s = interval_s
        self._consumer = consumer
        self._reported: set[TopicPartition] = set()

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.forget(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        return None

    def forget(self, partitions: set[TopicPartition] | None = None) -> None:
        for tp in set(self._reported) if partitions is None else partitions & self._reported:
            CONSUMER_LAG.remove(self.group_id, tp.topic, str(tp.partition))
            self._reported.discard(tp)

    async def measure(self) -> dict[TopicPartition, int]:
        assigned = set(self._consumer.assignment())
        self.forget(self._reported - assigned)
        if not assigned:
            return {}
        ends = await self._consumer.end_offsets(list(assigned))
        lags = {}
        for tp in assigned:
            committed = await self._consumer.committed(tp)
            if committed is None:  # nothing committed yet: the whole retained log is ahead
                committed = (await self._consumer.beginning_offsets([tp]))[tp]
            lags[tp] = max(0, ends[tp] - committed)
        for tp, lag in lags.items():
            if tp in set(self._consumer.assignment()):  # not revoked while we asked
                CONSUMER_LAG.labels(self.group_id, tp.topic, str(tp.partition)).set(lag)
                self._reported.add(tp)
        return lags

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                await self.measure()
            except Exception:
                # The broker is unreachable: the previous values stay, readiness says why.
                log.warning("consumer lag not measured", exc_info=True, extra={"group": self.group_id})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.interval_s)
        self.forget()
