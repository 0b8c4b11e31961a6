"""The Grafana dashboard (deploy/k8s/base/dashboards/stocksync.json): it loads, shows what
an operator watches, and asks only for metrics the services export."""

from __future__ import annotations

import json
import re
from typing import Any

from tests.deploy.conftest import REPO, named, render
from tests.deploy.test_kubernetes import registered_metric_names

DASHBOARD = REPO / "deploy" / "k8s" / "base" / "dashboards" / "stocksync.json"


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def expressions() -> list[str]:
    return [target["expr"] for panel in dashboard()["panels"] for target in panel["targets"]]


def test_the_dashboard_loads_with_unique_panels_on_a_prometheus_datasource_variable() -> None:
    board = dashboard()
    assert board["uid"] and board["title"] == "Stocksync"
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    assert {v["name"]: v["type"] for v in board["templating"]["list"]}["datasource"] == "datasource"
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}"
        assert panel["targets"], panel["title"]
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"])
        assert [t["refId"] for t in panel["targets"]] == sorted({t["refId"] for t in panel["targets"]})


def test_the_dashboard_shows_the_flow_an_operator_watches() -> None:
    used = " ".join(expressions())
    for metric in (
        "stocksync_sync_window_seconds_bucket",  # sync window per channel
        "stocksync_webhooks_total",  # throughput per hop ...
        "stocksync_events_consumed_total",
        "stocksync_outbox_relayed_total",
        "stocksync_pushes_total",
        "stocksync_consumer_lag",
        "stocksync_outbox_backlog",
        "stocksync_push_retries_total",
        "stocksync_oversells_total",
    ):
        assert metric in used, metric
    sync = [p for p in dashboard()["panels"] if p["title"].startswith("Sync window")]
    assert "by (channel_type, le)" in sync[0]["targets"][0]["expr"]


def test_the_dashboard_asks_only_for_exported_metrics() -> None:
    exported = registered_metric_names()
    for expr in expressions():
        for metric in re.findall(r"\bstocksync_[a-z_]+", expr):
            family = re.sub(r"_bucket$", "", metric)
            assert family in exported, metric


def test_the_dashboard_ships_as_a_configmap_for_the_grafana_sidecar() -> None:
    config_map = named(render("prod"), "ConfigMap", "stocksync-grafana-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"]["stocksync.json"]) == dashboard()
