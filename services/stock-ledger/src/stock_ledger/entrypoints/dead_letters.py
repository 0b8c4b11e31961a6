"""The dead-letter API: every service's dead letters, per merchant and for operators, and replay."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, Field

from stocksync_common.auth import AdminOnly, MerchantId
from stocksync_common.bounds import IDENTIFIER_MAX_LENGTH
from stocksync_common.runtime import Runtime, RuntimeDep

from stock_ledger.service_layer.dead_letters import list_dead_letters, replay_dead_letters

router = APIRouter(prefix="/v1", tags=["dead letters"])

TopicFilter = Annotated[
    str | None, Query(max_length=IDENTIFIER_MAX_LENGTH, description="Only dead letters of this topic, e.g. orders.v1")
]
ServiceFilter = Annotated[
    str | None,
    Query(
        alias="service",
        max_length=IDENTIFIER_MAX_LENGTH,
        description="Only dead letters of this consumer group (the service's name, e.g. stock-ledger)",
    ),
]
ReplayedFilter = Annotated[bool | None, Query(description="true: replayed ones only; false: not replayed yet")]
Before = Annotated[uuid.UUID | None, Query(description="`next` of the previous page")]
Limit = Annotated[int, Query(ge=1, le=1000)]

# Enough of the original record to see what was wrong with it; the whole record is kept.
RECORD_PREVIEW_CHARS = 20_000


class DeadLetterOut(BaseModel):
    dead_letter_id: uuid.UUID
    merchant_id: uuid.UUID = Field(description="The nil UUID when the record names no merchant")
    service: str = Field(description="The consumer group that could not apply the event")
    topic: str
    partition: int
    offset: int
    key: str | None
    event_id: uuid.UUID | None = Field(description="None when the record broke its topic's contract")
    error: str
    record: str = Field(description="The original record as text (its first 20,000 characters)")
    dead_lettered_at: datetime
    replayed_at: datetime | None = Field(description="When it was last put back on its topic")
    replay_count: int

    @classmethod
    def of(cls, row: Any) -> DeadLetterOut:
        return cls(
            dead_letter_id=row.dead_letter_id,
            merchant_id=row.merchant_id,
            service=row.consumer_group,
            topic=row.topic,
            partition=row.partition,
            offset=row.offset,
            key=row.key.decode(errors="replace") if row.key is not None else None,
            event_id=row.event_id,
            error=row.error,
            record=row.value.decode(errors="replace")[:RECORD_PREVIEW_CHARS],
            dead_lettered_at=row.dead_lettered_at,
            replayed_at=row.replayed_at,
            replay_count=row.replay_count,
        )


class DeadLetterPage(BaseModel):
    dead_letters: list[DeadLetterOut]
    next: uuid.UUID | None = Field(description="Pass as `before` for the next page; None on the last page")


class DeadLetterReplayOut(BaseModel):
    replayed: list[uuid.UUID] = Field(description="Dead letters put back on their topics")


async def _page(runtime: Runtime, merchant_id: uuid.UUID | None, limit: int, **filters: Any) -> DeadLetterPage:
    async with runtime.engine.connect() as conn:
        rows = await list_dead_letters(conn, merchant_id=merchant_id, limit=limit, **filters)
    items = [DeadLetterOut.of(row) for row in rows]
    return DeadLetterPage(dead_letters=items, next=items[-1].dead_letter_id if len(items) == limit else None)


async def _replay(
    runtime: Runtime, merchant_id: uuid.UUID | None, dead_letter_id: uuid.UUID | None, topic: str | None
) -> DeadLetterReplayOut:
    ids = await replay_dead_letters(runtime.units, merchant_id=merchant_id, dead_letter_id=dead_letter_id, topic=topic)
    if dead_letter_id is not None and not ids:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such dead letter")
    return DeadLetterReplayOut(replayed=ids)


@router.get("/dead-letters", response_model=DeadLetterPage)
async def get_dead_letters(
    runtime: RuntimeDep,
    merchant_id: MerchantId,
    topic: TopicFilter = None,
    service: ServiceFilter = None,
    replayed: ReplayedFilter = None,
    before: Before = None,
    limit: Limit = 100,
) -> DeadLetterPage:
    """The merchant's events that a service could not apply, newest first."""
    return await _page(
        runtime, merchant_id, limit, topic=topic, consumer_group=service, replayed=replayed, before=before
    )


@router.post("/dead-letters/replay", response_model=DeadLetterReplayOut, status_code=status.HTTP_202_ACCEPTED)
async def replay_all_dead_letters(
    runtime: RuntimeDep, merchant_id: MerchantId, topic: TopicFilter = None
) -> DeadLetterReplayOut:
    """Put every dead letter of the merchant not replayed yet back on its topic (after a fix)."""
    return await _replay(runtime, merchant_id, None, topic)


@router.post(
    "/dead-letters/{dead_letter_id}/replay", response_model=DeadLetterReplayOut, status_code=status.HTTP_202_ACCEPTED
)
async def replay_dead_letter(
    runtime: RuntimeDep, merchant_id: MerchantId, dead_letter_id: uuid.UUID
) -> DeadLetterReplayOut:
    """Put one dead letter back on its topic; applied once whatever the number of replays."""
    return await _replay(runtime, merchant_id, dead_letter_id, None)


@router.get("/admin/dead-letters", response_model=DeadLetterPage)
async def get_all_dead_letters(
    runtime: RuntimeDep,
    _: AdminOnly,
    merchant: Annotated[uuid.UUID | None, Query(alias="merchant_id")] = None,
    topic: TopicFilter = None,
    service: ServiceFilter = None,
    replayed: ReplayedFilter = None,
    before: Before = None,
    limit: Limit = 100,
) -> DeadLetterPage:
    """Every merchant's dead letters (admin token), including records that name no merchant."""
    return await _page(runtime, merchant, limit, topic=topic, consumer_group=service, replayed=replayed, before=before)


@router.post(
    "/admin/dead-letters/{dead_letter_id}/replay",
    response_model=DeadLetterReplayOut,
    status_code=status.HTTP_202_ACCEPTED,
)
async def replay_any_dead_letter(runtime: RuntimeDep, _: AdminOnly, dead_letter_id: uuid.UUID) -> DeadLetterReplayOut:
    """Replay any merchant's dead letter (admin token)."""
    return await _replay(runtime, None, dead_letter_id, None)
