"""deploy/k8s: both overlays render, every resource matches its schema, and the
manifests agree with the code (topic registry, gateway routes, metrics)."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
from prometheus_client import REGISTRY

from stocksync_common.topics import ALL_TOPICS
from stocksync_embedded.gateway import ROUTES
from stocksync_embedded.stack import SERVICES

from tests.deploy.conftest import Resource, named, of_kind

KUBERNETES_VERSION = kubernetes_validate.latest_version()
SCHEMAS = Path(__file__).parent / "schemas"
# Custom resources, and where their schema comes from (tests/deploy/schemas/README.md).
CUSTOM_SCHEMAS = {
    ("monitoring.coreos.com/v1", "PrometheusRule"): SCHEMAS / "prometheusrule.schema.json",
    ("monitoring.coreos.com/v1", "PodMonitor"): SCHEMAS / "podmonitor.schema.json",
}
NO_PUBLISHED_SCHEMA = {
    ("kafka.strimzi.io/v1beta2", "KafkaTopic"): "Strimzi publishes its CRD schemas in no PyPI or npm package",
    ("postgresql.cnpg.io/v1", "Cluster"): "CloudNativePG publishes its CRD schemas in no PyPI or npm package",
}
SERVICE_NAMES = [name for name, _ in SERVICES]


def builtin(resource: Resource) -> bool:
    key = (resource["apiVersion"], resource["kind"])
    return key not in CUSTOM_SCHEMAS and key not in NO_PUBLISHED_SCHEMA


def test_each_overlay_renders_the_four_services_with_their_companions(overlay: tuple[str, list[Resource]]) -> None:
    _, resources = overlay
    for kind in ("Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"):
        # The console is stateless and light: two replicas, no autoscaler.
        expected = SERVICE_NAMES if kind == "HorizontalPodAutoscaler" else [*SERVICE_NAMES, "console"]
        assert sorted(r["metadata"]["name"] for r in of_kind(resources, kind)) == sorted(expected), kind
    assert [r["metadata"]["name"] for r in of_kind(resources, "Job")] == ["stocksync-migrate"]
    assert len(of_kind(resources, "Ingress")) == 1
    assert len(of_kind(resources, "PrometheusRule")) == 1
    assert {r["metadata"]["name"] for r in of_kind(resources, "NetworkPolicy")} >= {"stocksync-default-deny"}


def test_prod_runs_postgresql_as_a_cloudnativepg_cluster_whose_secret_the_services_read(
    prod: list[Resource],
) -> None:
    cluster = named(prod, "Cluster", "stocksync-db")
    assert cluster["spec"]["instances"] >= 3
    # CloudNativePG names the application secret <cluster>-app and puts the URI in `uri`.
    deployment = named(prod, "Deployment", "stock-ledger")
    sources = deployment["spec"]["template"]["spec"]["volumes"][0]["projected"]["sources"]
    assert {"name": "stocksync-db-app", "items": [{"key": "uri", "path": "database_url"}]} in [
        source["secret"] for source in sources
    ]


def test_every_builtin_resource_is_valid_for_kubernetes(overlay: tuple[str, list[Resource]]) -> None:
    _, resources = overlay
    errors = []
    for resource in filter(builtin, resources):
        try:
            kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            errors.append(f"{resource['kind']}/{resource['metadata']['name']}: {error.message} at {list(error.path)}")
    assert errors == []


def test_the_kubernetes_validation_rejects_an_unknown_field(prod: list[Resource]) -> None:
    broken = copy.deepcopy(named(prod, "Deployment", "stock-ledger"))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProb"] = {"httpGet": {"path": "/readyz"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("key", sorted(CUSTOM_SCHEMAS), ids=lambda key: key[1])
def test_prometheus_operator_resources_match_their_published_schema(
    overlay: tuple[str, list[Resource]], key: tuple[str, str]
) -> None:
    _, resources = overlay
    validator = jsonschema.Draft202012Validator(json.loads(CUSTOM_SCHEMAS[key].read_text()))
    found = [r for r in resources if (r["apiVersion"], r["kind"]) == key]
    assert found
    for resource in found:
        assert [e.message for e in validator.iter_errors(resource)] == []
    broken = copy.deepcopy(found[0])
    broken["spec"]["unknownField"] = True
    assert not validator.is_valid(broken)


@pytest.mark.parametrize("key", sorted(NO_PUBLISHED_SCHEMA), ids=lambda key: key[1])
def test_custom_resources_without_a_published_schema_are_skipped_explicitly(
    overlay: tuple[str, list[Resource]], key: tuple[str, str]
) -> None:
    name, resources = overlay
    if not any((r["apiVersion"], r["kind"]) == key for r in resources):
        pytest.skip(f"{key[1]}: not in the {name} overlay")
    pytest.skip(f"{key[1]} ({key[0]}) not schema-checked: {NO_PUBLISHED_SCHEMA[key]}")


def test_every_unknown_kind_is_either_schema_checked_or_listed_as_unpublished(
    overlay: tuple[str, list[Resource]],
) -> None:
    _, resources = overlay
    unknown = set()
    for resource in filter(builtin, resources):
        try:
            kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            unknown.add((resource["apiVersion"], resource["kind"]))
    assert unknown == set(), "a custom resource with no schema check and no stated reason"


def test_kafka_topics_are_the_registry_topics_with_their_partitions_and_compaction(
    overlay: tuple[str, list[Resource]],
) -> None:
    name, resources = overlay
    topics = {t["spec"]["topicName"]: t["spec"] for t in of_kind(resources, "KafkaTopic")}
    assert set(topics) == {topic.name for topic in ALL_TOPICS}
    for topic in ALL_TOPICS:
        spec = topics[topic.name]
        assert spec["partitions"] == topic.partitions, topic.name
        policy = spec["config"]["cleanup.policy"]
        assert policy == ("compact" if topic.compacted else "delete"), topic.name
        assert spec["replicas"] == (1 if name == "dev" else 3)
        assert spec["config"]["min.insync.replicas"] < spec["replicas"] or spec["replicas"] == 1


def test_the_ingress_routes_every_public_path_as_the_embedded_gateway_does(prod: list[Resource]) -> None:
    ingress = named(prod, "Ingress", "stocksync")
    routed = {
        path["path"]: path["backend"]["service"]["name"]
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
    }
    for prefix, service in ROUTES:
        assert routed.get(prefix.rstrip("/")) == service, prefix
    assert routed["/v1/oversells"] == "stock-ledger"
    assert routed["/v1/deliveries"] == "order-ingest"
    assert routed["/v1/rules"] == "rule-engine"
    assert set(routed.values()) <= {*SERVICE_NAMES, "console"}


def test_every_deployment_is_probed_bounded_and_runs_non_root_on_a_read_only_root(
    overlay: tuple[str, list[Resource]],
) -> None:
    _, resources = overlay
    for deployment in of_kind(resources, "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert {"cpu", "memory"} <= set(container["resources"]["requests"])
        assert {"cpu", "memory"} <= set(container["resources"]["limits"])
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        # Room for the HTTP drain and the consumers' last batch (GRACEFUL_SHUTDOWN_TIMEOUT_S 20).
        assert pod["terminationGracePeriodSeconds"] >= 45


def test_the_services_listen_on_every_interface_in_the_cluster(overlay: tuple[str, list[Resource]]) -> None:
    _, resources = overlay
    (config,) = [c for c in of_kind(resources, "ConfigMap") if c["metadata"]["name"].startswith("stocksync-config")]
    assert config["data"]["HTTP_HOST"] == "0.0.0.0"
    assert config["data"]["ENVIRONMENT"] == ("development" if overlay[0] == "dev" else "production")


def registered_metric_names() -> set[str]:
    # Importing the apps registers every service's metrics in the default registry.
    import stocksync_common.outbox
    import stocksync_common.runtime  # noqa: F401

    import channel_publisher.entrypoints.app  # noqa: F401
    import order_ingest.entrypoints.app  # noqa: F401
    import rule_engine.entrypoints.app  # noqa: F401
    import stock_ledger.entrypoints.app  # noqa: F401

    return {name for name in REGISTRY._names_to_collectors if name.startswith("stocksync_")}


def test_every_alert_uses_a_metric_that_a_service_exports(prod: list[Resource]) -> None:
    rules = named(prod, "PrometheusRule", "stocksync")
    exported = registered_metric_names()
    alerts = [rule for group in rules["spec"]["groups"] for rule in group["rules"]]
    assert {"StocksyncConsumerLagHigh", "StocksyncOutboxBacklog", "StocksyncPushErrorRate", "StocksyncOversell"} <= {
        alert["alert"] for alert in alerts
    }
    for alert in alerts:
        used = set(re.findall(r"stocksync_[a-z_]+", alert["expr"]))
        assert used and used <= exported, alert["alert"]
