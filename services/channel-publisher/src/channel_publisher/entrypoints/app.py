"""The channel-publisher process: connections API, channel.quantity.v1 consumer, push worker."""

from __future__ import annotations

from fastapi import FastAPI

from stocksync_common.contracts import ChannelQuantityChanged
from stocksync_common.kafka import ConsumedEvent
from stocksync_common.runtime import BackgroundWorker, Runtime, create_service_app
from stocksync_common.topics import CHANNEL_QUANTITY

from channel_publisher.adapters.tables import dead_letters, outbox
from channel_publisher.config import PublisherSettings
from channel_publisher.entrypoints.api import router
from channel_publisher.service_layer.connections import announce_all_connections
from channel_publisher.service_layer.display_delays import display_delay_worker
from channel_publisher.service_layer.drift import drift_checker
from channel_publisher.service_layer.publishing import Publisher
from channel_publisher.service_layer.queue import enqueue_channel_quantities


def create_app(settings: PublisherSettings | None = None) -> FastAPI:
    settings = settings or PublisherSettings()
    runtime = Runtime("channel-publisher", settings, outbox, dead_letters)
    publisher = Publisher(runtime.engine, settings)

    async def on_channel_quantities(batch: list[ConsumedEvent]) -> None:
        changes = [i.event for i in batch if isinstance(i.event, ChannelQuantityChanged)]
        # The connections with new work start draining now, without waiting for a scan.
        publisher.drain_now(await enqueue_channel_quantities(runtime.engine, changes))

    async def on_startup() -> None:
        if await announce_all_connections(runtime.engine):
            runtime.wake_relay()

    runtime.add_consumer([CHANNEL_QUANTITY], "channel-publisher", on_channel_quantities)
    runtime.add_worker(BackgroundWorker("push-worker", publisher.run, publisher.request_stop))
    runtime.add_worker(drift_checker(publisher))
    runtime.add_worker(display_delay_worker(publisher, runtime.wake_relay))
    app = create_service_app(
        title="Stocksync channel-publisher",
        description="Channel connections, coalesced and rate-limited pushes, and the push history.",
        runtime=runtime,
        on_startup=on_startup,
    )
    app.state.publisher = publisher
    app.include_router(router)
    return app
