"""Fixtures that build real things: an embedded PostgreSQL and broker, the services.

One PostgreSQL and one broker serve the whole session (embedded unless DATABASE_URL
and KAFKA_BOOTSTRAP_SERVERS name real ones). Tests isolate themselves by creating
their own merchant, so they never need to clean the database.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import asyncpg
import pytest
from hypothesis import settings
from sqlalchemy.engine import make_url

from stocksync_embedded.stack import SERVICES, Ports, Stack

# Examples are bounded per test; a wall-clock deadline per example only measures how loaded
# the shared machine is (speed is a benchmark's business, never a test's).
settings.register_profile("stocksync", deadline=None)
settings.load_profile("stocksync")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """The session's temporary files live in a directory of their own, not under pytest's
    default /tmp/pytest-of-<user>: every pytest session that starts on the machine takes the
    group and other permissions off that directory, and an embedded PostgreSQL started as
    root runs as its own system user, so another session starting beside this one (a second
    checkout's tests) made every PostgreSQL of this one fail ("could not stat data
    directory: Permission denied"). xdist workers get their own folder inside it."""
    if config.option.basetemp is None and not hasattr(config, "workerinput"):
        config.option.basetemp = tempfile.mkdtemp(prefix="stocksync-pytest-")
        config.stash[_OWN_BASETEMP] = config.option.basetemp


def pytest_unconfigure(config: pytest.Config) -> None:
    own = config.stash.get(_OWN_BASETEMP, None)
    if own is not None:
        shutil.rmtree(own, ignore_errors=True)


_OWN_BASETEMP = pytest.StashKey[str]()


def free_ports() -> Ports:
    return Ports.free()


@pytest.fixture(scope="session")
def infrastructure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """PostgreSQL and the broker, migrated, with no service running."""
    home = Path(os.environ.get("STOCKSYNC_TEST_HOME") or tmp_path_factory.mktemp("stocksync"))
    stack = Stack(home, free_ports())
    stack.start_infrastructure()
    stack.migrate()
    yield stack
    stack.stop()


PrivateDatabase = Callable[[], AbstractContextManager[str]]


@pytest.fixture(scope="session")
def private_database(infrastructure: Stack) -> Iterator[PrivateDatabase]:
    """Makes databases of the caller's own on the session's PostgreSQL, migrated like
    production (every service's schema), each dropped after its `with`. For tests whose rows
    the session's running services must never see (the e2e stack runs on the session's
    database, and its stock-ledger's import worker claims any queued import job there), and
    for stacks of a test's own. The first call migrates a template; every database is a copy
    of it (CREATE DATABASE ... TEMPLATE: a file copy, not four migration runs)."""
    session_url = make_url(infrastructure.service_env("stock-ledger")["DATABASE_URL"])
    admin_dsn = session_url.set(drivername="postgresql").render_as_string(hide_password=False)
    template = f"template_{uuid.uuid4().hex[:12]}"

    def execute(sql: str) -> None:
        async def run() -> None:
            connection = await asyncpg.connect(admin_dsn)
            try:
                await connection.execute(sql)
            finally:
                await connection.close()

        asyncio.run(run())

    execute(f'CREATE DATABASE "{template}"')
    template_url = session_url.set(database=template).render_as_string(hide_password=False)
    for service, module in SERVICES:
        env = {**infrastructure.service_env(service), "DATABASE_URL": template_url}
        done = subprocess.run(
            [sys.executable, "-m", module, "migrate"], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr

    @contextmanager
    def database() -> Iterator[str]:
        name = f"private_{uuid.uuid4().hex[:12]}"
        execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        try:
            yield session_url.set(database=name).render_as_string(hide_password=False)
        finally:
            execute(f'DROP DATABASE "{name}" WITH (FORCE)')

    yield database
    execute(f'DROP DATABASE "{template}" WITH (FORCE)')


@contextmanager
def own_infrastructure(home: Path, private_database: PrivateDatabase, **extra_env: str) -> Iterator[Stack]:
    """A broker of the caller's own and a migrated database of its own on the session's
    PostgreSQL, no service running.

    For tests that stop or restart a service: on the session's broker the session's own
    instance would share the consumer group, and the embedded broker keeps stopped
    members in a group until their session times out (a restart in the middle of a
    rebalance has waited over a minute). A test that restarts PostgreSQL itself starts its
    own (tests/e2e/test_faults.py).
    """
    with private_database() as url:
        stack = Stack(home, free_ports(), database_url=url, kafka_bootstrap_servers="", extra_env=extra_env)
        try:
            stack.start_infrastructure(use_environment=False)
            yield stack
        finally:
            stack.stop()


@pytest.fixture(scope="session")
def database_url(infrastructure: Stack) -> str:
    assert infrastructure.database_url is not None
    return infrastructure.database_url


@pytest.fixture(scope="session")
def kafka_bootstrap_servers(infrastructure: Stack) -> str:
    assert infrastructure.kafka_bootstrap_servers is not None
    return infrastructure.kafka_bootstrap_servers


# The longest files (about a minute or more each on a quiet machine), longest first. With
# `--dist loadfile` each worker takes the next file as it frees up: started first, the long
# ones overlap each other instead of leaving one worker alone with them at the end.
LONGEST_FIRST = (
    "tests/e2e/test_faults.py",
    "tests/e2e/test_cli.py",
    "tests/deploy/test_compose_and_image.py",
    "tests/e2e/test_api_fuzzing.py",
    "tests/e2e/test_publisher_channels.py",
    "tests/integration/test_rule_engine.py",
    "tests/e2e/test_demo_channels.py",
    "tests/integration/test_ledger_faults.py",
    "tests/integration/test_bench_smoke.py",
    "tests/integration/test_rule_engine_evaluation.py",
    "tests/integration/test_ledger_stateful.py",
    "tests/e2e/test_ingest_durability.py",
    "tests/integration/test_import_jobs.py",
    "tests/integration/test_graceful_shutdown.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The folder says what a test needs: tests/integration a real PostgreSQL and broker,
    tests/e2e the services as separate processes (`-m "not e2e"` skips them). The longest
    files run first (LONGEST_FIRST); the rest keep their order."""
    for item in items:
        parts = Path(str(item.path)).parts
        if "e2e" in parts:
            item.add_marker(pytest.mark.e2e)
            item.add_marker(pytest.mark.integration)
        elif "integration" in parts:
            item.add_marker(pytest.mark.integration)
    root = Path(__file__).resolve().parent.parent
    if missing := [path for path in LONGEST_FIRST if not (root / path).is_file()]:
        raise pytest.UsageError(f"LONGEST_FIRST names files that are gone: {missing}")
    rank = {path: n for n, path in enumerate(LONGEST_FIRST)}

    def place(item: pytest.Item) -> int:
        relative = Path(str(item.path)).resolve().relative_to(root).as_posix()
        return rank.get(relative, len(rank))

    items.sort(key=place)
