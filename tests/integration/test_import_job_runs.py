"""Import jobs' use cases against the real PostgreSQL: resume after an interrupted run, atomic mode, the report."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from stocksync_common.contracts import utcnow
from stocksync_common.db import make_engine
from stocksync_common.uow import UnitOfWorkFactory

from stock_ledger.adapters.tables import import_jobs, inbox, ledger_entries, outbox, stock_items
from stock_ledger.adapters.unit_of_work import unit_of_work_factory
from stock_ledger.service_layer.import_jobs import (
    ImportFormat,
    ImportTooLarge,
    refused_rows_report,
    run_import_job,
    store_import,
)
from tests.conftest import PrivateDatabase

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def own_database_url(private_database: PrivateDatabase) -> Iterator[str]:
    """Not the session's database: the e2e stack's stock-ledger, running on that one in the
    same worker, would claim these queued jobs and run them beside the test."""
    with private_database() as url:
        yield url


@pytest.fixture(scope="module")
async def engine(own_database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(own_database_url, pool_size=2)
    yield engine
    await engine.dispose()


async def body(data: bytes, piece: int = 7) -> AsyncIterator[bytes]:
    """The upload in small pieces, as a network delivers it."""
    for start in range(0, len(data), piece):
        yield data[start : start + piece]


async def stored(
    engine: AsyncEngine, merchant_id: uuid.UUID, data: bytes, fmt: ImportFormat = "csv", atomic: bool = False
) -> uuid.UUID:
    return await store_import(
        engine,
        merchant_id,
        body(data),
        file_format=fmt,
        atomic=atomic,
        default_as_of=utcnow(),
        max_bytes=10_000_000,
    )


async def job(engine: AsyncEngine, job_id: uuid.UUID) -> sa.Row[tuple[object, ...]]:
    async with engine.connect() as conn:
        return (await conn.execute(sa.select(import_jobs).where(import_jobs.c.job_id == job_id))).one()


class Crash(Exception):
    pass


async def test_a_run_interrupted_after_some_chunks_resumes_at_the_next_line_and_applies_each_row_once(
    engine: AsyncEngine,
) -> None:
    merchant_id = uuid.uuid4()
    lines = ["sku,on_hand"] + [f"R-{n},{n}" if n % 100 != 50 else f"R-{n},-1" for n in range(1000)]
    job_id = await stored(engine, merchant_id, ("\n".join(lines) + "\n").encode())
    chunks = 0

    def crash_after_the_third_chunk() -> None:
        nonlocal chunks
        chunks += 1
        if chunks == 3:
            raise Crash

    # Woken after each chunk's commit: the crash comes once three chunks are committed.
    crashing = UnitOfWorkFactory(engine, inbox=inbox, outbox=outbox, wake_relay=crash_after_the_third_chunk)
    with pytest.raises(Crash):
        await run_import_job(crashing, job_id, chunk_size=100)
    interrupted = await job(engine, job_id)
    assert (interrupted.state, interrupted.applied) == ("running", 300)
    assert interrupted.lines_done == 1 + 300 + 3  # header, 300 applied rows, 3 refused among them

    await run_import_job(unit_of_work_factory(engine), job_id, chunk_size=100)

    finished = await job(engine, job_id)
    assert (finished.state, finished.applied, finished.refused) == ("succeeded", 990, 10)
    assert finished.lines_done == finished.lines_total == 1001
    async with engine.connect() as conn:
        entries = (
            await conn.execute(
                sa.select(sa.func.count(), sa.func.count(sa.distinct(ledger_entries.c.sku))).where(
                    ledger_entries.c.merchant_id == merchant_id
                )
            )
        ).one()
        versions = set(
            await conn.scalars(sa.select(stock_items.c.version).where(stock_items.c.merchant_id == merchant_id))
        )
    assert tuple(entries) == (990, 990)
    assert versions == {1}


async def test_an_atomic_job_with_a_refused_row_applies_nothing_and_reports_every_refused_row(
    engine: AsyncEngine,
) -> None:
    merchant_id = uuid.uuid4()
    data = b'{"sku": "A", "on_hand": 1}\n{"sku": "B", "on_hand": "x"}\n{"sku": "A", "on_hand": 2}\n'
    job_id = await stored(engine, merchant_id, data, fmt="jsonl", atomic=True)

    await run_import_job(unit_of_work_factory(engine), job_id, chunk_size=100)

    failed = await job(engine, job_id)
    assert (failed.state, failed.applied, failed.refused) == ("failed", 0, 2)
    assert failed.error == "atomic import: 2 rows refused, nothing applied"
    async with engine.connect() as conn:
        assert await conn.scalar(sa.select(sa.func.count()).where(stock_items.c.merchant_id == merchant_id)) == 0
    report = "".join([line async for line in refused_rows_report(engine, failed)])
    assert list(csv.reader(io.StringIO(report))) == [
        ["#line", "#field", "#reason", "record"],
        [
            "2",
            "on_hand",
            "Input should be a valid integer, unable to parse string as an integer",
            data.split(b"\n")[1].decode(),
        ],
        ["3", "sku", "SKU 'A' at 'default' is already on line 1", data.split(b"\n")[2].decode()],
    ]


async def test_a_csv_report_keeps_the_files_columns_so_that_it_can_be_sent_again(engine: AsyncEngine) -> None:
    merchant_id = uuid.uuid4()
    data = b'sku,on_hand,colour\nS-1,2,blue\nS-2,-2,"red, dark"\n'
    job_id = await stored(engine, merchant_id, data)
    await run_import_job(unit_of_work_factory(engine), job_id, chunk_size=100)
    report = "".join([line async for line in refused_rows_report(engine, await job(engine, job_id))])
    assert list(csv.reader(io.StringIO(report))) == [
        ["#line", "#field", "#reason", "sku", "on_hand", "colour"],
        ["3", "on_hand", "Input should be greater than or equal to 0", "S-2", "-2", "red, dark"],
    ]

    fixed = report.replace("S-2,-2", "S-2,2").encode()
    again = await stored(engine, merchant_id, fixed)
    await run_import_job(unit_of_work_factory(engine), again, chunk_size=100)
    resent = await job(engine, again)
    assert (resent.applied, resent.refused) == (1, 0)
    async with engine.connect() as conn:
        on_hand = await conn.scalar(
            sa.select(stock_items.c.on_hand).where(stock_items.c.merchant_id == merchant_id, stock_items.c.sku == "S-2")
        )
    assert on_hand == 2


async def test_an_upload_over_the_limit_stores_nothing(engine: AsyncEngine) -> None:
    merchant_id = uuid.uuid4()
    with pytest.raises(ImportTooLarge):
        await store_import(
            engine,
            merchant_id,
            body(b"sku,on_hand\n" * 100),
            file_format="csv",
            atomic=False,
            default_as_of=utcnow(),
            max_bytes=500,
        )
    async with engine.connect() as conn:
        assert await conn.scalar(sa.select(sa.func.count()).where(import_jobs.c.merchant_id == merchant_id)) == 0
