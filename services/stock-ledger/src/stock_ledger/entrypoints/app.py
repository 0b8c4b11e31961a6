"""The stock-ledger process: REST API plus the orders.v1 and connections.v1 consumer and the outbox relay."""

from __future__ import annotations

import os

from fastapi import FastAPI

from stocksync_common.auth import ApiKeyVerifier
from stocksync_common.contracts import ConnectionChanged, DeadLetterRecorded, OrderLineMoved
from stocksync_common.kafka import ConsumedEvent
from stocksync_common.logging import causation
from stocksync_common.runtime import Runtime, create_service_app
from stocksync_common.topics import CONNECTIONS, DEAD_LETTER_TOPICS, ORDERS

from stock_ledger.adapters.api_key_store import ApiKeyStore
from stock_ledger.adapters.tables import dead_letters, outbox
from stock_ledger.adapters.unit_of_work import unit_of_work_factory
from stock_ledger.config import LedgerSettings
from stock_ledger.entrypoints import api_keys, bundles, imports, locations
from stock_ledger.entrypoints import dead_letters as dead_letters_api
from stock_ledger.entrypoints.api import router
from stock_ledger.service_layer.connection_locations import apply_connection_changes
from stock_ledger.service_layer.dead_letters import collect_dead_letters
from stock_ledger.service_layer.import_jobs import ImportWorker
from stock_ledger.service_layer.order_lines import apply_order_lines

# The consumer group every instance joins: partitions of orders.v1 (and connections.v1,
# for where each connection's orders reserve) are shared among them.
CONSUMER_GROUP = "stock-ledger"
# The stock-ledger keeps every service's dead letters (from `<topic>.dlq`) for the API.
DEAD_LETTER_GROUP = "stock-ledger-dead-letters"


def create_app(settings: LedgerSettings | None = None) -> FastAPI:
    settings = settings or LedgerSettings()
    runtime = Runtime("stock-ledger", settings, outbox, dead_letters)

    units = unit_of_work_factory(runtime.engine, runtime.wake_relay)

    async def on_order_lines(batch: list[ConsumedEvent]) -> None:
        # A connection's locations first: its orders in the same batch reserve where it says.
        await apply_connection_changes(
            [item.event for item in batch if isinstance(item.event, ConnectionChanged)], units()
        )
        events = [item.event for item in batch if isinstance(item.event, OrderLineMoved)]
        if not events:
            return
        with causation(events[0].causation_id if len(events) == 1 else None):
            await apply_order_lines(events, units())
        if settings.fault_exit_after_db_commit and events:
            os._exit(70)  # the database has committed; the offsets have not

    async def on_dead_letters(batch: list[ConsumedEvent]) -> None:
        await collect_dead_letters(
            runtime.engine, [item.event for item in batch if isinstance(item.event, DeadLetterRecorded)]
        )

    runtime.add_consumer([ORDERS, CONNECTIONS], CONSUMER_GROUP, on_order_lines)
    # Not dead-lettered itself: a dead letter of a dead letter would loop.
    runtime.add_consumer(DEAD_LETTER_TOPICS, DEAD_LETTER_GROUP, on_dead_letters, dead_letter=False)
    import_worker = ImportWorker(
        runtime.engine, chunk_size=settings.snapshot_chunk_rows, after_chunk=runtime.wake_relay
    )
    runtime.add_worker(import_worker)
    app = create_service_app(
        title="Stocksync stock-ledger",
        description="Stock per SKU: on_hand, reserved, available, the append-only ledger, imports, oversells.",
        runtime=runtime,
    )
    # Before `router`: its GET /v1/stock/{sku} would take GET /v1/stock/imports.
    app.include_router(imports.router)
    app.include_router(router)
    app.include_router(bundles.router)
    app.include_router(locations.router)
    app.include_router(dead_letters_api.router)
    app.include_router(api_keys.router)
    app.include_router(api_keys.internal)
    # The stock-ledger owns the keys: it verifies them from its own table (with the same
    # short cache as the other services, cleared here when a key is revoked).
    store = ApiKeyStore(runtime.engine, settings.api_key_secret.get_secret_value(), settings.legacy_api_keys_until)
    app.state.api_key_store = store
    app.state.api_keys = ApiKeyVerifier(
        store.verify, ttl_s=settings.api_key_cache_ttl_s, negative_ttl_s=settings.api_key_negative_cache_ttl_s
    )
    app.state.import_worker = import_worker
    return app
