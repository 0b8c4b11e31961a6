"""What a test reads back from a broker: a topic's events, a consumer group's committed offsets."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition

from stocksync_common.contracts import Event
from stocksync_common.kafka import decode_event
from stocksync_common.topics import Topic


async def events_on_topic(bootstrap_servers: str, topic: Topic) -> list[Event]:
    """Every event on `topic`, from the start to the end each partition had when called;
    each partition's in its order."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    found: list[Event] = []
    try:
        partitions = [TopicPartition(topic.name, p) for p in consumer.partitions_for_topic(topic.name) or ()]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                found += [decode_event(topic, record.value or b"") for record in records]
    finally:
        await consumer.stop()
    return found


async def committed_offsets(bootstrap_servers: str, group: str, topic: Topic) -> dict[int, int]:
    """The offsets `group` has committed on each partition of `topic` (0 where none)."""
    # A consumer of the group that never subscribes reads its offsets without joining it.
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=group, enable_auto_commit=False)
    await reader.start()
    try:
        return {p: await reader.committed(TopicPartition(topic.name, p)) or 0 for p in range(topic.partitions)}
    finally:
        await reader.stop()
