"""The channel-publisher's REST API: connections and the push history."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, HTTPException, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field, HttpUrl

from stocksync_common.auth import MerchantId
from stocksync_common.contracts import DEFAULT_LOCATION
from stocksync_common.runtime import Runtime

from channel_publisher.adapters.tables import connections, listings, pushes
from channel_publisher.service_layer.connections import create_connection

router = APIRouter(prefix="/v1")


class ShopifyCredentials(BaseModel):
    model_config = ConfigDict(extra="forbid")
    access_token: str = Field(min_length=1)


class ShopifyListing(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sku: str = Field(min_length=1, max_length=200)
    location: str = Field(DEFAULT_LOCATION, min_length=1)
    inventory_item_id: str = Field(pattern=r"^gid://shopify/InventoryItem/\d+$")
    location_id: str = Field(pattern=r"^gid://shopify/Location/\d+$")


class ConnectionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["shopify"]
    name: str = Field(min_length=1, max_length=200)
    base_url: HttpUrl = Field(description="The shop's base URL, e.g. https://my-shop.myshopify.com")
    credentials: ShopifyCredentials
    webhook_secret: str = Field(min_length=8, description="Secret that signs the channel's order webhooks")
    listings: list[ShopifyListing] = Field(default_factory=list, max_length=100_000)
    settings: dict[str, Any] = Field(default_factory=dict, description="Limits, e.g. batch_limit, api_version")


class ConnectionOut(BaseModel):
    connection_id: uuid.UUID
    type: str
    name: str
    base_url: str
    active: bool
    listings: int
    webhook_path: str
    created_at: datetime


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def _connection_out(runtime: Runtime, merchant_id: uuid.UUID, connection_id: uuid.UUID) -> ConnectionOut:
    async with runtime.engine.connect() as conn:
        row = (await conn.execute(
            sa.select(connections).where(connections.c.connection_id == connection_id,
                                         connections.c.merchant_id == merchant_id)
        )).one_or_none()
        if row is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such connection")
        count = (await conn.execute(
            sa.select(sa.func.count()).select_from(listings).where(listings.c.connection_id == connection_id)
        )).scalar_one()
    return ConnectionOut(
        connection_id=row.connection_id, type=row.channel_type, name=row.name, base_url=row.base_url,
        active=row.active, listings=count, webhook_path=f"/webhooks/{row.channel_type}/{row.connection_id}",
        created_at=row.created_at,
    )


@router.post("/connections", status_code=status.HTTP_201_CREATED, response_model=ConnectionOut, tags=["connections"])
async def post_connection(body: ConnectionIn, request: Request, merchant_id: MerchantId) -> ConnectionOut:
    skus = [(item.sku, item.location) for item in body.listings]
    if len(set(skus)) != len(skus):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY,
                            [{"loc": ["body", "listings"], "msg": "a SKU is mapped twice", "type": "value_error"}])
    runtime = _runtime(request)
    connection_id = await create_connection(
        runtime.engine, merchant_id=merchant_id, channel_type=body.type, name=body.name,
        base_url=str(body.base_url), credentials=body.credentials.model_dump(),
        webhook_secrets=[body.webhook_secret], settings=body.settings,
        listing_rows=[
            {"sku": item.sku, "location": item.location,
             "external": {"inventory_item_id": item.inventory_item_id, "location_id": item.location_id}}
            for item in body.listings
        ],
    )
    runtime.wake_relay()
    return await _connection_out(runtime, merchant_id, connection_id)


@router.get("/connections", response_model=list[ConnectionOut], tags=["connections"])
async def list_connections(request: Request, merchant_id: MerchantId) -> list[ConnectionOut]:
    runtime = _runtime(request)
    async with runtime.engine.connect() as conn:
        ids = (await conn.execute(
            sa.select(connections.c.connection_id).where(connections.c.merchant_id == merchant_id)
            .order_by(connections.c.created_at)
        )).scalars().all()
    return [await _connection_out(runtime, merchant_id, cid) for cid in ids]


@router.get("/connections/{connection_id}", response_model=ConnectionOut, tags=["connections"])
async def get_connection(connection_id: uuid.UUID, request: Request, merchant_id: MerchantId) -> ConnectionOut:
    return await _connection_out(_runtime(request), merchant_id, connection_id)


class PushOut(BaseModel):
    push_id: int
    connection_id: uuid.UUID
    sku: str
    location: str
    quantity: int
    version: int
    stock_version: int
    rule_ids: list[uuid.UUID]
    causation_id: str
    status: str
    attempts: int
    channel_response: str | None
    origin_received_at: datetime | None
    finished_at: datetime
    sync_window_ms: float | None


@router.get("/pushes", response_model=list[PushOut], tags=["pushes"])
async def list_pushes(
    request: Request,
    merchant_id: MerchantId,
    connection_id: uuid.UUID | None = None,
    sku: str | None = None,
    push_status: Annotated[str | None, Query(alias="status")] = None,
    after: Annotated[int, Query(ge=0, description="Return pushes with a larger push_id")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[PushOut]:
    query = sa.select(pushes).where(pushes.c.merchant_id == merchant_id, pushes.c.push_id > after)
    if connection_id is not None:
        query = query.where(pushes.c.connection_id == connection_id)
    if sku is not None:
        query = query.where(pushes.c.sku == sku)
    if push_status is not None:
        query = query.where(pushes.c.status == push_status)
    async with _runtime(request).engine.connect() as conn:
        rows = (await conn.execute(query.order_by(pushes.c.push_id).limit(limit))).all()
    return [PushOut.model_validate(dict(row._mapping)) for row in rows]
