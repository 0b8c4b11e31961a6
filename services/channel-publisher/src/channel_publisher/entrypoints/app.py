"""The channel-publisher process: connections API, channel.quantity.v1 consumer, push worker."""

from __future__ import annotations

from fastapi import FastAPI

from stocksync_common.contracts import ChannelQuantityChanged
from stocksync_common.message_bus import HandlerTable, batch_handler
from stocksync_common.runtime import BackgroundWorker, Runtime, create_service_app
from stocksync_common.topics import CHANNEL_QUANTITY

from channel_publisher.adapters.push_store import PushStore
from channel_publisher.adapters.tables import dead_letters, inbox, outbox
from channel_publisher.config import PublisherSettings
from channel_publisher.entrypoints.api import router
from channel_publisher.service_layer.connection_adapters import ConnectionAdapters
from channel_publisher.service_layer.connections import announce_all_connections
from channel_publisher.service_layer.display_delays import display_delay_worker
from channel_publisher.service_layer.drainer import Drainer, PushIntake, queue_channel_quantities
from channel_publisher.service_layer.drift import drift_checker

CONSUMER_GROUP = "channel-publisher"
# What CONSUMER_GROUP applies: the quantities to push, queued and coalesced per key.
HANDLERS: HandlerTable[PushIntake] = {ChannelQuantityChanged: queue_channel_quantities}


def create_app(settings: PublisherSettings | None = None) -> FastAPI:
    settings = settings or PublisherSettings()
    runtime = Runtime("channel-publisher", settings, inbox=inbox, outbox=outbox, dead_letters=dead_letters)
    store = PushStore(runtime.engine)
    adapters = ConnectionAdapters(runtime.engine, settings)
    drainer = Drainer(store, adapters, settings)

    async def push_worker() -> None:
        try:
            await drainer.run()
        finally:
            # After the drains' in-flight calls: the channels' client closes last.
            await adapters.aclose()

    async def on_startup() -> None:
        await announce_all_connections(runtime.units)

    intake = PushIntake(store, drainer)
    runtime.add_consumer([CHANNEL_QUANTITY], CONSUMER_GROUP, batch_handler(HANDLERS, lambda: intake))
    runtime.add_worker(BackgroundWorker("push-worker", push_worker, drainer.request_stop))
    runtime.add_worker(drift_checker(runtime.engine, settings, adapters))
    runtime.add_worker(display_delay_worker(runtime.units, settings, adapters))
    app = create_service_app(
        title="Stocksync channel-publisher",
        description="Channel connections, coalesced and rate-limited pushes, and the push history.",
        runtime=runtime,
        on_startup=on_startup,
    )
    app.state.drainer = drainer
    app.state.adapters = adapters
    app.include_router(router)
    return app
