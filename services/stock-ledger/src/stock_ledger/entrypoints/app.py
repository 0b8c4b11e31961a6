"""The stock-ledger process: REST API plus the orders.v1 and connections.v1 consumer and the outbox relay."""

from __future__ import annotations

import os
from collections.abc import Sequence

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from stocksync_common.auth import ApiKeyVerifier
from stocksync_common.contracts import ConnectionChanged, DeadLetterRecorded, OrderLineMoved
from stocksync_common.message_bus import HandlerTable, batch_handler
from stocksync_common.runtime import Runtime, create_service_app
from stocksync_common.topics import CONNECTIONS, DEAD_LETTER_TOPICS, ORDERS
from stocksync_common.uow import UnitOfWork

from stock_ledger.adapters.api_key_store import ApiKeyStore
from stock_ledger.adapters.tables import dead_letters, inbox, outbox
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

# What CONSUMER_GROUP applies, each with a unit of work of its own, in this order: a
# connection's locations first, so that its orders in the same batch reserve where it says.
ORDER_HANDLERS: HandlerTable[UnitOfWork] = {
    ConnectionChanged: apply_connection_changes,
    OrderLineMoved: apply_order_lines,
}
# What DEAD_LETTER_GROUP applies: a dead letter changes no stock, it is kept in a plain transaction.
DEAD_LETTER_HANDLERS: HandlerTable[AsyncEngine] = {DeadLetterRecorded: collect_dead_letters}


async def _apply_order_lines_then_exit(events: Sequence[OrderLineMoved], uow: UnitOfWork) -> None:
    """FAULT_EXIT_AFTER_DB_COMMIT (tests only): the database has committed; the offsets have not."""
    await apply_order_lines(events, uow)
    os._exit(70)


def create_app(settings: LedgerSettings | None = None) -> FastAPI:
    settings = settings or LedgerSettings()
    runtime = Runtime("stock-ledger", settings, inbox=inbox, outbox=outbox, dead_letters=dead_letters)

    order_handlers = ORDER_HANDLERS
    if settings.fault_exit_after_db_commit:
        order_handlers = {**ORDER_HANDLERS, OrderLineMoved: _apply_order_lines_then_exit}
    runtime.add_consumer([ORDERS, CONNECTIONS], CONSUMER_GROUP, batch_handler(order_handlers, runtime.units))
    # Not dead-lettered itself: a dead letter of a dead letter would loop.
    runtime.add_consumer(
        DEAD_LETTER_TOPICS,
        DEAD_LETTER_GROUP,
        batch_handler(DEAD_LETTER_HANDLERS, lambda: runtime.engine),
        dead_letter=False,
    )
    import_worker = ImportWorker(runtime.units, chunk_size=settings.snapshot_chunk_rows)
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
