"""The rule-engine process: rules API; stock, catalogue and connections consumers; scheduler; relay."""

from __future__ import annotations

from fastapi import FastAPI

from stocksync_common.contracts import (
    ConnectionChanged,
    ConnectionDelayMeasured,
    ProductAttributesChanged,
    StockChanged,
)
from stocksync_common.message_bus import HandlerTable, batch_handler
from stocksync_common.runtime import Runtime, create_service_app
from stocksync_common.topics import CATALOGUE, CONNECTION_DELAYS, CONNECTIONS, STOCK_CHANGED

from rule_engine.adapters.tables import dead_letters, inbox, outbox
from rule_engine.config import RuleEngineSettings
from rule_engine.entrypoints.api import router
from rule_engine.service_layer.adaptive import adaptive_refresher, apply_connection_delays
from rule_engine.service_layer.context import ConsumerContext
from rule_engine.service_layer.evaluation import (
    apply_connection_changes,
    apply_product_attributes,
    configured_estimation,
)
from rule_engine.service_layer.schedule import rule_scheduler
from rule_engine.service_layer.stock_changes import apply_stock_changes

CONSUMER_GROUP = "rule-engine"
# What CONSUMER_GROUP applies, each in a transaction of its own, in this order: connections
# and attributes first, so that a stock change in the same batch sees them.
HANDLERS: HandlerTable[ConsumerContext] = {
    ConnectionChanged: apply_connection_changes,
    ProductAttributesChanged: apply_product_attributes,
    StockChanged: apply_stock_changes,
    ConnectionDelayMeasured: apply_connection_delays,
}


def create_app(settings: RuleEngineSettings | None = None) -> FastAPI:
    settings = settings or RuleEngineSettings()
    runtime = Runtime("rule-engine", settings, inbox=inbox, outbox=outbox, dead_letters=dead_letters)
    # Its rules cache is checked against the database on every batch (see stock_changes):
    # safe with several instances.
    context = ConsumerContext(runtime.units, estimation=configured_estimation())
    runtime.add_consumer(
        [CONNECTIONS, CATALOGUE, STOCK_CHANGED, CONNECTION_DELAYS],
        CONSUMER_GROUP,
        batch_handler(HANDLERS, lambda: context),
    )
    runtime.add_worker(rule_scheduler(runtime.units, settings.rule_schedule_interval_s))
    runtime.add_worker(adaptive_refresher(runtime.units, settings.adaptive_refresh_interval_s))
    app = create_service_app(
        title="Stocksync rule-engine",
        description="Per-channel rules (buffer stock and the rest) that turn available stock into channel quantities.",
        runtime=runtime,
    )
    app.include_router(router)
    return app
