"""The order-ingest process: webhooks, the connections.v1 consumer, the outbox relay."""

from __future__ import annotations

from fastapi import FastAPI

from stocksync_common.contracts import ConnectionChanged
from stocksync_common.kafka import ConsumedEvent
from stocksync_common.runtime import Runtime, create_service_app
from stocksync_common.topics import CONNECTIONS

from order_ingest.adapters.tables import outbox
from order_ingest.config import IngestSettings
from order_ingest.entrypoints.webhooks import router
from order_ingest.service_layer.ingest import apply_connection_changes


def create_app(settings: IngestSettings | None = None) -> FastAPI:
    settings = settings or IngestSettings()
    runtime = Runtime("order-ingest", settings, outbox)

    async def on_connections(batch: list[ConsumedEvent]) -> None:
        await apply_connection_changes(
            runtime.engine, [item.event for item in batch if isinstance(item.event, ConnectionChanged)]
        )

    runtime.add_consumer([CONNECTIONS], "order-ingest", on_connections)
    app = create_service_app(
        title="Stocksync order-ingest",
        description="Order webhooks from every channel, verified and normalised to orders.v1 events.",
        runtime=runtime,
    )
    app.include_router(router)
    return app
