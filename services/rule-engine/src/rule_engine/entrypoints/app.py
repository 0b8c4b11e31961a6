"""The rule-engine process: rules API, stock.changed.v1 and connections.v1 consumers, relay."""

from __future__ import annotations

from fastapi import FastAPI

from stocksync_common.contracts import ConnectionChanged, StockChanged
from stocksync_common.kafka import ConsumedEvent
from stocksync_common.runtime import Runtime, create_service_app
from stocksync_common.topics import CONNECTIONS, STOCK_CHANGED

from rule_engine.adapters.tables import outbox
from rule_engine.config import RuleEngineSettings
from rule_engine.entrypoints.api import router
from rule_engine.service_layer.evaluation import apply_connection_changes, apply_stock_changes


def create_app(settings: RuleEngineSettings | None = None) -> FastAPI:
    settings = settings or RuleEngineSettings()
    runtime = Runtime("rule-engine", settings, outbox)

    async def on_events(batch: list[ConsumedEvent]) -> None:
        # Connections first: a stock change in the same batch then sees the new channel.
        connections = [i.event for i in batch if isinstance(i.event, ConnectionChanged)]
        stock_changes = [i.event for i in batch if isinstance(i.event, StockChanged)]
        emitted = 0
        if connections:
            emitted += await apply_connection_changes(runtime.engine, connections)
        if stock_changes:
            emitted += await apply_stock_changes(runtime.engine, stock_changes)
        if emitted:
            runtime.wake_relay()

    runtime.add_consumer([CONNECTIONS, STOCK_CHANGED], "rule-engine", on_events)
    app = create_service_app(
        title="Stocksync rule-engine",
        description="Per-channel rules (buffer stock and the rest) that turn available stock into channel quantities.",
        runtime=runtime,
    )
    app.include_router(router)
    return app
