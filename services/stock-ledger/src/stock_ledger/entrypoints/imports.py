"""Stock imports as jobs: `POST /v1/stock/imports` stores the file and answers at once."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from stocksync_common.auth import MerchantId
from stocksync_common.bounds import Timestamp
from stocksync_common.contracts import utcnow
from stocksync_common.runtime import Runtime, RuntimeDep

from stock_ledger.adapters.snapshot_formats import UnreadableUpload, checked_csv_upload
from stock_ledger.adapters.tables import import_jobs
from stock_ledger.config import LedgerSettings
from stock_ledger.entrypoints.api import JSON_LINES_TYPES
from stock_ledger.service_layer.import_jobs import (
    ImportFormat,
    ImportTooLarge,
    ImportWorker,
    refused_rows_report,
    store_import,
)

router = APIRouter(prefix="/v1/stock/imports", tags=["stock"])


class ImportJobOut(BaseModel):
    job_id: uuid.UUID
    state: str = Field(description="queued, running, succeeded or failed")
    format: str = Field(description="csv, jsonl or json")
    atomic: bool = Field(description="All rows in one transaction, or none when any row is refused")
    size_bytes: int
    lines_total: int = Field(description="Lines in the file (CSV: with its header); progress is lines_done of it")
    lines_done: int = Field(description="Lines read and committed (applied or refused)")
    rows_read: int = Field(description="applied + ignored_stale + refused")
    applied: int = Field(description="Rows applied (on_hand set, watermark moved)")
    ignored_stale: int = Field(description="Rows older than the SKU's last snapshot: recorded, not applied")
    refused: int = Field(description="Rows refused; see refused_report")
    error: str | None = Field(description="Why the job failed (or why its last run failed, while it retries)")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    refused_report: str = Field(description="Path of the refused rows as CSV, with the reason for each")

    @classmethod
    def of(cls, row: Any) -> ImportJobOut:
        return cls(
            job_id=row.job_id,
            state=row.state,
            format=row.format,
            atomic=row.atomic,
            size_bytes=row.size_bytes,
            lines_total=row.lines_total,
            lines_done=row.lines_done,
            rows_read=row.applied + row.ignored_stale + row.refused,
            applied=row.applied,
            ignored_stale=row.ignored_stale,
            refused=row.refused,
            error=row.error,
            created_at=row.created_at,
            started_at=row.started_at,
            finished_at=row.finished_at,
            refused_report=f"/v1/stock/imports/{row.job_id}/refused",
        )


_FORMATS: dict[str, ImportFormat] = {"text/csv": "csv", "application/json": "json"}
_FORMATS.update(dict.fromkeys(JSON_LINES_TYPES, "jsonl"))
_IMPORT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "text/csv": {"schema": {"type": "string", "description": "As for POST /v1/stock/snapshots"}},
            "application/x-ndjson": {"schema": {"type": "string", "description": "One SnapshotRecord per line"}},
            "application/json": {"schema": {"$ref": "#/components/schemas/SnapshotIn"}},
        },
    }
}


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ImportJobOut,
    openapi_extra=_IMPORT_BODY,
    responses={
        413: {"description": "Body too large"},
        415: {"description": "Unsupported Content-Type"},
        422: {"description": "A CSV whose first line is not a header with sku and on_hand"},
    },
)
async def post_import(
    request: Request,
    runtime: RuntimeDep,
    response: Response,
    merchant_id: MerchantId,
    as_of: Annotated[Timestamp | None, Query(description="as_of of rows that carry none; default: now")] = None,
    atomic: Annotated[
        bool, Query(description="Apply every row in one transaction, or none of them if any row is refused")
    ] = False,
) -> ImportJobOut:
    """Store a stock file (CSV, JSON lines or JSON, streamed) and apply it in the background.

    Answers once the file is stored, with the job to follow at `GET /v1/stock/imports/{id}`.
    """
    settings = _settings(request)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    file_format = _FORMATS.get(content_type)
    if file_format is None:
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be text/csv, application/x-ndjson or application/json",
        )
    limit = settings.snapshot_json_max_bytes if file_format == "json" else settings.snapshot_max_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, f"body larger than {limit} bytes")
    upload = checked_csv_upload(request.stream()) if file_format == "csv" else request.stream()
    try:
        job_id = await store_import(
            runtime.engine,
            merchant_id,
            upload,
            file_format=file_format,
            atomic=atomic,
            default_as_of=as_of or utcnow(),
            max_bytes=limit,
        )
    except ImportTooLarge as exc:
        raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, f"{exc}; nothing was stored") from exc
    except UnreadableUpload as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, f"{exc}; nothing was stored") from exc
    worker: ImportWorker = request.app.state.import_worker
    worker.wake()
    response.headers["Location"] = f"/v1/stock/imports/{job_id}"
    return ImportJobOut.of(await _job(runtime, merchant_id, job_id))


@router.get("", response_model=list[ImportJobOut])
async def list_imports(
    runtime: RuntimeDep, merchant_id: MerchantId, limit: Annotated[int, Query(ge=1, le=1000)] = 20
) -> list[ImportJobOut]:
    """The merchant's import jobs, newest first."""
    j = import_jobs.c
    async with runtime.engine.connect() as conn:
        rows = await conn.execute(
            sa.select(import_jobs).where(j.merchant_id == merchant_id).order_by(j.created_at.desc()).limit(limit)
        )
    return [ImportJobOut.of(row) for row in rows]


@router.get("/{job_id}", response_model=ImportJobOut)
async def get_import(job_id: uuid.UUID, runtime: RuntimeDep, merchant_id: MerchantId) -> ImportJobOut:
    """A job's state and progress: lines done of the total, rows applied, ignored and refused."""
    return ImportJobOut.of(await _job(runtime, merchant_id, job_id))


@router.get(
    "/{job_id}/refused",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "The refused rows, each with its reason"}},
)
async def get_refused_rows(job_id: uuid.UUID, runtime: RuntimeDep, merchant_id: MerchantId) -> StreamingResponse:
    """The refused rows as CSV: `#line`, `#field`, `#reason`, then the row as it was in the file.

    For a CSV import, fix the rows and send the report again as it is: columns named
    `#...` are ignored by imports.
    """
    job = await _job(runtime, merchant_id, job_id)
    return StreamingResponse(
        refused_rows_report(runtime.engine, job),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="refused-{job_id}.csv"'},
    )


async def _job(runtime: Runtime, merchant_id: uuid.UUID, job_id: uuid.UUID) -> Any:
    j = import_jobs.c
    async with runtime.engine.connect() as conn:
        row = (
            await conn.execute(sa.select(import_jobs).where(j.job_id == job_id, j.merchant_id == merchant_id))
        ).one_or_none()
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no import job {job_id}")
    return row


def _settings(request: Request) -> LedgerSettings:
    settings: LedgerSettings = request.app.state.settings
    return settings
