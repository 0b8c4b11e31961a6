"""An example subscriber of Stocksync's topics: react to oversells.

Reads `stock.oversells.v1` (docs/asyncapi.yaml) with a consumer group of its own and,
for each oversell, prints one JSON line (replace `react` with what your service does:
open a ticket, hold the order, page the merchant). It depends on aiokafka only, not on
Stocksync's code, as another team's service would, and follows the topic's contract:

- at least once: an event may come twice, so it skips an `event_id` it has handled;
- ordered per `<merchant_id>:<sku>`, with a `version` that grows: it skips an oversell
  whose version is not newer than the last one it handled for that SKU;
- compatible changes add fields: it reads the fields it needs and ignores the others;
- offsets are committed after the reaction, so a crash repeats, never loses, one.

Here the memory of handled events lives in the process; a real service keeps it in its
own database, written in the same transaction as its reaction.

    python docs/examples/oversell_consumer.py --bootstrap-servers localhost:19092
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from aiokafka import AIOKafkaConsumer

TOPIC = "stock.oversells.v1"


def react(oversell: dict[str, Any]) -> None:
    print(
        json.dumps(
            {
                "merchant_id": oversell["merchant_id"],
                "sku": oversell["sku"],
                "location": oversell.get("location", "default"),
                "oversold": oversell["oversold"],
                "available": oversell["available"],
                "event_id": oversell["event_id"],
            }
        ),
        flush=True,
    )


class OversellHandler:
    def __init__(self, merchant_id: str | None) -> None:
        self.merchant_id = merchant_id
        self.seen_events: set[str] = set()
        self.versions: dict[tuple[str, str, str], int] = {}

    def handle(self, value: bytes) -> bool:
        """React to one record; False when it was a duplicate, stale or not ours."""
        try:
            event = json.loads(value)
            event_id, version = str(event["event_id"]), int(event["version"])
            key = (str(event["merchant_id"]), str(event["sku"]), str(event.get("location", "default")))
        except (ValueError, KeyError, TypeError):
            print(f"skipping a record that is not an oversell: {value[:200]!r}", file=sys.stderr)
            return False
        if self.merchant_id is not None and key[0] != self.merchant_id:
            return False
        if event_id in self.seen_events or version <= self.versions.get(key, 0):
            return False
        react(event)
        self.seen_events.add(event_id)
        self.versions[key] = version
        return True


async def consume(args: argparse.Namespace) -> int:
    handler = OversellHandler(args.merchant)
    consumer = AIOKafkaConsumer(
        TOPIC,
        bootstrap_servers=args.bootstrap_servers,
        group_id=args.group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    handled = 0
    idle = 0.0
    try:
        while args.exit_when_idle is None or idle < args.exit_when_idle:
            batches = await consumer.getmany(timeout_ms=500)
            if not batches:
                idle += 0.5
                continue
            idle = 0.0
            for records in batches.values():
                handled += sum(handler.handle(record.value) for record in records if record.value is not None)
            await consumer.commit()
    finally:
        await consumer.stop()
    return handled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap-servers", default="localhost:19092")
    parser.add_argument("--group", default="oversell-example")
    parser.add_argument("--merchant", help="only this merchant's oversells")
    parser.add_argument("--exit-when-idle", type=float, help="stop after this many seconds without records")
    handled = asyncio.run(consume(parser.parse_args()))
    print(f"{handled} oversells handled", file=sys.stderr)


if __name__ == "__main__":
    main()
