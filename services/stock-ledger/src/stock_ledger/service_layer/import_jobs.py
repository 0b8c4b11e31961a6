"""Stock imports as jobs: store the file, answer at once, apply it in the background.

Why the file is kept in PostgreSQL (in parts of `PART_BYTES`): it is the one store every
instance of the ledger shares and backs up, a stored upload commits in the same
transaction as its job row (a job never points at a missing file), and no instance needs
a shared disk.

Exactly once across restarts: a job is applied in chunks, and the transaction of a chunk
also moves the job's `lines_done` past the last line that chunk covered, guarded by the
value it started from. A restarted worker reads the file again from the start (rows up to
`lines_done` only rebuild the "SKU already on line N" check) and applies from the first
line after `lines_done`. Each applied row's ledger causation id names the job
(`snapshot:<job_id>:<sku>:<location>`), unique per merchant, so even a bug here could not
apply a row twice silently.

One worker per job: the worker holds a session advisory lock on the job while it runs it;
if its process dies, PostgreSQL drops the lock with the connection and another worker (or
the same one after a restart) takes the job over.
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import orjson
import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from stocksync_common.contracts import utcnow
from stocksync_common.periodic import Periodic
from stocksync_common.uow import UnitOfWorkFactory

from stock_ledger.adapters.snapshot_formats import (
    SnapshotRecord,
    read_csv,
    read_json_lines,
    read_lines,
    validation_error,
)
from stock_ledger.adapters.tables import import_job_parts, import_job_refusals, import_jobs
from stock_ledger.service_layer.snapshots import RejectedRow, SnapshotRow, apply_snapshot_rows

log = logging.getLogger(__name__)

ImportFormat = Literal["csv", "jsonl", "json"]
PART_BYTES = 1024 * 1024
# A job whose run failed this many times (not a refused row, not the database being
# unreachable: an error of the run itself) fails.
MAX_ATTEMPTS = 5
TRANSIENT_ERRORS = (sa.exc.OperationalError, sa.exc.InterfaceError, OSError)
# Namespace of the session advisory locks that give a job to one worker.
_LOCK_NAMESPACE = 0x1D0B


class ImportTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"body larger than {limit} bytes")
        self.limit = limit


async def store_import(
    engine: AsyncEngine,
    merchant_id: uuid.UUID,
    body: AsyncIterator[bytes],
    *,
    file_format: ImportFormat,
    atomic: bool,
    default_as_of: datetime,
    max_bytes: int,
) -> uuid.UUID:
    """Store an upload and queue its job, in one transaction: all of it or nothing."""
    job_id = uuid.uuid4()
    now = utcnow()
    size = lines = 0
    last_byte = b"\n"
    part = bytearray()
    async with engine.begin() as conn:
        await conn.execute(
            sa.insert(import_jobs).values(
                job_id=job_id,
                merchant_id=merchant_id,
                format=file_format,
                atomic=atomic,
                default_as_of=default_as_of,
                state="queued",
                size_bytes=0,
                lines_total=0,
                created_at=now,
                updated_at=now,
            )
        )
        number = 0
        async for chunk in body:
            if not chunk:
                continue
            size += len(chunk)
            if size > max_bytes:
                raise ImportTooLarge(max_bytes)
            lines += chunk.count(b"\n")
            last_byte = chunk[-1:]
            part += chunk
            while len(part) >= PART_BYTES:
                await _store_part(conn, job_id, number, bytes(part[:PART_BYTES]))
                del part[:PART_BYTES]
                number += 1
        if part:
            await _store_part(conn, job_id, number, bytes(part))
        lines += 0 if last_byte == b"\n" else 1
        await conn.execute(
            sa.update(import_jobs).where(import_jobs.c.job_id == job_id).values(size_bytes=size, lines_total=lines)
        )
    return job_id


async def _store_part(conn: AsyncConnection, job_id: uuid.UUID, number: int, data: bytes) -> None:
    await conn.execute(sa.insert(import_job_parts).values(job_id=job_id, part=number, data=data))


async def stored_file(engine: AsyncEngine, job_id: uuid.UUID) -> AsyncIterator[bytes]:
    """The stored upload, one part (at most `PART_BYTES`) in memory at a time."""
    p = import_job_parts.c
    number = 0
    while True:
        async with engine.connect() as conn:
            data = await conn.scalar(sa.select(p.data).where(p.job_id == job_id, p.part == number))
        if data is None:
            return
        yield bytes(data)
        number += 1


async def _json_document_rows(
    stream: AsyncIterator[bytes], default_as_of: datetime
) -> AsyncIterator[SnapshotRow | RejectedRow]:
    """`{"items": [...]}`: each item is a row numbered by its index + 1; bad items are refused one by one."""
    body = bytearray()
    async for chunk in stream:
        body += chunk
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        yield RejectedRow(1, None, f"not JSON: {exc}")
        return
    items = document.get("items") if isinstance(document, dict) else None
    if not isinstance(items, list):
        yield RejectedRow(1, "items", 'the body must be {"items": [...]}')
        return
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            yield RejectedRow(index + 1, None, "an item must be a JSON object")
            continue
        try:
            yield SnapshotRecord.model_validate(item).to_row(index + 1, default_as_of)
        except ValidationError as exc:
            yield validation_error(index + 1, exc)


def _reader(file_format: str, stream: AsyncIterator[bytes], default_as_of: datetime) -> AsyncIterator[Any]:
    if file_format == "csv":
        return read_csv(stream, default_as_of)
    if file_format == "jsonl":
        return read_json_lines(stream, default_as_of)
    return _json_document_rows(stream, default_as_of)


@dataclass
class _Progress:
    """What one chunk adds to the job, committed with the chunk's rows."""

    rows: list[SnapshotRow]
    refusals: list[RejectedRow]
    last_line: int


async def _rows_with_duplicates_refused(
    rows: AsyncIterator[SnapshotRow | RejectedRow],
) -> AsyncIterator[SnapshotRow | RejectedRow]:
    """A SKU (and location) named twice in one file is refused the second time, as in a snapshot."""
    first_line: dict[tuple[str, str], int] = {}
    async for row in rows:
        if isinstance(row, SnapshotRow):
            seen_on = first_line.setdefault((row.sku, row.location), row.line)
            if seen_on != row.line:
                yield RejectedRow(row.line, "sku", f"SKU {row.sku!r} at {row.location!r} is already on line {seen_on}")
                continue
        yield row


async def run_import_job(
    units: UnitOfWorkFactory,
    job_id: uuid.UUID,
    *,
    chunk_size: int,
    stopping: Callable[[], bool] = lambda: False,
) -> None:
    """Apply a claimed job from its first unapplied line to the end; the caller holds its lock.

    Each chunk is a unit of work: its commit wakes the relay when it wrote events. When
    `stopping()` turns true (a graceful shutdown) it returns after the chunk in hand
    commits; the job stays `running` and the next worker resumes it.
    """
    engine = units.engine
    async with engine.connect() as conn:
        job = (await conn.execute(sa.select(import_jobs).where(import_jobs.c.job_id == job_id))).one()
    if job.state not in ("queued", "running"):
        return
    async with engine.begin() as conn:
        await conn.execute(
            sa.update(import_jobs)
            .where(import_jobs.c.job_id == job_id)
            .values(
                state="running",
                started_at=sa.func.coalesce(import_jobs.c.started_at, sa.func.now()),
                updated_at=sa.func.now(),
            )
        )
    rows = _rows_with_duplicates_refused(_reader(job.format, stored_file(engine, job_id), job.default_as_of))
    if job.atomic:
        await _run_atomic(units, job, rows)
    else:
        await _run_in_chunks(units, job, rows, chunk_size, stopping)


async def _run_in_chunks(
    units: UnitOfWorkFactory,
    job: Any,
    rows: AsyncIterator[SnapshotRow | RejectedRow],
    chunk_size: int,
    stopping: Callable[[], bool],
) -> None:
    done = int(job.lines_done)
    pending = _Progress([], [], done)
    async for row in rows:
        if row.line <= done:
            continue  # committed by an earlier run
        if isinstance(row, RejectedRow):
            pending.refusals.append(row)
        else:
            pending.rows.append(row)
        pending.last_line = row.line
        if len(pending.rows) >= chunk_size or len(pending.refusals) >= chunk_size:
            done = await _commit_chunk(units, job, pending, done)
            pending = _Progress([], [], done)
            if stopping():
                return
    await _commit_chunk(units, job, pending, done, finished=True)


async def _commit_chunk(
    units: UnitOfWorkFactory, job: Any, progress: _Progress, done: int, *, finished: bool = False
) -> int:
    """Apply a chunk and move the job past it, in one transaction; return the new `lines_done`."""
    async with units.begin() as uow:
        conn = uow.sqlalchemy
        outcome = await apply_snapshot_rows(uow, job.merchant_id, job.job_id, progress.rows)
        refusals = sorted([*progress.refusals, *outcome.refused], key=lambda r: r.line)
        await _record_refusals(conn, job.job_id, refusals)
        values: dict[str, Any] = {
            "lines_done": progress.last_line,
            "applied": import_jobs.c.applied + outcome.applied,
            "ignored_stale": import_jobs.c.ignored_stale + outcome.ignored_stale,
            "refused": import_jobs.c.refused + len(refusals),
            "updated_at": sa.func.now(),
        }
        if finished:
            # Blank lines at the end are read too: a finished job is done with every line.
            values |= {
                "state": "succeeded",
                "finished_at": sa.func.now(),
                "lines_done": sa.func.greatest(progress.last_line, import_jobs.c.lines_total),
            }
        moved = await conn.execute(
            sa.update(import_jobs)
            .where(import_jobs.c.job_id == job.job_id, import_jobs.c.lines_done == done)
            .values(**values)
        )
        if moved.rowcount != 1:
            # Another run moved the job: roll this chunk back rather than apply it twice.
            raise RuntimeError(f"import job {job.job_id} moved under this worker")
    return progress.last_line


async def _run_atomic(units: UnitOfWorkFactory, job: Any, rows: AsyncIterator[SnapshotRow | RejectedRow]) -> None:
    """All rows in one transaction, or none when any row is refused (a restart starts over)."""
    refusals: list[RejectedRow] = []
    async for row in rows:
        if isinstance(row, RejectedRow):
            refusals.append(row)
    if not refusals:
        try:
            await _apply_atomic(units, job)
            return
        except _RowsRefused as refused:  # rows naming a bundle: rolled back, nothing applied
            refusals = refused.rows
    if refusals:
        async with units.engine.begin() as conn:
            await conn.execute(sa.delete(import_job_refusals).where(import_job_refusals.c.job_id == job.job_id))
            await _record_refusals(conn, job.job_id, refusals)
            await conn.execute(
                sa.update(import_jobs)
                .where(import_jobs.c.job_id == job.job_id)
                .values(
                    state="failed",
                    refused=len(refusals),
                    error=f"atomic import: {len(refusals)} rows refused, nothing applied",
                    finished_at=sa.func.now(),
                    updated_at=sa.func.now(),
                )
            )
        return


class _RowsRefused(Exception):
    def __init__(self, rows: list[RejectedRow]) -> None:
        super().__init__(f"{len(rows)} rows refused")
        self.rows = rows


async def _apply_atomic(units: UnitOfWorkFactory, job: Any) -> None:
    """Apply every row of the job in one unit of work; raise _RowsRefused (rolling back)
    when applying refuses any."""
    rows = _rows_with_duplicates_refused(_reader(job.format, stored_file(units.engine, job.job_id), job.default_as_of))
    applied = ignored = last_line = 0
    refused: list[RejectedRow] = []
    chunk: list[SnapshotRow] = []
    async with units.begin() as uow:
        async for row in rows:
            assert isinstance(row, SnapshotRow)
            chunk.append(row)
            last_line = row.line
            if len(chunk) >= 1000:
                outcome = await apply_snapshot_rows(uow, job.merchant_id, job.job_id, chunk)
                applied, ignored = applied + outcome.applied, ignored + outcome.ignored_stale
                refused += outcome.refused
                chunk = []
        outcome = await apply_snapshot_rows(uow, job.merchant_id, job.job_id, chunk)
        refused += outcome.refused
        if refused:
            raise _RowsRefused(refused)
        await uow.sqlalchemy.execute(
            sa.update(import_jobs)
            .where(import_jobs.c.job_id == job.job_id)
            .values(
                state="succeeded",
                lines_done=last_line,
                applied=applied + outcome.applied,
                ignored_stale=ignored + outcome.ignored_stale,
                finished_at=sa.func.now(),
                updated_at=sa.func.now(),
            )
        )


async def _record_refusals(conn: AsyncConnection, job_id: uuid.UUID, refusals: Iterable[RejectedRow]) -> None:
    values = [
        {"job_id": job_id, "line": r.line, "field": _storable(r.field), "message": _storable(r.message)}
        for r in refusals
    ]
    if values:
        await conn.execute(sa.insert(import_job_refusals), values)


def _storable(text: str | None) -> str | None:
    """A field name comes from the file (a CSV column, a JSON key): keep it storable."""
    return None if text is None else text.replace("\x00", "\\0")[:2000]


async def fail_job(engine: AsyncEngine, job_id: uuid.UUID, error: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            sa.update(import_jobs)
            .where(import_jobs.c.job_id == job_id, import_jobs.c.state.in_(["queued", "running"]))
            .values(state="failed", error=error[:1000], finished_at=sa.func.now(), updated_at=sa.func.now())
        )


# ---- the refused-rows report --------------------------------------------------------------

REPORT_COLUMNS = ("#line", "#field", "#reason")


async def refused_rows_report(engine: AsyncEngine, job: Any) -> AsyncIterator[str]:
    """The refused rows as CSV, each as it was in the file, after its line, field and reason.

    For a CSV import the columns after the first three are the file's own header, so the
    merchant can fix the rows and send the report again (columns whose name starts with
    `#` are ignored by every import). For JSON lines and JSON, the last column, `record`,
    holds the refused line or item as it was.
    """
    r = import_job_refusals.c
    async with engine.connect() as conn:
        refusals = {
            row.line: row
            for row in await conn.execute(
                sa.select(r.line, r.field, r.message).where(r.job_id == job.job_id).order_by(r.line)
            )
        }
    raw = await _raw_lines(engine, job, set(refusals) | {1})
    header: list[str] = ["record"]
    if job.format == "csv" and 1 in raw and 1 not in refusals:
        header = _cells(raw[1])
    yield _csv_line([*REPORT_COLUMNS, *header])
    for line, refusal in refusals.items():
        text = raw.get(line, "")
        cells = _cells(text) if job.format == "csv" else [text]
        yield _csv_line([str(line), refusal.field or "", refusal.message, *cells])


async def _raw_lines(engine: AsyncEngine, job: Any, wanted: set[int]) -> dict[int, str]:
    if job.format == "json":
        return await _raw_items(engine, job.job_id, wanted)
    found: dict[int, str] = {}
    async for number, raw in read_lines(stored_file(engine, job.job_id)):
        if number in wanted:
            found[number] = "" if raw is None else raw.decode("utf-8-sig" if number == 1 else "utf-8", "replace")
    return found


async def _raw_items(engine: AsyncEngine, job_id: uuid.UUID, wanted: set[int]) -> dict[int, str]:
    body = bytearray()
    async for chunk in stored_file(engine, job_id):
        body += chunk
    try:
        items = orjson.loads(body).get("items")
    except (orjson.JSONDecodeError, AttributeError):
        return {}
    if not isinstance(items, list):
        return {}
    return {n: orjson.dumps(items[n - 1]).decode() for n in wanted if 0 < n <= len(items)}


def _cells(text: str) -> list[str]:
    try:
        return next(csv.reader([text]))
    except (csv.Error, StopIteration):
        return [text]


def _csv_line(cells: list[str]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(cells)
    return out.getvalue()


# ---- the worker ----------------------------------------------------------------------------


class ImportWorker(Periodic):
    """Runs queued jobs (and jobs a dead worker left running), one at a time per instance;
    `wake()` when a job is queued."""

    def __init__(self, units: UnitOfWorkFactory, *, chunk_size: int, poll_interval_s: float = 1.0) -> None:
        super().__init__("import-worker", poll_interval_s, self.run_one)
        self.units = units
        self.chunk_size = chunk_size

    async def run_one(self) -> bool:
        """Claim one pending job no other worker holds and run it; False when there is none."""
        j = import_jobs.c
        async with self.units.engine.connect() as conn:
            pending = list(
                await conn.execute(
                    sa.select(j.job_id, j.attempts)
                    .where(j.state.in_(["queued", "running"]))
                    .order_by(j.created_at)
                    .limit(20)
                )
            )
        for job_id, attempts in pending:
            async with self.units.engine.connect() as lock_conn:
                lock_conn = await lock_conn.execution_options(isolation_level="AUTOCOMMIT")
                key = {"ns": _LOCK_NAMESPACE, "job": _lock_key(job_id)}
                if not await lock_conn.scalar(sa.text("SELECT pg_try_advisory_lock(:ns, :job)"), key):
                    continue
                try:
                    if attempts >= MAX_ATTEMPTS:
                        await fail_job(self.units.engine, job_id, f"gave up after {attempts} failed runs")
                    else:
                        await self._run(job_id)
                finally:
                    await lock_conn.scalar(sa.text("SELECT pg_advisory_unlock(:ns, :job)"), key)
            return True
        return False

    async def _run(self, job_id: uuid.UUID) -> None:
        try:
            await run_import_job(self.units, job_id, chunk_size=self.chunk_size, stopping=lambda: self.stopping)
        except TRANSIENT_ERRORS:
            # The database or the network, not the job: retried without counting, after a pause.
            log.warning("import job %s: run interrupted; retrying", job_id, exc_info=True)
            await asyncio.sleep(self.interval_s * 5)
        except Exception as exc:
            # Counted in `attempts`: the job is retried, and fails after MAX_ATTEMPTS runs.
            log.exception("import job %s: run failed", job_id)
            async with self.units.engine.begin() as conn:
                await conn.execute(
                    sa.update(import_jobs)
                    .where(import_jobs.c.job_id == job_id)
                    .values(
                        attempts=import_jobs.c.attempts + 1,
                        error=f"{type(exc).__name__}: {exc}"[:1000],
                        updated_at=sa.func.now(),
                    )
                )
            await asyncio.sleep(self.interval_s)


def _lock_key(job_id: uuid.UUID) -> int:
    return int.from_bytes(job_id.bytes[:4], "big", signed=True)
