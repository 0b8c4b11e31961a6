"""`GET /v1/locations`: the merchant's stock locations and the connections selling from each."""

from __future__ import annotations

import uuid

from fastapi import APIRouter
from pydantic import BaseModel, Field

from stocksync_common.auth import MerchantId
from stocksync_common.runtime import RuntimeDep

from stock_ledger.adapters.connection_locations_store import merchant_locations

router = APIRouter(prefix="/v1", tags=["stock"])


class SellingConnectionOut(BaseModel):
    connection_id: uuid.UUID
    rank: int = Field(description="Where this location is in the connection's list: 1 is its first choice")


class LocationOut(BaseModel):
    location: str
    connections: list[SellingConnectionOut] = Field(
        description="The connections selling from this location, as the stock-ledger last heard of them"
    )


@router.get("/locations", response_model=list[LocationOut])
async def get_locations(runtime: RuntimeDep, merchant_id: MerchantId) -> list[LocationOut]:
    """Every location the merchant has stock at or a connection sells from (set a connection's
    list with `PUT /v1/connections/{id}/locations`)."""
    async with runtime.units() as uow:
        found = await merchant_locations(uow.connection, merchant_id)
    return [
        LocationOut(
            location=use.location,
            connections=[SellingConnectionOut(connection_id=c, rank=r) for c, r in use.connections.items()],
        )
        for use in found
    ]
