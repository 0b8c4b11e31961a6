"""A merchant's API keys: create (shown once), list, revoke, rotate; and the internal
endpoint the other services verify presented keys with (not routed by the gateway or the
Ingress: docs/SECURITY.md)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field

from stocksync_common.auth import VERIFY_PATH, MerchantId
from stocksync_common.bounds import Label
from stocksync_common.contracts import utcnow
from stocksync_common.errors import error_responses

from stock_ledger.adapters.api_key_store import ApiKeyStore, StoredKey

router = APIRouter(prefix="/v1/api-keys", tags=["api keys"])
internal = APIRouter(include_in_schema=False)

MAX_GRACE_S = 7 * 86_400
KeyIdInPath = Annotated[
    str, Path(pattern=r"^[0-9a-f]{16}$", description="The key's public id", examples=["3f9a0c1e5b7d2a64"])
]


def _store(request: Request) -> ApiKeyStore:
    store: ApiKeyStore = request.app.state.api_key_store
    return store


def _forget_cached_answers(request: Request) -> None:
    """This instance refuses a revoked key at once; the others within their cache's life."""
    request.app.state.api_keys.clear()


class ApiKeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Label = Field(description="What the key is for (shown in the list)", examples=["ERP nightly import"])


class RotateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    grace_period_s: int = Field(
        3600,
        ge=0,
        le=MAX_GRACE_S,
        description="How long the old key stays valid, in seconds (at most 7 days); 0 revokes it at once",
    )


class ApiKeyOut(BaseModel):
    key_id: str = Field(description="The key's public id: the part after `ssk2_` (legacy keys: the third part)")
    prefix: str = Field(description="How the key starts, to recognise it", examples=["ssk2_3f9a0c1e5b7d2a64_"])
    name: str
    legacy: bool = Field(description="An HMAC key issued before stored keys (docs/SECURITY.md: rotate it)")
    state: str = Field(description="active, expiring (rotated, valid until expires_at), expired or revoked")
    created_at: datetime
    last_used_at: datetime | None = Field(description="Updated at most once a minute")
    expires_at: datetime | None
    revoked_at: datetime | None
    replaced_by: str | None = Field(description="The key that replaced it by a rotation")

    @classmethod
    def of(cls, key: StoredKey, now: datetime) -> ApiKeyOut:
        if key.revoked_at is not None:
            state = "revoked"
        elif key.expires_at is not None:
            state = "expiring" if key.expires_at > now else "expired"
        else:
            state = "active"
        prefix = f"ssk_<merchant>_{key.key_id}_" if key.legacy else f"ssk2_{key.key_id}_"
        return cls(
            key_id=key.key_id,
            prefix=prefix,
            name=key.name,
            legacy=key.legacy,
            state=state,
            created_at=key.created_at,
            last_used_at=key.last_used_at,
            expires_at=key.expires_at,
            revoked_at=key.revoked_at,
            replaced_by=key.replaced_by,
        )


class ApiKeyCreated(ApiKeyOut):
    api_key: str = Field(description="The key itself: shown once, send it as the X-API-Key header")


class ApiKeyPage(BaseModel):
    items: list[ApiKeyOut]
    next_after: str | None = Field(description="Pass as `after` for the next page; null on the last page")


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ApiKeyCreated)
async def create_api_key(body: ApiKeyIn, request: Request, merchant_id: MerchantId) -> ApiKeyCreated:
    """A new key for the calling merchant. The answer is the only time the key is shown."""
    stored, key = await _store(request).create(merchant_id, body.name)
    return ApiKeyCreated(**ApiKeyOut.of(stored, utcnow()).model_dump(), api_key=key)


@router.get("", response_model=ApiKeyPage)
async def list_api_keys(
    request: Request,
    merchant_id: MerchantId,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    after: Annotated[
        str | None, Query(pattern=r"^[0-9a-f]{16}$", description="Last key id of the previous page")
    ] = None,
) -> ApiKeyPage:
    """The merchant's keys, newest first, revoked ones included; never a key itself."""
    keys = await _store(request).list(merchant_id, limit, after)
    now = utcnow()
    return ApiKeyPage(
        items=[ApiKeyOut.of(key, now) for key in keys], next_after=keys[-1].key_id if len(keys) == limit else None
    )


@router.post(
    "/{key_id}/revoke",
    response_model=ApiKeyOut,
    responses=error_responses(
        404, 409, e404="No such active key for this merchant", e409="It is the merchant's last active key"
    ),
)
async def revoke_api_key(request: Request, merchant_id: MerchantId, key_id: KeyIdInPath) -> ApiKeyOut:
    """Revokes a key: refused on every service within API_KEY_CACHE_TTL_S seconds. The
    merchant's last active key cannot be revoked (create another first)."""
    revoked = await _store(request).revoke(merchant_id, key_id)
    if revoked is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such active API key")
    if revoked is False:
        raise HTTPException(status.HTTP_409_CONFLICT, "the merchant's last active API key: create another first")
    assert isinstance(revoked, StoredKey)
    _forget_cached_answers(request)
    return ApiKeyOut.of(revoked, utcnow())


@router.post(
    "/{key_id}/rotate",
    status_code=status.HTTP_201_CREATED,
    response_model=ApiKeyCreated,
    responses=error_responses(404, e404="No such active key for this merchant"),
)
async def rotate_api_key(
    request: Request, merchant_id: MerchantId, key_id: KeyIdInPath, body: RotateIn | None = None
) -> ApiKeyCreated:
    """A new key (shown once) replacing this one, which stays valid for `grace_period_s`
    (default one hour; 0 revokes it at once)."""
    grace = timedelta(seconds=(body or RotateIn()).grace_period_s)
    rotated = await _store(request).rotate(merchant_id, key_id, grace)
    if rotated is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such active API key")
    stored, key = rotated
    _forget_cached_answers(request)
    return ApiKeyCreated(**ApiKeyOut.of(stored, utcnow()).model_dump(), api_key=key)


# ---- internal ---------------------------------------------------------------------------


class VerifyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    api_key: str = Field(max_length=200)


class VerifyOut(BaseModel):
    merchant_id: uuid.UUID
    key_id: str


@internal.post(VERIFY_PATH, response_model=VerifyOut)
async def verify_api_key(body: VerifyIn, request: Request) -> VerifyOut:
    """For the other services (stocksync_common.auth.LedgerKeyLookup): 200 with the owner
    of a valid key, 404 for anything else. Straight from the table, no cache: the caller caches."""
    owner = await _store(request).verify(body.api_key)
    if owner is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such valid API key")
    return VerifyOut(merchant_id=owner.merchant_id, key_id=owner.key_id)
