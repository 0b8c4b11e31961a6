"""Where the latency goes: how long after order-ingest's receipt each hop produced its event.

Every stock event carries the receipt time of the webhook that caused it
(`OrderLineMoved.received_at`, then `origin_received_at` on `StockChanged` and
`ChannelQuantityChanged`), and every broker record carries the time its producer sent
it. Reading the three topics after a run (a plain reader with no consumer group, so it
changes nothing for the services) gives, per hop, the time from receipt to the hop's
event leaving for the broker:

    ingest  -> orders.v1             (webhook verified, stored, relayed from the outbox)
    ledger  -> stock.changed.v1      (consumed, applied, relayed)
    rules   -> channel.quantity.v1   (consumed, evaluated, relayed)
    publisher: channel accepted      (`sync_window_ms` of the pushes)
"""

from __future__ import annotations

import asyncio

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.measures import summarise

STAGES = (
    ("orders.v1", "received_at", "ingest: receipt to orders.v1"),
    ("stock.changed.v1", "origin_received_at", "ledger: receipt to stock.changed.v1"),
    ("channel.quantity.v1", "origin_received_at", "rules: receipt to channel.quantity.v1"),
)


def _epoch(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def _read(bootstrap: str, merchant_id: str, since_ms: int) -> dict[str, list[float]]:
    delays: dict[str, list[float]] = {label: [] for _, _, label in STAGES}
    for topic, field, label in STAGES:
        # One reader per topic: re-assigning one reader to another topic reads nothing.
        reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
        await reader.start()
        try:
            await reader.topics()
            partitions = [TopicPartition(topic, p) for p in sorted(reader.partitions_for_topic(topic) or set())]
            reader.assign(partitions)
            starts = await reader.offsets_for_times(dict.fromkeys(partitions, since_ms))
            ends = await reader.end_offsets(partitions)
            for tp in partitions:
                found = starts.get(tp)
                reader.seek(tp, found.offset if found is not None else ends[tp])
            while [tp for tp in partitions if await reader.position(tp) < ends[tp]]:
                batch = await reader.getmany(timeout_ms=2000, max_records=5000)
                if not batch:
                    break
                for records in batch.values():
                    for record in records:
                        event = orjson.loads(record.value)
                        if event.get("merchant_id") != merchant_id or not event.get(field):
                            continue
                        delays[label].append(record.timestamp / 1000 - _epoch(event[field]))
        finally:
            await reader.stop()
    return delays


def stage_delays(bootstrap: str, merchant_id: str, since: float) -> dict[str, dict[str, float]]:
    """Percentiles (ms) of each hop's delay after receipt, for one merchant's events since `since`."""
    delays = asyncio.run(_read(bootstrap, merchant_id, int(since * 1000)))
    return {
        label: {k: round(v * 1000, 2) if k != "count" else v for k, v in summarise(values).items()}
        for label, values in delays.items()
    }
