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
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
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
    "stocksync_consumer_lag", "Records behind the end of the partition", ["group", "topic", "partition"]
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


BatchHandler = Callable[[list[ConsumedEvent]], Awaitable[None]]


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
        self._stopping = asyncio.Event()
        self._consumer = AIOKafkaConsumer(
            *[t.name for t in topics],
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

    async def start(self) -> None:
        await self._consumer.start()

    def request_stop(self) -> None:
        """Stop fetching; the batch in hand is finished and committed first."""
        self._stopping.set()

    async def stop(self) -> None:
        # Leaves the group, so partitions move to the other instances at once.
        await self._consumer.stop()

    async def run(self) -> None:
        while not self._stopping.is_set():
            records = await self._consumer.getmany(timeout_ms=200, max_records=self.max_batch)
            if not records:
                continue
            batch, rejected = self._decode(records)
            attempt = 0
            while True:
                try:
                    failed = await isolate_failures(batch, self.handler)
                    await self._dead_letter([*rejected, *(self._letter(item, error) for item, error in failed)])
                    await self._consumer.commit({tp: msgs[-1].offset + 1 for tp, msgs in records.items()})
                    self._record_lag(records)
                    break
                except Exception as exc:
                    HANDLER_FAILURES.labels(self.group_id).inc()
                    delay = backoff_delay(attempt, self.retry_backoff_s, self.retry_backoff_max_s)
                    log.warning(
                        "batch could not be completed; retrying the batch",
                        exc_info=True,
                        extra={"group": self.group_id, "transient": is_transient(exc), "retry_in_s": delay},
                    )
                    if self._stopping.is_set():
                        # Leave the batch uncommitted: it is redelivered after restart.
                        return
                    attempt += 1
                    await asyncio.sleep(delay)

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
                batch.append(ConsumedEvent(topic, event, tp.partition, msg.offset, msg.key, value))
        return batch, rejected

    def _record_lag(self, records: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        for tp, msgs in records.items():
            highwater = self._consumer.highwater(tp)
            if highwater is not None:
                lag = max(0, highwater - (msgs[-1].offset + 1))
                CONSUMER_LAG.labels(self.group_id, tp.topic, str(tp.partition)).set(lag)
