"""The stock-ledger's REST API: merchants, stock imports, adjustments, stock, ledger, oversells."""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, HTTPException, Path, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from stocksync_common.auth import AdminOnly, MerchantId
from stocksync_common.bounds import Label, NonNegativeInt64, SignedQuantity, Sku, Text, Timestamp
from stocksync_common.contracts import DEFAULT_LOCATION, utcnow
from stocksync_common.errors import error_responses
from stocksync_common.runtime import RuntimeDep

from stock_ledger.adapters.api_key_store import ApiKeyStore
from stock_ledger.adapters.snapshot_formats import SnapshotRecord, UnreadableUpload, read_csv, read_json_lines
from stock_ledger.config import LedgerSettings
from stock_ledger.service_layer.adjustments import Adjustment, AdjustmentRefused, adjust_stock
from stock_ledger.service_layer.reading import StockSort, ledger_page, list_oversells, list_stock, read_stock
from stock_ledger.service_layer.snapshots import ImportReport, RejectedRow, SnapshotRow, import_snapshot

router = APIRouter(prefix="/v1")

Location = Annotated[Label, Query(description="Stock location")]
Limit = Annotated[int, Query(ge=1, le=1000)]
# A SKU in a path may hold "/" (sent as %2F or as is), "%", spaces and any other
# character a SKU may hold: the path converter takes the rest of the path.
SkuInPath = Annotated[Sku, Path(description="The SKU, percent-encoded", examples=["AB-12", "AB/12 blue"])]


def _settings(request: Request) -> LedgerSettings:
    settings: LedgerSettings = request.app.state.settings
    return settings


class MerchantIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Label


class MerchantOut(BaseModel):
    merchant_id: uuid.UUID
    name: str
    api_key: str = Field(description="Shown once; send it as the X-API-Key header (the merchant's first stored key)")


@router.post(
    "/merchants",
    status_code=status.HTTP_201_CREATED,
    response_model=MerchantOut,
    tags=["merchants"],
    responses=error_responses(401, e401="Admin token required"),
)
async def create_merchant(body: MerchantIn, request: Request, _: AdminOnly) -> MerchantOut:
    store: ApiKeyStore = request.app.state.api_key_store
    merchant_id, key = await store.create_merchant(body.name)
    return MerchantOut(merchant_id=merchant_id, name=body.name, api_key=key)


class StockOut(BaseModel):
    sku: str
    location: str
    on_hand: int
    reserved: int
    available: int
    version: int
    updated_at: datetime
    snapshot_as_of: datetime | None = Field(None, description="as_of of the last snapshot applied (the watermark)")

    @classmethod
    def of(cls, row: Any) -> StockOut:
        return cls(
            sku=row.sku,
            location=row.location,
            on_hand=row.on_hand,
            reserved=row.reserved,
            available=row.on_hand - row.reserved,
            version=row.version,
            updated_at=row.updated_at,
            snapshot_as_of=row.snapshot_as_of,
        )


# ---- stock imports -------------------------------------------------------------------


class SnapshotIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[SnapshotRecord] = Field(min_length=1, max_length=10_000)


class RowErrorOut(BaseModel):
    line: int = Field(description="Line of the upload (CSV: the header is line 1; JSON body: item index + 1)")
    field: str | None
    message: str


class SnapshotResult(BaseModel):
    snapshot_id: uuid.UUID
    applied: int = Field(description="Rows applied (on_hand set, watermark moved)")
    ignored_stale: int = Field(description="Rows older than the SKU's last snapshot: recorded, not applied")
    rejected: int = Field(description="Rows that could not be read or validated")
    errors: list[RowErrorOut] = Field(description="The first 1,000 rejected rows")
    items: list[StockOut] = Field(description="Stock that changed (JSON body only; empty for streamed uploads)")


JSON_LINES_TYPES = ("application/x-ndjson", "application/jsonl", "application/json-lines", "application/x-jsonlines")
_SNAPSHOT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/SnapshotIn"}},
            "application/x-ndjson": {
                "schema": {"type": "string", "description": "One SnapshotRecord JSON object per line"}
            },
            "text/csv": {
                "schema": {
                    "type": "string",
                    "description": (
                        "Header line, then one row per SKU: sku,on_hand[,location][,as_of][,brand][,category]"
                        "[,tags (separated by |)][,any other column = an attribute]"
                    ),
                }
            },
        },
    }
}


@router.post(
    "/stock/snapshots",
    response_model=SnapshotResult,
    tags=["stock"],
    openapi_extra=_SNAPSHOT_BODY,
    responses=error_responses(413, 415),
)
async def post_snapshot(
    request: Request,
    runtime: RuntimeDep,
    merchant_id: MerchantId,
    as_of: Annotated[Timestamp | None, Query(description="as_of of rows that carry none; default: now")] = None,
) -> SnapshotResult:
    """Absolute on_hand per SKU from the ERP or catalogue, as JSON, JSON lines or CSV (by Content-Type).

    Rows newer than the SKU's last snapshot set on_hand to their count plus the
    movements the ledger applied after their `as_of`; older rows are recorded and
    ignored. Streamed uploads apply good rows and report bad ones by line number.
    """
    settings = _settings(request)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    default_as_of = as_of or utcnow()
    declared = request.headers.get("content-length")
    limit = settings.snapshot_json_max_bytes if content_type == "application/json" else settings.snapshot_max_bytes
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, f"body larger than {limit} bytes")
    rows: AsyncIterator[SnapshotRow | RejectedRow]
    if content_type == "application/json":
        rows = _json_body_rows(await _read_json_body(request, limit), default_as_of)
    elif content_type in JSON_LINES_TYPES:
        rows = read_json_lines(_bounded(request.stream(), limit), default_as_of)
    elif content_type == "text/csv":
        rows = read_csv(_bounded(request.stream(), limit), default_as_of)
    else:
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json, application/x-ndjson or text/csv",
        )
    try:
        report = await import_snapshot(
            runtime.units,
            merchant_id,
            rows,
            chunk_size=settings.snapshot_chunk_rows,
            keep_changed=content_type == "application/json",
        )
    except UnreadableUpload as exc:  # raised before the first row: nothing was applied
        raise RequestValidationError([{"type": "value_error", "loc": ("body",), "msg": str(exc)}]) from None
    return _snapshot_result(report)


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(
            status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
            f"body larger than {limit} bytes; rows read before the limit were applied",
        )


async def _bounded(stream: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    received = 0
    async for chunk in stream:
        received += len(chunk)
        if received > limit:
            raise BodyTooLarge(limit)
        yield chunk


async def _read_json_body(request: Request, limit: int) -> SnapshotIn:
    body = bytearray()
    async for chunk in _bounded(request.stream(), limit):
        body += chunk
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RequestValidationError(
            [{"type": "json_invalid", "loc": ("body",), "msg": f"not JSON: {exc}", "input": None}]
        ) from exc
    try:
        return SnapshotIn.model_validate(document)
    except ValidationError as exc:
        # Same shape as FastAPI's own 422: the location starts with "body".
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in exc.errors(include_url=False)]
        ) from exc


async def _json_body_rows(body: SnapshotIn, default_as_of: datetime) -> AsyncIterator[SnapshotRow | RejectedRow]:
    for index, record in enumerate(body.items):
        yield record.to_row(index + 1, default_as_of)


def _snapshot_result(report: ImportReport) -> SnapshotResult:
    return SnapshotResult(
        snapshot_id=report.snapshot_id,
        applied=report.applied,
        ignored_stale=report.ignored_stale,
        rejected=report.rejected,
        errors=[RowErrorOut(line=e.line, field=e.field, message=e.message) for e in report.errors],
        items=[
            StockOut(
                sku=e.sku,
                location=e.location,
                on_hand=e.on_hand,
                reserved=e.reserved,
                available=e.available,
                version=e.version,
                updated_at=e.occurred_at,
            )
            for e in report.changed
        ],
    )


# ---- adjustments ---------------------------------------------------------------------


class AdjustmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sku: Sku
    location: Label = DEFAULT_LOCATION
    delta: SignedQuantity = Field(description="Signed change of on_hand, not 0")
    reason: Annotated[Text, Field(min_length=1, max_length=500, description="Why, e.g. 'damaged in warehouse'")]
    actor: Label = Field(description="Who made the adjustment")
    adjustment_id: uuid.UUID = Field(
        default_factory=uuid.uuid4, description="Idempotency key: sending it again changes nothing"
    )

    @field_validator("delta")
    @classmethod
    def _not_zero(cls, value: int) -> int:
        if value == 0:
            raise ValueError("delta must not be 0")
        return value


class AdjustmentOut(BaseModel):
    adjustment_id: uuid.UUID
    duplicate: bool = Field(description="True when this adjustment_id was applied before; nothing changed")
    stock: StockOut


@router.post(
    "/stock/adjustments",
    status_code=status.HTTP_201_CREATED,
    response_model=AdjustmentOut,
    tags=["stock"],
    responses={200: {"model": AdjustmentOut, "description": "Replay of an adjustment"}},
)
async def post_adjustment(
    body: AdjustmentIn, runtime: RuntimeDep, response: Response, merchant_id: MerchantId
) -> AdjustmentOut:
    """Change on_hand by a signed delta, with a reason and who; refused if on_hand would go below zero."""
    try:
        outcome = await adjust_stock(
            Adjustment(merchant_id, body.sku, body.location, body.delta, body.reason, body.actor, body.adjustment_id),
            runtime.units(),
        )
    except AdjustmentRefused as exc:
        raise RequestValidationError(
            [{"type": "value_error", "loc": ("body", "delta"), "msg": str(exc), "input": body.delta}]
        ) from exc
    if outcome.duplicate:
        response.status_code = status.HTTP_200_OK
    async with runtime.engine.connect() as conn:
        row = await read_stock(conn, (merchant_id, body.sku, body.location))
    return AdjustmentOut(adjustment_id=body.adjustment_id, duplicate=outcome.duplicate, stock=StockOut.of(row))


# ---- reading -------------------------------------------------------------------------


class StockPage(BaseModel):
    items: list[StockOut]
    next_after: str | None = Field(
        description="Sorted by SKU: pass as `after` for the next page; null on the last page"
    )
    next_cursor: str | None = Field(
        None, description="Pass as `cursor` (with the same sort and order) for the next page; null on the last page"
    )


STOCK_CURSOR_MAX_LENGTH = 2048


def _stock_cursor(sort: StockSort, order: Literal["asc", "desc"], item: StockOut) -> str:
    """Opaque to clients: the sort, the order and the last row's (value, SKU)."""
    value = getattr(item, sort)
    position = [sort, order, value.isoformat() if isinstance(value, datetime) else value, item.sku]
    return base64.urlsafe_b64encode(orjson.dumps(position)).decode()


def _read_stock_cursor(cursor: str, sort: StockSort, order: Literal["asc", "desc"]) -> tuple[Any, str]:
    """(value, SKU) after which the page starts; a cursor of another sort or order is refused."""

    def refused(message: str) -> RequestValidationError:
        return RequestValidationError([{"type": "value_error", "loc": ("query", "cursor"), "msg": message}])

    try:
        position = orjson.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, binascii.Error):
        raise refused("not a cursor this API gave") from None
    if not (isinstance(position, list) and len(position) == 4 and position[:2] == [sort, order]):
        raise refused(f"not a cursor of sort={sort}&order={order}")
    value, sku = position[2], position[3]
    if not isinstance(sku, str):
        raise refused("not a cursor this API gave")
    try:
        sku = _SKU.validate_python(sku)
        if sort == "updated_at":
            value = _TIMESTAMP.validate_python(value)
        elif sort != "sku":
            value = _QUANTITY.validate_python(value)
    except ValidationError:
        raise refused("not a cursor this API gave") from None
    return value, sku


_SKU: TypeAdapter[str] = TypeAdapter(Sku)
_TIMESTAMP: TypeAdapter[datetime] = TypeAdapter(Timestamp)
_QUANTITY: TypeAdapter[int] = TypeAdapter(SignedQuantity)


@router.get("/stock", response_model=StockPage, tags=["stock"])
async def get_stock_list(
    runtime: RuntimeDep,
    merchant_id: MerchantId,
    location: Location = DEFAULT_LOCATION,
    after: Annotated[
        Sku | None, Query(description="Sorted by SKU: the last SKU of the previous page (or use `cursor`)")
    ] = None,
    cursor: Annotated[
        str | None,
        Query(max_length=STOCK_CURSOR_MAX_LENGTH, description="`next_cursor` of the previous page, any sort"),
    ] = None,
    limit: Limit = 100,
    available_at_most: Annotated[
        SignedQuantity | None, Query(description="Only SKUs with available <= this (low stock)")
    ] = None,
    sku_prefix: Annotated[Sku | None, Query(description="Only SKUs starting with this")] = None,
    sort: Annotated[StockSort, Query(description="The column the page is ordered by; ties by SKU")] = "sku",
    order: Annotated[Literal["asc", "desc"], Query(description="Ascending or descending")] = "asc",
) -> StockPage:
    """Current stock of every SKU, keyset-paged: by SKU unless `sort` names another column."""
    after_value: Any = None
    if cursor is not None and after is not None:
        raise RequestValidationError(
            [{"type": "value_error", "loc": ("query", "after"), "msg": "give `after` or `cursor`, not both"}]
        )
    if after is not None and sort != "sku":
        raise RequestValidationError(
            [{"type": "value_error", "loc": ("query", "after"), "msg": "`after` pages by SKU: use `cursor`"}]
        )
    if cursor is not None:
        after_value, after = _read_stock_cursor(cursor, sort, order)
    async with runtime.engine.connect() as conn:
        rows = await list_stock(
            conn,
            merchant_id,
            location=location,
            after_sku=after,
            limit=limit,
            available_at_most=available_at_most,
            sku_prefix=sku_prefix,
            sort=sort,
            descending=order == "desc",
            after_value=after_value,
        )
    items = [StockOut.of(row) for row in rows]
    full = len(items) == limit
    return StockPage(
        items=items,
        next_after=items[-1].sku if full and sort == "sku" else None,
        next_cursor=_stock_cursor(sort, order, items[-1]) if full else None,
    )


class LedgerEntryOut(BaseModel):
    id: int
    kind: str = Field(
        description="order_placed, order_cancelled, order_shipped, order_returned, snapshot, snapshot_stale, adjustment"
    )
    causation_id: str = Field(description="What caused the entry; unique per merchant")
    quantity: int
    delta_on_hand: int
    delta_reserved: int
    version: int = Field(description="The SKU's version after the entry")
    occurred_at: datetime
    recorded_at: datetime
    event_id: uuid.UUID | None
    reason: str | None
    actor: str | None


class LedgerPage(BaseModel):
    entries: list[LedgerEntryOut]
    next_after: int | None


# Declared before GET /v1/stock/{sku}: the SKU path takes "/", so ".../ledger" must match first.
@router.get("/stock/{sku:path}/ledger", response_model=LedgerPage, tags=["stock"])
async def get_ledger(
    sku: SkuInPath,
    runtime: RuntimeDep,
    merchant_id: MerchantId,
    location: Location = DEFAULT_LOCATION,
    after: Annotated[NonNegativeInt64 | None, Query(description="Last entry id of the previous page")] = None,
    limit: Limit = 100,
    order: Literal["asc", "desc"] = "asc",
) -> LedgerPage:
    """The SKU's ledger entries, oldest first (or newest first with order=desc), paged."""
    async with runtime.engine.connect() as conn:
        rows = await ledger_page(conn, (merchant_id, sku, location), after_id=after, limit=limit, order=order)
    entries = [LedgerEntryOut.model_validate(row, from_attributes=True) for row in rows]
    return LedgerPage(entries=entries, next_after=entries[-1].id if len(entries) == limit else None)


@router.get("/stock/{sku:path}", response_model=StockOut, tags=["stock"])
async def get_stock(
    sku: SkuInPath, runtime: RuntimeDep, merchant_id: MerchantId, location: Location = DEFAULT_LOCATION
) -> StockOut:
    """One SKU's stock. A SKU that ends in `/ledger` is read from the list (`GET /v1/stock?after=`)."""
    async with runtime.engine.connect() as conn:
        row = await read_stock(conn, (merchant_id, sku, location))
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no stock for this SKU")
    return StockOut.of(row)


class OversellOut(BaseModel):
    oversell_id: uuid.UUID
    sku: str
    location: str
    version: int
    available: int = Field(description="Available right after the oversell (negative)")
    oversold: int = Field(description="Units sold beyond what was available")
    causation_id: str
    detected_at: datetime
    resolved_at: datetime | None = Field(description="When available was back at 0 or more")


@router.get("/oversells", response_model=list[OversellOut], tags=["stock"])
async def get_oversells(
    runtime: RuntimeDep,
    merchant_id: MerchantId,
    status_: Annotated[Literal["open", "resolved", "all"], Query(alias="status")] = "open",
    sku: Annotated[Sku | None, Query()] = None,
    limit: Limit = 100,
) -> list[OversellOut]:
    """Oversells, newest first: open ones until available is back at zero or more."""
    async with runtime.engine.connect() as conn:
        rows = await list_oversells(conn, merchant_id, status=status_, sku=sku, limit=limit)
    return [OversellOut.model_validate(row, from_attributes=True) for row in rows]
