"""The stock-ledger's REST API: merchants, stock snapshots, current stock."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, HTTPException, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field

from stocksync_common.auth import AdminOnly, MerchantId, issue_api_key
from stocksync_common.contracts import DEFAULT_LOCATION
from stocksync_common.runtime import Runtime

from stock_ledger.adapters.tables import merchants
from stock_ledger.service_layer.ledger import SnapshotLine, apply_snapshot, read_stock

router = APIRouter(prefix="/v1")


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


class MerchantIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)


class MerchantOut(BaseModel):
    merchant_id: uuid.UUID
    name: str
    api_key: str = Field(description="Shown once; send it as the X-API-Key header")


@router.post("/merchants", status_code=status.HTTP_201_CREATED, response_model=MerchantOut, tags=["merchants"])
async def create_merchant(body: MerchantIn, request: Request, _: AdminOnly) -> MerchantOut:
    runtime = _runtime(request)
    merchant_id = uuid.uuid4()
    async with runtime.engine.begin() as conn:
        await conn.execute(sa.insert(merchants).values(merchant_id=merchant_id, name=body.name))
    key = issue_api_key(runtime.settings.api_key_secret.get_secret_value(), merchant_id)
    return MerchantOut(merchant_id=merchant_id, name=body.name, api_key=key)


class SnapshotItem(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sku: str = Field(min_length=1, max_length=200)
    on_hand: int = Field(ge=0)
    location: str = Field(DEFAULT_LOCATION, min_length=1, max_length=100)


class SnapshotIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[SnapshotItem] = Field(min_length=1, max_length=10_000)


class StockOut(BaseModel):
    sku: str
    location: str
    on_hand: int
    reserved: int
    available: int
    version: int
    updated_at: datetime


class SnapshotResult(BaseModel):
    snapshot_id: uuid.UUID
    applied: int
    items: list[StockOut]


@router.post("/stock/snapshots", response_model=SnapshotResult, tags=["stock"])
async def post_snapshot(body: SnapshotIn, request: Request, merchant_id: MerchantId) -> SnapshotResult:
    runtime = _runtime(request)
    skus = [(item.sku, item.location) for item in body.items]
    if len(set(skus)) != len(skus):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, "items: a SKU appears twice in one snapshot")
    snapshot_id = uuid.uuid4()
    changed = await apply_snapshot(
        runtime.engine, merchant_id, snapshot_id,
        [SnapshotLine(item.sku, item.on_hand, item.location) for item in body.items],
    )
    runtime.wake_relay()
    return SnapshotResult(
        snapshot_id=snapshot_id,
        applied=len(changed),
        items=[
            StockOut(sku=e.sku, location=e.location, on_hand=e.on_hand, reserved=e.reserved,
                     available=e.available, version=e.version, updated_at=e.occurred_at)
            for e in changed
        ],
    )


@router.get("/stock/{sku}", response_model=StockOut, tags=["stock"])
async def get_stock(
    sku: str, request: Request, merchant_id: MerchantId,
    location: Annotated[str, Query(max_length=100)] = DEFAULT_LOCATION,
) -> StockOut:
    async with _runtime(request).engine.connect() as conn:
        row = await read_stock(conn, (merchant_id, sku, location))
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no stock for SKU {sku!r}")
    return StockOut(
        sku=row.sku, location=row.location, on_hand=row.on_hand, reserved=row.reserved,
        available=row.on_hand - row.reserved, version=row.version, updated_at=row.updated_at,
    )
