"""docs/examples/oversell_consumer.py, run as a subscriber would run it, on the real broker."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid

import pytest
from aiokafka import AIOKafkaProducer

from stocksync_common.contracts import OversellDetected
from stocksync_common.kafka import encode_event
from stocksync_common.topics import OVERSELLS

from tests.deploy.conftest import REPO

pytestmark = pytest.mark.integration

EXAMPLE = REPO / "docs" / "examples" / "oversell_consumer.py"


async def publish(bootstrap: str, events: list[OversellDetected]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for event in events:
            await producer.send_and_wait(
                OVERSELLS.name,
                encode_event(event),
                key=OVERSELLS.key_of(event),
                headers=[("event_type", b"OversellDetected"), ("causation_id", event.causation_id.encode())],
            )
    finally:
        await producer.stop()


def run_example(bootstrap: str, group: str, merchant: uuid.UUID) -> list[dict[str, object]]:
    done = subprocess.run(
        [
            sys.executable,
            str(EXAMPLE),
            "--bootstrap-servers",
            bootstrap,
            "--group",
            group,
            "--merchant",
            str(merchant),
            "--exit-when-idle",
            "8",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_the_example_reacts_once_to_each_new_oversell_and_resumes_after_its_commit(
    kafka_bootstrap_servers: str,
) -> None:
    merchant = uuid.uuid4()

    def oversell(sku: str, version: int, oversold: int) -> OversellDetected:
        return OversellDetected(
            causation_id=f"test:{sku}:{version}",
            merchant_id=merchant,
            sku=sku,
            version=version,
            available=-oversold,
            oversold=oversold,
        )

    first = oversell("A", 5, 2)
    events = [first, first, oversell("A", 4, 1), oversell("B", 1, 3)]  # a redelivery, a stale one
    asyncio.run(publish(kafka_bootstrap_servers, events))
    group = f"oversell-example-{uuid.uuid4()}"

    reactions = run_example(kafka_bootstrap_servers, group, merchant)
    # One partition per SKU key: no order between A and B, A's own order kept.
    assert sorted((r["sku"], r["oversold"]) for r in reactions) == [("A", 2), ("B", 3)]
    assert [r["event_id"] for r in reactions if r["sku"] == "A"] == [str(first.event_id)]

    # Committed: the same group starts after them and reacts to the new one only.
    later = oversell("A", 6, 1)
    asyncio.run(publish(kafka_bootstrap_servers, [later]))
    assert [r["event_id"] for r in run_example(kafka_bootstrap_servers, group, merchant)] == [str(later.event_id)]
