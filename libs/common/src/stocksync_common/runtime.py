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
from typing import Annotated, Any

import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from fastapi import Depends, FastAPI, Request
from fastapi.responses import ORJSONResponse

from stocksync_common.asyncapi import build_document
from stocksync_common.auth import LedgerKeyLookup, ledger_key_verifier
from stocksync_common.backlog import backlog_router
from stocksync_common.db import make_engine, ping
from stocksync_common.dead_letters import DeadLetterStore
from stocksync_common.errors import document_errors, install_error_handlers
from stocksync_common.kafka import BatchConsumer, BatchHandler, make_producer
from stocksync_common.logging import configure_logging
from stocksync_common.metrics import instrument
from stocksync_common.outbox import OutboxRelay
from stocksync_common.secrets import configure_secrets
from stocksync_common.settings import ServiceSettings
from stocksync_common.topics import Topic
from stocksync_common.tracing import configure_tracing, instrument_app, shutdown_tracing
from stocksync_common.uow import UnitOfWorkFactory

log = logging.getLogger(__name__)


@dataclass
class BackgroundWorker:
    name: str
    run: Callable[[], Coroutine[Any, Any, None]]
    request_stop: Callable[[], None]


class Runtime:
    def __init__(
        self,
        service: str,
        settings: ServiceSettings,
        *,
        inbox: sa.Table | None = None,
        outbox: sa.Table | None = None,
        dead_letters: sa.Table | None = None,
    ) -> None:
        self.service = service
        self.settings = settings
        configure_secrets(settings.secrets_key.get_secret_value(), settings.previous_secrets_keys)
        # Before the service builds its HTTP clients, so that they can be instrumented.
        configure_tracing(service)
        self.engine = make_engine(settings.database_url, settings.database_pool_size)
        self.outbox = outbox
        # The service's units of work: their commits wake this process's relay.
        self.units = UnitOfWorkFactory(self.engine, inbox=inbox, outbox=outbox, wake_relay=self.wake_relay)
        # Where this service's consumers put the events they cannot apply (needs the outbox).
        self.dead_letters = (
            DeadLetterStore(self.units, dead_letters) if dead_letters is not None and outbox is not None else None
        )
        # aiokafka objects must be created inside the running event loop: see start().
        self._producer: AIOKafkaProducer | None = None
        self.relay: OutboxRelay | None = None
        self._consumer_specs: list[tuple[Sequence[Topic], str, BatchHandler, bool]] = []
        self.consumers: list[BatchConsumer] = []
        self.workers: list[BackgroundWorker] = []
        self._consumer_tasks: list[asyncio.Task[None]] = []
        self._worker_tasks: list[asyncio.Task[None]] = []
        self._relay_task: asyncio.Task[None] | None = None
        self._lag_tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    @property
    def producer(self) -> AIOKafkaProducer:
        assert self._producer is not None, "the runtime has not started"
        return self._producer

    def add_consumer(
        self, topics: Sequence[Topic], group_id: str, handler: BatchHandler, *, dead_letter: bool = True
    ) -> None:
        """`dead_letter=False`: an event that cannot be applied is logged and skipped."""
        self._consumer_specs.append((topics, group_id, handler, dead_letter))

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
                self.engine,
                self.outbox,
                self._producer,
                bootstrap_servers=self.settings.kafka_bootstrap_servers,
                poll_interval_s=self.settings.outbox_poll_interval_s,
                retention_s=self.settings.outbox_retention_s,
                broker_check_interval_s=self.settings.outbox_broker_check_interval_s,
                lease_timeout_s=self.settings.outbox_lease_timeout_s,
            )
            self._relay_task = asyncio.create_task(self.relay.run(), name="outbox-relay")
        self.consumers = [
            BatchConsumer(
                self.settings,
                topics,
                group_id,
                handler,
                retry_backoff_max_s=self.settings.consumer_retry_backoff_max_s,
                dead_letters=self.dead_letters.record if dead_letter and self.dead_letters is not None else None,
            )
            for topics, group_id, handler, dead_letter in self._consumer_specs
        ]
        for consumer in self.consumers:
            await consumer.start()
            self._consumer_tasks.append(asyncio.create_task(consumer.run(), name=consumer.group_id))
            self._lag_tasks.append(asyncio.create_task(consumer.report_lag(), name=f"{consumer.group_id}-lag"))
        for worker in self.workers:
            self._worker_tasks.append(asyncio.create_task(worker.run(), name=worker.name))

    async def stop(self) -> None:
        timeout = self.settings.graceful_shutdown_timeout_s
        self._stopping = True
        # Everything stops taking new work at once; then each finishes what it holds.
        for consumer in self.consumers:
            consumer.request_stop()
        for worker in self.workers:
            worker.request_stop()
        await _drain([*self._consumer_tasks, *self._lag_tasks], timeout)
        for consumer in self.consumers:
            await consumer.stop()
        await _drain(self._worker_tasks, timeout)
        if self.relay is not None and self._relay_task is not None:
            self.relay.request_stop()
            await _drain([self._relay_task], timeout)
        await self.producer.stop()
        await self.engine.dispose()
        shutdown_tracing()

    def dead_tasks(self) -> list[str]:
        """The consumers, lag reporters, workers and relay that ended while the process
        was not stopping. Each runs until shutdown; one that ended (an error that escaped
        it, a cancellation) does no more work, and only a restart brings it back."""
        if self._stopping:
            return []
        tasks = [*self._consumer_tasks, *self._lag_tasks, *self._worker_tasks]
        if self._relay_task is not None:
            tasks.append(self._relay_task)
        return sorted(task.get_name() for task in tasks if task.done())

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


def current_runtime(request: Request) -> Runtime:
    """The runtime of the service answering `request` (`create_service_app` keeps it)."""
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(current_runtime)]
"""How an endpoint gets its service's runtime: a parameter `runtime: RuntimeDep`."""


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
            lookup = app.state.api_keys.lookup
            if isinstance(lookup, LedgerKeyLookup):
                await lookup.close()

    app = FastAPI(
        title=title,
        description=description,
        version="0.1.0",
        lifespan=lifespan,
        default_response_class=ORJSONResponse,
    )
    app.state.settings = settings
    app.state.runtime = runtime
    # The stock-ledger replaces it with one that reads its own table.
    app.state.api_keys = ledger_key_verifier(settings)
    instrument(app, runtime.service)
    instrument_app(app)
    install_error_handlers(app)
    app.include_router(backlog_router(runtime.service, lambda: runtime.relay))
    document_errors(app)

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> ORJSONResponse:
        """Liveness: 503 once a consumer, worker or the relay has died, so the
        orchestrator restarts the process instead of leaving it up and idle."""
        dead = runtime.dead_tasks()
        if dead:
            return ORJSONResponse({"status": "dead", "service": runtime.service, "dead": dead}, status_code=503)
        return ORJSONResponse({"status": "alive", "service": runtime.service})

    @app.get("/asyncapi", include_in_schema=False)
    async def asyncapi() -> ORJSONResponse:
        """The AsyncAPI 3 document of every topic (docs/asyncapi.yaml), for subscribers."""
        return ORJSONResponse(build_document())

    @app.get("/readyz", tags=["operations"])
    async def readyz() -> ORJSONResponse:
        checks = await runtime.readiness()
        ready = all(value == "ok" for value in checks.values())
        return ORJSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    return app
