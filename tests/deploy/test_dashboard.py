"""The Grafana dashboard (deploy/k8s/base/dashboards/stocksync.json): it loads, shows what
an operator watches, and asks only for metrics the services export."""

from __future__ import annotations

import json
import re
from typing import Any

from tests.deploy.conftest import REPO, named, render
from tests.deploy.test_kubernetes import alert_rules, promql_metrics, registered_metric_names

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


def test_every_panel_query_is_valid_promql() -> None:
    for expr in expressions():
        # Grafana fills in the namespace variable before Prometheus sees the query.
        assert promql_metrics(expr.replace("$namespace", ".*")), expr


def test_every_metric_an_alert_watches_has_a_panel() -> None:
    shown = set().union(*(promql_metrics(expr) for expr in expressions()))
    watched = set().union(*(promql_metrics(alert["expr"]) for alert in alert_rules(render("prod"))))
    # A histogram's panel reads its _bucket series; an alert may read _count or _sum.
    shown |= {re.sub(r"_bucket$", suffix, m) for m in shown for suffix in ("_count", "_sum", "_bucket")}
    assert watched <= shown, watched - shown
    panels = " ".join(panel["title"] for panel in dashboard()["panels"])
    assert "Dead-lettered" in panels and "Scrape targets" in panels


def test_the_dashboard_ships_as_a_configmap_for_the_grafana_sidecar() -> None:
    config_map = named(render("prod"), "ConfigMap", "stocksync-grafana-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"]["stocksync.json"]) == dashboard()
