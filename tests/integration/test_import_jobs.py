"""An import job survives a crash of the stock-ledger: it resumes and applies every row once.

The ledger runs as the image runs it, on a PostgreSQL and broker of the test's own, with
small chunks so that the job is still running when the process is SIGKILLed.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from stocksync_embedded.stack import ManagedProcess, Stack, free_port

from tests.conftest import PrivateDatabase, own_infrastructure

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROWS = 5_000


@pytest.fixture
def own_stack(tmp_path_factory: pytest.TempPathFactory, private_database: PrivateDatabase) -> Iterator[Stack]:
    with own_infrastructure(tmp_path_factory.mktemp("import-jobs"), private_database) as stack:
        yield stack


def ledger(stack: Stack, port: int, name: str) -> ManagedProcess:
    process = ManagedProcess(
        name,
        [sys.executable, "-m", "stock_ledger", "serve"],
        {**stack.service_env("stock-ledger"), "HTTP_PORT": str(port), "SNAPSHOT_CHUNK_ROWS": "100"},
        stack.home / "logs" / f"{name}.log",
        f"http://127.0.0.1:{port}/readyz",
    )
    process.start()
    process.wait_ready()
    return process


def job_state(client: httpx.Client, key: dict[str, str], job_id: str) -> dict[str, object]:
    answer = client.get(f"/v1/stock/imports/{job_id}", headers=key)
    assert answer.status_code == 200, answer.text
    document: dict[str, object] = answer.json()
    return document


async def count_rows(database_url: str, merchant_id: uuid.UUID, job_id: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(ledger entries of the job, SKUs among them); (stock rows, rows at version 1, sum of on_hand)."""
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            entries = (
                await conn.execute(
                    sa.text(
                        "SELECT count(*), count(DISTINCT sku) FROM stock_ledger.ledger_entries"
                        " WHERE merchant_id = :m AND causation_id LIKE :c"
                    ),
                    {"m": merchant_id, "c": f"snapshot:{job_id}:%"},
                )
            ).one()
            stock = (
                await conn.execute(
                    sa.text(
                        "SELECT count(*), count(*) FILTER (WHERE version = 1), sum(on_hand)"
                        " FROM stock_ledger.stock_items WHERE merchant_id = :m"
                    ),
                    {"m": merchant_id},
                )
            ).one()
    finally:
        await engine.dispose()
    return tuple(entries), tuple(stock)


def test_ledger_killed_during_an_import_job_resumes_it_and_applies_every_row_exactly_once(own_stack: Stack) -> None:
    port = free_port()
    first = ledger(own_stack, port, "ledger-before-kill")
    restarted: ManagedProcess | None = None
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            created = client.post(
                "/v1/merchants", json={"name": "import"}, headers={"Authorization": f"Bearer {own_stack.admin_token}"}
            )
            merchant_id, key = created.json()["merchant_id"], {"X-API-Key": created.json()["api_key"]}
            body = "sku,on_hand\n" + "".join(f"K-{n},{n % 97}\n" for n in range(ROWS))
            job = client.post("/v1/stock/imports", headers={**key, "Content-Type": "text/csv"}, content=body).json()

            deadline = time.monotonic() + 120
            while not (state := job_state(client, key, job["job_id"]))["lines_done"]:
                assert time.monotonic() < deadline, state
                time.sleep(0.02)
            first.kill()  # SIGKILL, in the middle of the job
            assert state["state"] == "running" and 0 < int(str(state["lines_done"])) < ROWS, state

            restarted = ledger(own_stack, port, "ledger-after-kill")
            deadline = time.monotonic() + 600
            while (state := job_state(client, key, job["job_id"]))["state"] in ("queued", "running"):
                assert time.monotonic() < deadline, state
                time.sleep(0.2)
        assert (state["state"], state["applied"], state["refused"], state["lines_done"]) == (
            "succeeded",
            ROWS,
            0,
            ROWS + 1,
        )

        assert own_stack.database_url
        entries, stock = asyncio.run(count_rows(own_stack.database_url, uuid.UUID(merchant_id), job["job_id"]))
        assert entries == (ROWS, ROWS)
        assert stock == (ROWS, ROWS, sum(n % 97 for n in range(ROWS)))
    finally:
        first.stop()
        if restarted is not None:
            restarted.stop()
