"""The rule-engine process: rules API; stock, catalogue and connections consumers; scheduler; relay."""

from __future__ import annotations

from fastapi import FastAPI

from stocksync_common.contracts import (
    ConnectionChanged,
    ConnectionDelayMeasured,
    ProductAttributesChanged,
    StockChanged,
)
from stocksync_common.kafka import ConsumedEvent
from stocksync_common.runtime import Runtime, create_service_app
from stocksync_common.topics import CATALOGUE, CONNECTION_DELAYS, CONNECTIONS, STOCK_CHANGED

from rule_engine.adapters.tables import dead_letters, outbox
from rule_engine.config import RuleEngineSettings
from rule_engine.entrypoints.api import router
from rule_engine.service_layer.adaptive import adaptive_refresher, apply_connection_delays
from rule_engine.service_layer.evaluation import (
    apply_connection_changes,
    apply_product_attributes,
    configured_estimation,
)
from rule_engine.service_layer.schedule import rule_scheduler
from rule_engine.service_layer.stock_changes import RuleSets, apply_stock_changes


def create_app(settings: RuleEngineSettings | None = None) -> FastAPI:
    settings = settings or RuleEngineSettings()
    runtime = Runtime("rule-engine", settings, outbox, dead_letters)
    # Checked against the database on every batch (see stock_changes): safe with several instances.
    rule_sets = RuleSets()

    async def on_events(batch: list[ConsumedEvent]) -> None:
        # Connections and attributes first: a stock change in the same batch then sees them.
        connections = [i.event for i in batch if isinstance(i.event, ConnectionChanged)]
        attributes = [i.event for i in batch if isinstance(i.event, ProductAttributesChanged)]
        stock_changes = [i.event for i in batch if isinstance(i.event, StockChanged)]
        delays = [i.event for i in batch if isinstance(i.event, ConnectionDelayMeasured)]
        emitted = 0
        if connections:
            emitted += await apply_connection_changes(runtime.engine, connections)
        if attributes:
            emitted += await apply_product_attributes(runtime.engine, attributes)
        if stock_changes:
            emitted += await apply_stock_changes(runtime.engine, stock_changes, rule_sets, configured_estimation())
        if delays:
            emitted += await apply_connection_delays(runtime.engine, delays)
        if emitted:
            runtime.wake_relay()

    runtime.add_consumer([CONNECTIONS, CATALOGUE, STOCK_CHANGED, CONNECTION_DELAYS], "rule-engine", on_events)
    runtime.add_worker(rule_scheduler(runtime.engine, settings.rule_schedule_interval_s, runtime.wake_relay))
    runtime.add_worker(adaptive_refresher(runtime.engine, settings.adaptive_refresh_interval_s, runtime.wake_relay))
    app = create_service_app(
        title="Stocksync rule-engine",
        description="Per-channel rules (buffer stock and the rest) that turn available stock into channel quantities.",
        runtime=runtime,
    )
    app.include_router(router)
    return app
