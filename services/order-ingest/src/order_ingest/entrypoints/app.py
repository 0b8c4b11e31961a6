"""The order-ingest process: webhooks, the delivery audit, the Mirakl poller, the
connections.v1 consumer, the outbox relay and the retention sweep."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from stocksync_common.channel_hosts import channel_http_client
from stocksync_common.contracts import ConnectionChanged
from stocksync_common.message_bus import HandlerTable, batch_handler
from stocksync_common.runtime import Runtime, create_service_app
from stocksync_common.topics import CONNECTIONS

from order_ingest.adapters.channels.ebay import EbayPublicKeys
from order_ingest.adapters.channels.registry import webhook_channels
from order_ingest.adapters.delivery_store import ConnectionDirectory
from order_ingest.adapters.tables import dead_letters, inbox, outbox
from order_ingest.config import IngestSettings
from order_ingest.entrypoints import deliveries, webhooks
from order_ingest.entrypoints.workers import mirakl_poller, retention_sweep
from order_ingest.service_layer.deliveries import DeliveryGroups, apply_connection_changes
from order_ingest.service_layer.webhooks import ConnectionRateLimits, WebhookIntake

CONSUMER_GROUP = "order-ingest"
# What CONSUMER_GROUP applies: the connections projection, which webhooks are verified against.
HANDLERS: HandlerTable[ConnectionDirectory] = {ConnectionChanged: apply_connection_changes}


def create_app(settings: IngestSettings | None = None) -> FastAPI:
    settings = settings or IngestSettings()
    runtime = Runtime("order-ingest", settings, inbox=inbox, outbox=outbox, dead_letters=dead_letters)
    # One client for the calls order-ingest makes to channels (OR11, eBay public keys).
    http = channel_http_client(settings.private_channel_hosts_allowed, httpx.Timeout(20.0, connect=5.0))

    directory = ConnectionDirectory(runtime.engine)
    runtime.add_consumer([CONNECTIONS], CONSUMER_GROUP, batch_handler(HANDLERS, lambda: directory))
    runtime.add_worker(mirakl_poller(runtime.units, settings, http))
    runtime.add_worker(retention_sweep(runtime.engine, settings))
    app = create_service_app(
        title="Stocksync order-ingest",
        description="Order webhooks from every channel (and Mirakl polling), verified, deduplicated and "
        "normalised to orders.v1 events; the merchant's audit of every delivery.",
        runtime=runtime,
    )
    app.state.webhook_intake = WebhookIntake(
        channels=webhook_channels(EbayPublicKeys(http)),
        directory=directory,
        rate_limits=ConnectionRateLimits(settings.webhook_rate_limit, settings.webhook_rate_period_s),
        groups=DeliveryGroups(
            runtime.units, max_group=settings.webhook_max_group, max_in_flight=settings.webhook_max_in_flight
        ),
        max_body_bytes=settings.webhook_max_body_bytes,
    )
    app.include_router(webhooks.router)
    app.include_router(deliveries.router)
    app.router.on_shutdown.append(http.aclose)
    return app
