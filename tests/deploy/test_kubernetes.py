"""deploy/k8s: both overlays render, every resource matches its schema, and the
manifests agree with the code (topic registry, gateway routes, metrics)."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import promql_parser
import pytest
import yaml
from prometheus_client import REGISTRY

from stocksync_common.topics import ALL_TOPICS
from stocksync_embedded.gateway import ROUTES
from stocksync_embedded.stack import SERVICES

from tests.deploy.conftest import REPO, Resource, named, of_kind

# The oldest Kubernetes the manifests support (docs/operations.md, "Kubernetes"): the
# oldest release that CloudNativePG 1.30 supports (Strimzi 1.2 needs 1.30+). Every
# built-in resource is checked against it and against the newest release known.
MINIMUM_KUBERNETES = "1.34"
KUBERNETES_VERSIONS = sorted({MINIMUM_KUBERNETES, kubernetes_validate.latest_version()})
SCHEMAS = Path(__file__).parent / "schemas"
# Custom resources, and their schema converted from the operator's published CRD
# (tests/deploy/schemas/README.md: repository, file and release of each).
CUSTOM_SCHEMAS = {
    ("monitoring.coreos.com/v1", "PrometheusRule"): SCHEMAS / "prometheusrule.schema.json",
    ("monitoring.coreos.com/v1", "PodMonitor"): SCHEMAS / "podmonitor.schema.json",
    ("kafka.strimzi.io/v1", "Kafka"): SCHEMAS / "kafka.schema.json",
    ("kafka.strimzi.io/v1", "KafkaNodePool"): SCHEMAS / "kafkanodepool.schema.json",
    ("kafka.strimzi.io/v1", "KafkaTopic"): SCHEMAS / "kafkatopic.schema.json",
    ("postgresql.cnpg.io/v1", "Cluster"): SCHEMAS / "cluster.schema.json",
    ("postgresql.cnpg.io/v1", "ScheduledBackup"): SCHEMAS / "scheduledbackup.schema.json",
    ("barmancloud.cnpg.io/v1", "ObjectStore"): SCHEMAS / "objectstore.schema.json",
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): SCHEMAS / "httproute.schema.json",
}
SERVICE_NAMES = [name for name, _ in SERVICES]


def builtin(resource: Resource) -> bool:
    return (resource["apiVersion"], resource["kind"]) not in CUSTOM_SCHEMAS


def custom_validator(key: tuple[str, str]) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads(CUSTOM_SCHEMAS[key].read_text()))


def test_each_overlay_renders_the_four_services_with_their_companions(overlay: tuple[str, list[Resource]]) -> None:
    _, resources = overlay
    for kind in ("Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"):
        # The console is stateless and light: two replicas, no autoscaler.
        expected = SERVICE_NAMES if kind == "HorizontalPodAutoscaler" else [*SERVICE_NAMES, "console"]
        assert sorted(r["metadata"]["name"] for r in of_kind(resources, kind)) == sorted(expected), kind
    assert [r["metadata"]["name"] for r in of_kind(resources, "Job")] == ["stocksync-migrate"]
    assert of_kind(resources, "Ingress") == []
    assert len(of_kind(resources, "HTTPRoute")) == 1
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


def test_prod_archives_wal_and_backs_up_nightly_to_the_documented_object_store(prod: list[Resource]) -> None:
    cluster = named(prod, "Cluster", "stocksync-db")
    store = named(prod, "ObjectStore", "stocksync-backups")
    (archiver,) = [p for p in cluster["spec"]["plugins"] if p.get("isWALArchiver")]
    assert archiver["name"] == "barman-cloud.cloudnative-pg.io"
    assert archiver["parameters"]["barmanObjectName"] == store["metadata"]["name"]
    (scheduled,) = of_kind(prod, "ScheduledBackup")
    assert scheduled["spec"]["cluster"]["name"] == "stocksync-db"
    assert scheduled["spec"]["method"] == "plugin"
    assert scheduled["spec"]["pluginConfiguration"]["name"] == archiver["name"]
    assert len(scheduled["spec"]["schedule"].split()) == 6  # seconds first
    credentials = store["spec"]["configuration"]["s3Credentials"]
    assert {credentials[k]["name"] for k in ("accessKeyId", "secretAccessKey")} == {"stocksync-backup-s3"}
    operations = (REPO / "docs" / "operations.md").read_text()
    assert "stocksync-backup-s3" in operations
    assert "deploy/k8s/restore/cluster-from-backup.yaml" in operations


def test_the_restore_example_is_a_valid_point_in_time_recovery_from_the_archive(prod: list[Resource]) -> None:
    restore = yaml.safe_load((REPO / "deploy" / "k8s" / "restore" / "cluster-from-backup.yaml").read_text())
    assert [e.message for e in custom_validator(("postgresql.cnpg.io/v1", "Cluster")).iter_errors(restore)] == []
    recovery = restore["spec"]["bootstrap"]["recovery"]
    (source,) = restore["spec"]["externalClusters"]
    assert source["name"] == recovery["source"]
    assert source["plugin"]["parameters"] == {"barmanObjectName": "stocksync-backups", "serverName": "stocksync-db"}
    assert "targetTime" in recovery["recoveryTarget"]
    (archiver,) = restore["spec"]["plugins"]
    assert archiver["parameters"]["serverName"] != source["plugin"]["parameters"]["serverName"]


def test_dev_runs_a_strimzi_kafka_named_as_the_topics_expect_with_the_lag_exporter(
    overlay: tuple[str, list[Resource]],
) -> None:
    name, resources = overlay
    if name != "dev":
        assert of_kind(resources, "Kafka") == []  # production brings its own cluster
        return
    kafka = named(resources, "Kafka", "stocksync")
    (pool,) = of_kind(resources, "KafkaNodePool")
    assert pool["metadata"]["labels"]["strimzi.io/cluster"] == "stocksync"
    assert set(pool["spec"]["roles"]) == {"broker", "controller"}
    assert kafka["spec"]["kafkaExporter"]["groupRegex"] == ".*"
    assert kafka["spec"]["kafka"]["config"]["auto.create.topics.enable"] is False
    (config,) = [c for c in of_kind(resources, "ConfigMap") if c["metadata"]["name"].startswith("stocksync-config")]
    assert config["data"]["KAFKA_BOOTSTRAP_SERVERS"] == "stocksync-kafka-bootstrap:9092"
    for topic in of_kind(resources, "KafkaTopic"):
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == "stocksync"


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_builtin_resource_is_valid_for_the_minimum_and_newest_kubernetes(
    overlay: tuple[str, list[Resource]], version: str
) -> None:
    _, resources = overlay
    errors = []
    for resource in filter(builtin, resources):
        try:
            kubernetes_validate.validate(resource, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            errors.append(f"{resource['kind']}/{resource['metadata']['name']}: {error.message} at {list(error.path)}")
    assert errors == []


def test_the_kubernetes_validation_rejects_an_unknown_field(prod: list[Resource]) -> None:
    broken = copy.deepcopy(named(prod, "Deployment", "stock-ledger"))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProb"] = {"httpGet": {"path": "/readyz"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, MINIMUM_KUBERNETES, strict=True)


@pytest.mark.parametrize("key", sorted(CUSTOM_SCHEMAS), ids=lambda key: key[1])
def test_custom_resources_match_the_operators_published_schema(
    overlay: tuple[str, list[Resource]], key: tuple[str, str]
) -> None:
    name, resources = overlay
    found = [r for r in resources if (r["apiVersion"], r["kind"]) == key]
    if not found:
        pytest.skip(f"no {key[1]} in the {name} overlay")
    validator = custom_validator(key)
    for resource in found:
        assert [f"{e.message} at {list(e.path)}" for e in validator.iter_errors(resource)] == []
    broken = copy.deepcopy(found[0])
    broken["spec"]["unknownField"] = True
    assert not validator.is_valid(broken)


def test_every_vendored_schema_checks_a_resource_of_an_overlay() -> None:
    from tests.deploy.conftest import OVERLAYS, render

    kinds = {(r["apiVersion"], r["kind"]) for overlay in OVERLAYS for r in render(overlay)}
    assert {key for key in kinds if key in CUSTOM_SCHEMAS} == set(CUSTOM_SCHEMAS)


def test_the_strimzi_schema_refuses_the_retired_v1beta2_api(prod: list[Resource]) -> None:
    topic = copy.deepcopy(of_kind(prod, "KafkaTopic")[0])
    topic["apiVersion"] = "kafka.strimzi.io/v1beta2"
    assert not custom_validator(("kafka.strimzi.io/v1", "KafkaTopic")).is_valid(topic)


def test_every_unknown_kind_is_schema_checked(
    overlay: tuple[str, list[Resource]],
) -> None:
    _, resources = overlay
    unknown = set()
    for resource in filter(builtin, resources):
        try:
            kubernetes_validate.validate(resource, MINIMUM_KUBERNETES, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            unknown.add((resource["apiVersion"], resource["kind"]))
    assert unknown == set(), "a custom resource with no schema in tests/deploy/schemas"


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


def test_the_httproute_routes_every_public_path_as_the_embedded_gateway_does(prod: list[Resource]) -> None:
    route = named(prod, "HTTPRoute", "stocksync")
    routed = {}
    for rule in route["spec"]["rules"]:
        (backend,) = rule["backendRefs"]
        for match in rule["matches"]:
            assert match["path"]["type"] == "PathPrefix"
            routed[match["path"]["value"]] = backend["name"]
    for prefix, service in ROUTES:
        assert routed.get(prefix.rstrip("/")) == service, prefix
    assert routed["/v1/oversells"] == "stock-ledger"
    assert routed["/v1/deliveries"] == "order-ingest"
    assert routed["/v1/rules"] == "rule-engine"
    assert set(routed.values()) <= {*SERVICE_NAMES, "console"}
    assert route["spec"]["hostnames"] == ["stocksync.example.com"]
    assert route["spec"]["parentRefs"] == [{"name": "stocksync", "sectionName": "https"}]


def test_no_pod_serves_before_the_migrations_of_its_image_are_applied(overlay: tuple[str, list[Resource]]) -> None:
    _, resources = overlay
    migrate = named(resources, "Job", "stocksync-migrate")
    migrated = {tuple(c["command"][:3]) for c in migrate["spec"]["template"]["spec"]["containers"]}
    # The console has no schema of its own: it only calls the API.
    for deployment in (d for d in of_kind(resources, "Deployment") if d["metadata"]["name"] != "console"):
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        (wait,) = pod["initContainers"]
        package = container["command"][2]
        assert wait["command"][:4] == ["python", "-m", package, "wait-for-migrations"]
        assert ("python", "-m", package) in migrated
        assert wait["image"] == container["image"]
        assert wait["volumeMounts"] == container["volumeMounts"]
        assert wait["securityContext"]["readOnlyRootFilesystem"] is True


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


def promql_metrics(expr: str) -> set[str]:
    """The metric names an expression selects, read from its parse tree: a PromQL parser
    (promql-parser, Prometheus's grammar and function signatures) refuses what Prometheus
    would refuse, so an expression that passes here loads into Prometheus."""
    names: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector) and node.name is not None:
            names.add(node.name)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


def alert_rules(resources: list[Resource]) -> list[dict[str, Any]]:
    rules = named(resources, "PrometheusRule", "stocksync")
    return [rule for group in rules["spec"]["groups"] for rule in group["rules"]]


def test_every_alert_uses_a_metric_that_a_service_exports(prod: list[Resource]) -> None:
    exported = registered_metric_names()
    alerts = alert_rules(prod)
    assert {
        "StocksyncConsumerLagHigh",
        "StocksyncOutboxBacklog",
        "StocksyncPushErrorRate",
        "StocksyncOversell",
        "StocksyncConnectionPaused",
        "StocksyncEventsSkipped",
        "StocksyncEventsDeadLettered",
        "StocksyncTargetDown",
        "StocksyncTargetAbsent",
    } <= {alert["alert"] for alert in alerts}
    for alert in alerts:
        used = set(re.findall(r"\bstocksync_[a-z_]+", alert["expr"]))
        if not used:  # the scrape targets themselves
            assert re.search(r"\bup\{job=~\"\.\+/stocksync\"", alert["expr"]), alert["alert"]
        assert used <= exported, alert["alert"]


def test_every_alert_expression_is_valid_promql_over_exported_metrics(prod: list[Resource]) -> None:
    exported = registered_metric_names()
    for alert in alert_rules(prod):
        try:
            used = promql_metrics(alert["expr"])
        except ValueError as exc:
            raise AssertionError(f"{alert['alert']}: {exc}") from exc
        assert used and used <= exported | {"up"}, alert["alert"]


def test_the_promql_check_refuses_what_prometheus_refuses() -> None:
    for broken in ("rate(stocksync_pushes_total)", "sum(rate(stocksync_pushes_total[5m])", "no_such_fn(up)"):
        with pytest.raises(ValueError):
            promql_metrics(broken)
    assert promql_metrics('sum by (le) (rate(a_bucket{x="1"}[5m])) / on() absent(up)') == {"a_bucket", "up"}


def test_push_errors_leave_throttling_out(prod: list[Resource]) -> None:
    (errors,) = [a for a in alert_rules(prod) if a["alert"] == "StocksyncPushErrorRate"]
    assert 'status="rejected"' in errors["expr"]
    for alert in alert_rules(prod):
        assert "throttled" not in alert["expr"], alert["alert"]


def test_each_service_has_an_absent_target_alert(prod: list[Resource]) -> None:
    absent = [a for a in alert_rules(prod) if a["alert"] == "StocksyncTargetAbsent"]
    assert sorted(a["labels"]["service"] for a in absent) == sorted(SERVICE_NAMES)
    for alert in absent:
        assert f'container="{alert["labels"]["service"]}"' in alert["expr"]


def test_every_alert_links_its_runbook_and_every_runbook_has_an_alert(prod: list[Resource]) -> None:
    runbooks = REPO / "docs" / "runbooks"
    names = {alert["alert"] for alert in alert_rules(prod)}
    for alert in alert_rules(prod):
        url = alert["annotations"]["runbook_url"]
        assert url.endswith(f"/docs/runbooks/{alert['alert']}.md"), alert["alert"]
        page = (runbooks / f"{alert['alert']}.md").read_text()
        for section in ("## Meaning", "## Impact", "## Diagnosis", "## Mitigation"):
            assert section in page, (alert["alert"], section)
    assert {path.stem for path in runbooks.glob("Stocksync*.md")} == names
