"""docker-compose.yml and the Dockerfile, checked without a container engine: the compose
file against the compose specification, and the image's commands against the real
entry points, each started on the test PostgreSQL and broker as the image would run it."""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import subprocess
import sys
from typing import Any

import httpx
import pytest
import yaml
from aiokafka.admin import AIOKafkaAdminClient

from stocksync_common.topics import ALL_TOPICS
from stocksync_embedded.gateway import ROUTES
from stocksync_embedded.stack import SERVICES, ManagedProcess, Stack, free_port

from tests.deploy.conftest import REPO, render

MODULES = dict(SERVICES)
ENTRY_POINTS = {
    *(("python", "-m", module, "serve") for module in MODULES.values()),
    *(("python", "-m", module, "migrate") for module in MODULES.values()),
    *(("python", "-m", module, "wait-for-migrations", "--timeout", "600") for module in MODULES.values()),
    ("python", "-m", "stocksync_common.create_topics"),
    ("python", "-m", "merchant_console", "serve"),
}


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return loaded


def split_shell(command: list[str]) -> list[tuple[str, ...]]:
    """`sh -c "a && b"` is the commands a and b; anything else is one command."""
    if command[:2] == ["sh", "-c"]:
        return [tuple(shlex.split(part)) for part in command[2].split("&&")]
    return [tuple(command)]


def dockerfile_stages() -> dict[str, str]:
    """Each stage of the Dockerfile by name, in order."""
    parts = re.split(r"^FROM (\S+) AS (\S+)$", (REPO / "Dockerfile").read_text(), flags=re.MULTILINE)
    return {
        name: f"FROM {parent}\n{body}" for parent, name, body in zip(parts[1::3], parts[2::3], parts[3::3], strict=True)
    }


def dockerfile_cmd() -> tuple[str, ...]:
    """The production image's command: that of the last stage, the default target."""
    *_, production = dockerfile_stages().values()
    (line,) = re.findall(r"^CMD (\[.*\])$", production, re.MULTILINE)
    return tuple(json.loads(line))


def image_commands() -> dict[str, set[tuple[str, ...]]]:
    """Every command the image is given, by where it is given."""
    found: dict[str, set[tuple[str, ...]]] = {"Dockerfile": {dockerfile_cmd()}, "compose": set()}
    for name, service in compose()["services"].items():
        if "command" in service and name != "sandbox-shopify":
            found["compose"].update(split_shell(service["command"]))
    for overlay in ("dev", "prod"):
        found[overlay] = {
            tuple(container["command"] + container.get("args", []))
            for resource in render(overlay)
            if resource["kind"] in ("Deployment", "Job")
            for container in (
                resource["spec"]["template"]["spec"]["containers"]
                + resource["spec"]["template"]["spec"].get("initContainers", [])
            )
        }
    return found


def test_compose_file_matches_the_compose_specification() -> None:
    checked = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            str(REPO / "docker-compose.yml"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_compose_runs_kafka_in_kraft_mode_and_starts_services_after_topics_and_migrations() -> None:
    services = compose()["services"]
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "zookeeper" not in services
    for name in MODULES:
        service = services[name]
        assert service["depends_on"]["init"]["condition"] == "service_completed_successfully"
        assert service["depends_on"]["kafka"]["condition"] == "service_healthy"
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert "/readyz" in " ".join(service["healthcheck"]["test"])
        assert service["environment"]["HTTP_HOST"] == "0.0.0.0"
    assert services["sandbox-shopify"]["profiles"] == ["sandboxes"]


def gateway_locations() -> dict[str, tuple[str, str]]:
    """deploy/compose/gateway.conf: each `location` prefix -> (upstream, the block's text)."""
    text = (REPO / "deploy" / "compose" / "gateway.conf").read_text()
    found = {}
    for prefix, body in re.findall(r"^\s*location (/\S*) \{(.*?)\}", text, re.MULTILINE | re.DOTALL):
        upstream = re.search(r"proxy_pass http://([\w-]+);", body)
        if upstream:
            found[prefix] = (upstream.group(1), body)
    return found


def test_compose_serves_every_public_path_and_the_console_on_one_base_url_as_the_embedded_gateway() -> None:
    services = compose()["services"]
    gateway = services["gateway"]
    assert "./deploy/compose/gateway.conf:/etc/nginx/conf.d/default.conf:ro" in gateway["volumes"]
    assert gateway["ports"] == ["8000:8000"]
    locations = gateway_locations()
    for prefix, owner in ROUTES:
        assert locations.get(prefix, ("",))[0] == owner, prefix
    assert {upstream for upstream, _ in locations.values()} <= set(services)
    assert set(locations) == {prefix for prefix, _ in ROUTES}
    # The console's server-sent events pass as they come and stay open.
    console_block = locations["/console"][1]
    assert "proxy_buffering off;" in console_block and "proxy_read_timeout 1h;" in console_block

    console = services["console"]
    assert split_shell(console["command"]) == [("python", "-m", "merchant_console", "serve")]
    assert console["environment"]["CONSOLE_API_BASE_URL"] == "http://gateway:8000"
    assert console["environment"]["HTTP_HOST"] == "0.0.0.0"
    assert console["depends_on"]["gateway"]["condition"] == "service_healthy"
    assert "/readyz" in " ".join(console["healthcheck"]["test"])
    assert "CONSOLE_SESSION_SECRET" in console["environment"]


def test_kafka_and_postgresql_keep_their_data_on_named_volumes() -> None:
    services = compose()["services"]
    volumes = set(compose()["volumes"])
    kafka_mounts = dict(mount.split(":", 1) for mount in services["kafka"]["volumes"])
    assert kafka_mounts["kafka-data"] == services["kafka"]["environment"]["KAFKA_LOG_DIRS"]
    postgres_mounts = dict(mount.split(":", 1) for mount in services["postgres"]["volumes"])
    assert postgres_mounts["postgres-data"] == "/var/lib/postgresql/data"
    assert {"kafka-data", "postgres-data"} <= volumes


def test_the_image_listens_on_every_interface_and_runs_as_a_non_root_user() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "HTTP_HOST=0.0.0.0" in dockerfile
    assert re.search(r"^USER 10001", dockerfile, re.MULTILINE)
    assert re.search(r"^HEALTHCHECK ", dockerfile, re.MULTILINE)


def test_every_command_given_to_the_image_is_a_real_entry_point() -> None:
    found = image_commands()
    for where, commands in found.items():
        assert commands <= ENTRY_POINTS, where
    for where in ("compose", "dev", "prod"):
        for module in MODULES.values():
            assert ("python", "-m", module, "serve") in found[where], (where, module)
            assert ("python", "-m", module, "migrate") in found[where], (where, module)


def as_run_here(command: tuple[str, ...]) -> list[str]:
    assert command[0] == "python"
    return [sys.executable, *command[1:]]


@pytest.mark.integration
@pytest.mark.parametrize("service", list(MODULES))
def test_each_serve_command_answers_health_and_readiness(infrastructure: Stack, service: str) -> None:
    (command,) = [c for c in image_commands()["prod"] if c[2] == MODULES[service] and c[3] == "serve"]
    port = free_port()
    env = {**infrastructure.service_env(service), "HTTP_HOST": "0.0.0.0", "HTTP_PORT": str(port)}
    process = ManagedProcess(
        f"image-{service}",
        as_run_here(command),
        env,
        infrastructure.home / "logs" / f"image-{service}.log",
        f"http://127.0.0.1:{port}/readyz",
    )
    process.start()
    try:
        process.wait_ready(timeout=60)
        health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10)
        assert health.json() == {"status": "alive", "service": service}
        assert ready.status_code == 200
        assert ready.json()["checks"]["database"] == "ok"
        assert ready.json()["checks"]["broker"] == "ok"
    finally:
        process.stop()


@pytest.mark.integration
def test_the_init_commands_create_the_topics_and_apply_every_migration(infrastructure: Stack) -> None:
    (init,) = [c for c in image_commands()["compose"] if c[2] == "stocksync_common.create_topics"]
    migrations = sorted(c for c in image_commands()["prod"] if c[-1] == "migrate")
    for command in [init, *migrations]:
        env = infrastructure.service_env("stock-ledger")
        done = subprocess.run(as_run_here(command), env=env, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, f"{command}: {done.stdout}{done.stderr}"

    async def topic_names() -> set[str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=infrastructure.kafka_bootstrap_servers)
        await admin.start()
        try:
            return set(await admin.list_topics())
        finally:
            await admin.close()

    assert {topic.name for topic in ALL_TOPICS} <= asyncio.run(topic_names())


def test_the_production_image_installs_locked_dependencies_before_the_code_and_no_sandbox() -> None:
    stages = dockerfile_stages()
    assert list(stages)[-1] == "runtime"
    assert "COPY --from=build /opt/stocksync" in stages["runtime"]
    build = stages["build"]
    lock = build.index("pip install --no-deps -r deploy/image/requirements.lock")
    assert lock < build.index("COPY libs/common")
    assert lock < build.index("COPY services")
    assert "COPY sandboxes" not in build and "./sandboxes" not in build
    assert "stocksync_sandboxes" not in stages["runtime"]
    assert "COPY sandboxes" in stages["build-sandboxes"]
    assert compose()["services"]["sandbox-shopify"]["build"]["target"] == "sandboxes"
    for name, service in compose()["services"].items():
        if name != "sandbox-shopify" and "build" in service:
            assert "target" not in service["build"], name


def test_the_image_carries_no_secret() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "API_KEY_SECRET" not in dockerfile
    assert "ADMIN_TOKEN" not in dockerfile


@pytest.mark.integration
def test_wait_for_migrations_passes_on_a_migrated_database_and_fails_on_an_older_one(infrastructure: Stack) -> None:
    """The init container of every Deployment: no pod starts on a schema behind its image."""
    import asyncpg
    from sqlalchemy.engine import make_url

    url = make_url(infrastructure.service_env("stock-ledger")["DATABASE_URL"])
    empty = f"wait_for_migrations_{free_port()}"

    async def create_database() -> None:
        connection = await asyncpg.connect(url.set(drivername="postgresql").render_as_string(hide_password=False))
        try:
            await connection.execute(f'CREATE DATABASE "{empty}"')
        finally:
            await connection.close()

    asyncio.run(create_database())
    for service, module in MODULES.items():
        env = infrastructure.service_env(service)
        migrated = subprocess.run(
            [sys.executable, "-m", module, "wait-for-migrations", "--timeout", "30"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert migrated.returncode == 0, migrated.stderr
        env["DATABASE_URL"] = url.set(database=empty).render_as_string(hide_password=False)
        behind = subprocess.run(
            [sys.executable, "-m", module, "wait-for-migrations", "--timeout", "1"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert behind.returncode == 1, behind.stderr
        assert "is not at this version's head" in behind.stderr
