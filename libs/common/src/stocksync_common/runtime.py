"""What a service process runs beside its HTTP API: engine, producer, relay, consumers.

Shutdown order (SIGTERM): consumers stop fetching and finish and commit their batch,
then leave their group; background workers finish in-flight calls; the relay publishes
what is committed; then the producer and the database pool close. Nothing is applied
twice (inbox) and nothing is lost (offsets were committed only after the database).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI
from fastapi.responses import ORJSONResponse

from stocksync_common.db import make_engine, ping
from stocksync_common.errors import document_errors, install_error_handlers
from stocksync_common.kafka import BatchConsumer, BatchHandler, make_producer
from stocksync_common.logging import configure_logging
from stocksync_common.metrics import instrument
from stocksync_common.outbox import OutboxRelay
from stocksync_common.secrets import configure_secrets
from stocksync_common.settings import ServiceSettings
from stocksync_common.topics import Topic

log = logging.getLogger(__name__)


@dataclass
class BackgroundWorker:
    name: str
    run: Callable[[], Coroutine[Any, Any, None]]
    request_stop: Callable[[], None]


class Runtime:
    def __init__(self, service: str, settings: ServiceSettings, outbox: sa.Table | None) -> None:
        self.service = service
        self.settings = settings
        configure_secrets(settings.secrets_key.get_secret_value(), settings.previous_secrets_keys)
        self.engine = make_engine(settings.database_url, settings.database_pool_size)
        self.outbox = outbox
        # aiokafka objects must be created inside the running event loop: see start().
        self._producer: AIOKafkaProducer | None = None
        self.relay: OutboxRelay | None = None
        self._consumer_specs: list[tuple[Sequence[Topic], str, BatchHandler]] = []
        self.consumers: list[BatchConsumer] = []
        self.workers: list[BackgroundWorker] = []
        self._consumer_tasks: list[asyncio.Task[None]] = []
        self._worker_tasks: list[asyncio.Task[None]] = []
        self._relay_task: asyncio.Task[None] | None = None

    @property
    def producer(self) -> AIOKafkaProducer:
        assert self._producer is not None, "the runtime has not started"
        return self._producer

    def add_consumer(self, topics: Sequence[Topic], group_id: str, handler: BatchHandler) -> None:
        self._consumer_specs.append((topics, group_id, handler))

    def add_worker(self, worker: BackgroundWorker) -> None:
        self.workers.append(worker)

    def wake_relay(self) -> None:
        if self.relay is not None:
            self.relay.wake()

    async def start(self) -> None:
        self._producer = make_producer(self.settings)
        await self._producer.start()
        if self.outbox is not None:
            self.relay = OutboxRelay(
                self.engine, self.outbox, self._producer, poll_interval_s=self.settings.outbox_poll_interval_s
            )
            self._relay_task = asyncio.create_task(self.relay.run(), name="outbox-relay")
        self.consumers = [BatchConsumer(self.settings, *spec) for spec in self._consumer_specs]
        for consumer in self.consumers:
            await consumer.start()
            self._consumer_tasks.append(asyncio.create_task(consumer.run(), name=consumer.group_id))
        for worker in self.workers:
            self._worker_tasks.append(asyncio.create_task(worker.run(), name=worker.name))

    async def stop(self) -> None:
        timeout = self.settings.graceful_shutdown_timeout_s
        # Everything stops taking new work at once; then each finishes what it holds.
        for consumer in self.consumers:
            consumer.request_stop()
        for worker in self.workers:
            worker.request_stop()
        await _drain(self._consumer_tasks, timeout)
        for consumer in self.consumers:
            await consumer.stop()
        await _drain(self._worker_tasks, timeout)
        if self.relay is not None and self._relay_task is not None:
            self.relay.request_stop()
            await _drain([self._relay_task], timeout)
        await self.producer.stop()
        await self.engine.dispose()

    async def readiness(self) -> dict[str, str]:
        checks: dict[str, str] = {}
        try:
            await asyncio.wait_for(ping(self.engine), 2)
            checks["database"] = "ok"
        except Exception as exc:  # any failure means not ready
            checks["database"] = f"unreachable: {type(exc).__name__}"
        try:
            await asyncio.wait_for(self.producer.client.fetch_all_metadata(), 2)
            checks["broker"] = "ok"
        except Exception as exc:
            checks["broker"] = f"unreachable: {type(exc).__name__}"
        for task in [*self._consumer_tasks, *self._worker_tasks]:
            if task.done():
                checks[task.get_name()] = "stopped"
        return checks


async def _drain(tasks: list[asyncio.Task[None]], timeout: float) -> None:
    if not tasks:
        return
    done, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        task.cancel()
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            log.error("background task ended with an error", exc_info=task.exception())


def create_service_app(
    *,
    title: str,
    description: str,
    runtime: Runtime,
    on_startup: Callable[[], Awaitable[None]] | None = None,
) -> FastAPI:
    """The FastAPI app of a service with `/healthz`, `/readyz`, `/metrics` and its runtime."""
    settings = runtime.settings
    configure_logging(runtime.service, settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        if on_startup is not None:
            await on_startup()
        log.info("service started", extra={"port": settings.http_port})
        try:
            yield
        finally:
            log.info("service stopping")
            await runtime.stop()

    app = FastAPI(
        title=title,
        description=description,
        version="0.1.0",
        lifespan=lifespan,
        default_response_class=ORJSONResponse,
    )
    app.state.settings = settings
    app.state.runtime = runtime
    instrument(app, runtime.service)
    install_error_handlers(app)
    document_errors(app)

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        return {"status": "alive", "service": runtime.service}

    @app.get("/readyz", tags=["operations"])
    async def readyz() -> ORJSONResponse:
        checks = await runtime.readiness()
        ready = all(value == "ok" for value in checks.values())
        return ORJSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    return app
