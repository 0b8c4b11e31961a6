"""The floor: Stocksync's hops with no business logic, on the same broker and PostgreSQL.

    load generator ──HTTP──> ingress ──floor.in──> relay ──floor.out──> egress ──HTTP──> sink
                             (FastAPI,             (one database          (one POST per
                              verify HMAC,          commit per batch)      channel per batch)
                              produce, await ack)

Each role is its own process, as each Stocksync service is, with the same client
settings (aiokafka, acks=all, linger 0, the services' default fetch wait and batch size; uvicorn
with access logs off; asyncpg). What the floor leaves out is exactly Stocksync's own
work: dedupe, the outbox and inbox, the ledger, the rules, coalescing, the channel
protocol. The sink records when each order reached each channel.

Run a role: `python -m bench.floor {ingress,relay,egress,sink} ...`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import hmac
import signal
import time
from collections.abc import Sequence
from typing import Any

import orjson
import uvicorn
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import ORJSONResponse

from stocksync_common.settings import ServiceSettings
from stocksync_common.topics import ORDERS

_DEFAULTS = ServiceSettings.model_fields

TOPIC_IN = "bench.floor.in"
TOPIC_OUT = "bench.floor.out"
# The services' own defaults, read from where they are defined, so that the floor cannot
# drift from them (it ran at a 5 ms fetch wait against the services' 15 ms until 2026-11-30).
PARTITIONS = ORDERS.partitions
MAX_BATCH = _DEFAULTS["kafka_max_batch"].default
FETCH_MAX_WAIT_MS = _DEFAULTS["kafka_fetch_max_wait_ms"].default


async def ensure_floor_topics(bootstrap: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [NewTopic(t, PARTITIONS, 1) for t in (TOPIC_IN, TOPIC_OUT) if t not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
    finally:
        await admin.close()


def _producer(bootstrap: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=False, linger_ms=0, request_timeout_ms=10_000
    )


def _consumer(bootstrap: str, topic: str, group: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
    )


def ingress_app(bootstrap: str, secret: str) -> FastAPI:
    state: dict[str, AIOKafkaProducer] = {}

    async def lifespan(app: FastAPI) -> Any:
        producer = _producer(bootstrap)
        await producer.start()
        state["producer"] = producer
        yield
        await producer.stop()

    app = FastAPI(lifespan=lifespan)
    key = secret.encode()

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/webhooks/{channel_type}/{connection_id}")
    async def webhook(channel_type: str, connection_id: str, request: Request) -> ORJSONResponse:
        received_at = time.time()
        body = await request.body()
        expected = base64.b64encode(hmac.new(key, body, hashlib.sha256).digest()).decode()
        if not hmac.compare_digest(expected, request.headers.get("x-shopify-hmac-sha256", "")):
            raise HTTPException(401, "invalid webhook signature")
        order = orjson.loads(body)
        value = orjson.dumps({"order_id": order["id"], "received_at": received_at})
        await state["producer"].send_and_wait(TOPIC_IN, value, key=str(order["id"]).encode())
        return ORJSONResponse({"status": "accepted"})

    return app


async def run_relay(bootstrap: str, database_url: str) -> None:
    """Consume a batch, commit it to PostgreSQL in one transaction, produce it, commit offsets."""
    import asyncpg

    connection = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
    await connection.execute("CREATE SCHEMA IF NOT EXISTS bench_floor")
    await connection.execute(
        "CREATE TABLE IF NOT EXISTS bench_floor.events (order_id bigint, received_at double precision)"
    )
    consumer = _consumer(bootstrap, TOPIC_IN, "bench-floor-relay")
    producer = _producer(bootstrap)
    await consumer.start()
    await producer.start()
    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    try:
        while not stopping.is_set():
            records = await consumer.getmany(timeout_ms=200, max_records=MAX_BATCH)
            if not records:
                continue
            messages = [m for msgs in records.values() for m in msgs]
            rows = [(o["order_id"], o["received_at"]) for o in (orjson.loads(m.value) for m in messages)]
            async with connection.transaction():
                await connection.executemany("INSERT INTO bench_floor.events VALUES ($1, $2)", rows)
            sends = [await producer.send(TOPIC_OUT, m.value, key=m.key) for m in messages]
            await asyncio.gather(*sends)
            await consumer.commit({tp: msgs[-1].offset + 1 for tp, msgs in records.items()})
    finally:
        await consumer.stop()
        await producer.stop()
        await connection.close()


async def run_egress(bootstrap: str, sink_url: str, channels: int) -> None:
    """Consume a batch and send it to every channel, one POST per channel, as a publisher would."""
    import httpx

    consumer = _consumer(bootstrap, TOPIC_OUT, "bench-floor-egress")
    await consumer.start()
    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    async with httpx.AsyncClient(timeout=30) as client:
        try:
            while not stopping.is_set():
                records = await consumer.getmany(timeout_ms=200, max_records=MAX_BATCH)
                if not records:
                    continue
                ids = [orjson.loads(m.value)["order_id"] for msgs in records.values() for m in msgs]
                body = orjson.dumps({"order_ids": ids})
                await asyncio.gather(
                    *[
                        client.post(
                            f"{sink_url}/sink/C{c + 1}", content=body, headers={"content-type": "application/json"}
                        )
                        for c in range(channels)
                    ]
                )
                await consumer.commit({tp: msgs[-1].offset + 1 for tp, msgs in records.items()})
        finally:
            await consumer.stop()


def sink_app() -> FastAPI:
    app = FastAPI()
    received: dict[str, list[tuple[int, float]]] = {}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/sink/{channel}")
    async def sink(channel: str, request: Request) -> ORJSONResponse:
        at = time.time()
        ids = orjson.loads(await request.body())["order_ids"]
        received.setdefault(channel, []).extend((i, at) for i in ids)
        return ORJSONResponse({"accepted": len(ids)})

    @app.get("/_sink/records")
    async def records() -> ORJSONResponse:
        return ORJSONResponse({"channels": received})

    @app.post("/_sink/reset")
    async def reset() -> ORJSONResponse:
        received.clear()
        return ORJSONResponse({"reset": True})

    return app


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.floor")
    sub = parser.add_subparsers(dest="role", required=True)
    ingress = sub.add_parser("ingress")
    ingress.add_argument("--port", type=int, required=True)
    ingress.add_argument("--bootstrap", required=True)
    ingress.add_argument("--secret", required=True)
    relay = sub.add_parser("relay")
    relay.add_argument("--bootstrap", required=True)
    relay.add_argument("--database-url", required=True)
    egress = sub.add_parser("egress")
    egress.add_argument("--bootstrap", required=True)
    egress.add_argument("--sink-url", required=True)
    egress.add_argument("--channels", type=int, default=2)
    sink = sub.add_parser("sink")
    sink.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    if args.role == "ingress":
        uvicorn.run(
            ingress_app(args.bootstrap, args.secret),
            host="127.0.0.1",
            port=args.port,
            log_config=None,
            access_log=False,
        )
    elif args.role == "sink":
        uvicorn.run(sink_app(), host="127.0.0.1", port=args.port, log_config=None, access_log=False)
    elif args.role == "relay":
        asyncio.run(run_relay(args.bootstrap, args.database_url))
    else:
        asyncio.run(run_egress(args.bootstrap, args.sink_url, args.channels))
