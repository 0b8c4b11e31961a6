"""The channel-publisher's REST API: connections, their health, pause and drift, and the push history."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.exceptions import RequestValidationError
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, HttpUrl, ValidationError

from stocksync_common.auth import MerchantId
from stocksync_common.bounds import (
    INT64_MAX,
    SKU_MAX_LENGTH,
    Label,
    NonNegativeInt64,
    Sku,
    Timestamp,
    is_valid_sku,
    no_control_characters,
    storable_json,
)
from stocksync_common.channel_hosts import url_refusal
from stocksync_common.contracts import DEFAULT_LOCATION, ChannelType, LocationPriority
from stocksync_common.errors import error_responses
from stocksync_common.runtime import Runtime, RuntimeDep

from channel_publisher.adapters.channels.shopify import SUPPORTED_API_VERSIONS
from channel_publisher.config import PublisherSettings
from channel_publisher.domain.channels import CHANNELS, ConnectionSettings
from channel_publisher.service_layer.connection_adapters import AdapterSource
from channel_publisher.service_layer.connections import (
    add_webhook_secret,
    create_connection,
    drift_findings_of,
    is_merchants,
    merchant_connections,
    pause_connection,
    pending_pushes_of,
    resume_connection,
    retire_previous_webhook_secrets,
    set_connection_locations,
    unmapped_skus_of,
)
from channel_publisher.service_layer.drainer import Drainer
from channel_publisher.service_layer.drift import DriftCheckUnsupported, check_drift
from channel_publisher.service_layer.health_report import connection_health
from channel_publisher.service_layer.push_history import PushFilter, published_quantities, push_history
from channel_publisher.service_layer.resync import resync_connection

router = APIRouter(prefix="/v1")

WebhookSecret = Annotated[str, Field(min_length=8, max_length=500), AfterValidator(no_control_characters)]
StorableObject = Annotated[dict[str, Any], AfterValidator(storable_json)]


class ListingIn(BaseModel):
    """A SKU and its ids on the channel; which ids depends on the channel type."""

    model_config = ConfigDict(extra="allow")
    sku: Sku
    location: Label = DEFAULT_LOCATION


class ConnectionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: ChannelType
    name: Label
    base_url: HttpUrl = Field(description="The channel API's base URL (a sandbox can stand in for the real one)")
    credentials: StorableObject = Field(description="Channel API credentials; never returned by the API")
    webhook_secret: WebhookSecret | None = Field(
        None, description="Secret that signs the channel's order webhooks; never returned"
    )
    inbound: StorableObject = Field(default_factory=dict, description="Inbound settings (Amazon api_key, Mirakl poll)")
    listings: list[ListingIn] = Field(default_factory=list, max_length=100_000)
    locations: LocationPriority = Field(
        (DEFAULT_LOCATION,),
        description="The stock locations this channel sells from, first choice first (at most 50, no repeats): "
        "orders reserve at the first that has the stock, the channel is shown the sum of their available "
        "(Shopify: one quantity per location)",
    )
    settings: ConnectionSettings = Field(
        default_factory=ConnectionSettings, description="Limits, e.g. batch_limit; api_version for Shopify"
    )


def _validated(body: ConnectionIn) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """Check credentials, inbound settings and listings against the channel type's models."""
    spec = CHANNELS[body.type]
    errors: list[dict[str, Any]] = []

    def check(model: type[BaseModel], value: dict[str, Any], loc: list[str | int]) -> dict[str, Any]:
        try:
            return model.model_validate(value).model_dump(mode="json", exclude_none=True)
        except ValidationError as exc:
            errors.extend({"loc": ["body", *loc, *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in exc.errors())
            return {}

    credentials = check(spec.credentials, body.credentials, ["credentials"])
    settings = body.settings.model_dump(mode="json", exclude_none=True)
    inbound = check(spec.inbound, body.inbound, ["inbound"])
    listing_rows = []
    for index, listing in enumerate(body.listings):
        external = check(spec.listing, listing.model_extra or {}, ["listings", index])
        listing_rows.append({"sku": listing.sku, "location": listing.location, "external": external})
    if spec.webhook_secret_required and not body.webhook_secret:
        errors.append(
            {"loc": ["body", "webhook_secret"], "msg": f"required for {body.type} connections", "type": "missing"}
        )
    if body.type == "shopify" and body.settings.api_version not in (None, *SUPPORTED_API_VERSIONS):
        errors.append(
            {
                "loc": ["body", "settings", "api_version"],
                "msg": f"Shopify API version {body.settings.api_version!r} is not spoken by Stocksync; "
                f"supported: {', '.join(SUPPORTED_API_VERSIONS)}",
                "type": "value_error",
            }
        )
    skus = [(item.sku, item.location) for item in body.listings]
    if len(set(skus)) != len(skus):
        errors.append({"loc": ["body", "listings"], "msg": "a SKU is mapped twice", "type": "value_error"})
    if errors:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, errors)
    return credentials, inbound, listing_rows, settings


async def _refuse_non_public_hosts(runtime: Runtime, base_url: HttpUrl, credentials: dict[str, Any]) -> None:
    """Every URL Stocksync will call for the connection must reach a public address
    (stocksync_common.channel_hosts: server-side request forgery); a 422 names the field."""
    allowed = runtime.settings.private_channel_hosts_allowed
    urls: list[tuple[list[str | int], str]] = [(["body", "base_url"], str(base_url))]
    if isinstance(credentials.get("token_url"), str):
        urls.append((["body", "credentials", "token_url"], credentials["token_url"]))
    errors = [
        {"loc": loc, "msg": f"Stocksync calls public addresses only: {reason}", "type": "value_error"}
        for loc, url in urls
        if (reason := await url_refusal(url, allowed)) is not None
    ]
    if errors:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, errors)


class ConnectionOut(BaseModel):
    connection_id: uuid.UUID
    type: str
    name: str
    base_url: str
    active: bool
    paused: bool
    pause_reason: str | None
    resume_at: datetime | None = Field(description="When a paused connection tries again by itself")
    listings: int
    locations: list[str] = Field(description="The stock locations it sells from, first choice first")
    webhook_path: str
    created_at: datetime


def _connection_view(row: Any) -> ConnectionOut:
    return ConnectionOut(
        connection_id=row.connection_id,
        type=row.channel_type,
        name=row.name,
        base_url=row.base_url,
        active=row.active,
        paused=row.paused_at is not None,
        pause_reason=row.pause_reason,
        resume_at=row.resume_at,
        listings=row.listing_count,
        locations=list(row.locations),
        webhook_path=f"/webhooks/{row.channel_type}/{row.connection_id}",
        created_at=row.created_at,
    )


async def _connection_out(runtime: Runtime, merchant_id: uuid.UUID, connection_id: uuid.UUID) -> ConnectionOut:
    rows = await merchant_connections(runtime.engine, merchant_id, connection_id)
    if not rows:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such connection")
    return _connection_view(rows[0])


@router.post("/connections", status_code=status.HTTP_201_CREATED, response_model=ConnectionOut, tags=["connections"])
async def post_connection(body: ConnectionIn, runtime: RuntimeDep, merchant_id: MerchantId) -> ConnectionOut:
    credentials, inbound, listing_rows, settings = _validated(body)
    await _refuse_non_public_hosts(runtime, body.base_url, credentials)
    connection_id = await create_connection(
        runtime.units,
        merchant_id=merchant_id,
        channel_type=body.type,
        name=body.name,
        base_url=str(body.base_url),
        credentials=credentials,
        webhook_secrets=[body.webhook_secret] if body.webhook_secret else [],
        settings=settings,
        inbound=inbound,
        listing_rows=listing_rows,
        locations=body.locations,
    )
    return await _connection_out(runtime, merchant_id, connection_id)


@router.get("/connections", response_model=list[ConnectionOut], tags=["connections"])
async def list_connections(runtime: RuntimeDep, merchant_id: MerchantId) -> list[ConnectionOut]:
    return [_connection_view(row) for row in await merchant_connections(runtime.engine, merchant_id)]


@router.get("/connections/{connection_id}", response_model=ConnectionOut, tags=["connections"])
async def get_connection(connection_id: uuid.UUID, runtime: RuntimeDep, merchant_id: MerchantId) -> ConnectionOut:
    return await _connection_out(runtime, merchant_id, connection_id)


class LocationsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    locations: LocationPriority = Field(
        description="The stock locations this channel sells from, first choice first (1 to 50, no repeats)"
    )


@router.put("/connections/{connection_id}/locations", response_model=ConnectionOut, tags=["connections"])
async def put_locations(
    connection_id: uuid.UUID, body: LocationsIn, runtime: RuntimeDep, merchant_id: MerchantId
) -> ConnectionOut:
    """Replace the locations the channel sells from. Orders already placed keep the location
    they reserved at; the channel's quantities are re-evaluated at once."""
    if not await set_connection_locations(runtime.units, merchant_id, connection_id, body.locations):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such connection")
    return await _connection_out(runtime, merchant_id, connection_id)


class WebhookSecretIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    secret: WebhookSecret = Field(description="The new secret; the current one stays valid until retired")


class WebhookSecretsOut(BaseModel):
    connection_id: uuid.UUID
    active_secrets: int = Field(description="How many secrets are accepted now (their values are never returned)")


@router.post("/connections/{connection_id}/webhook-secrets", response_model=WebhookSecretsOut, tags=["connections"])
async def rotate_webhook_secret(
    connection_id: uuid.UUID, body: WebhookSecretIn, runtime: RuntimeDep, merchant_id: MerchantId
) -> WebhookSecretsOut:
    """Start a rotation: the new secret and the current one are both accepted (overlap)."""
    count = await add_webhook_secret(runtime.units, merchant_id, connection_id, body.secret)
    if count is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such connection")
    return WebhookSecretsOut(connection_id=connection_id, active_secrets=count)


@router.delete(
    "/connections/{connection_id}/webhook-secrets/previous", response_model=WebhookSecretsOut, tags=["connections"]
)
async def retire_webhook_secret(
    connection_id: uuid.UUID, runtime: RuntimeDep, merchant_id: MerchantId
) -> WebhookSecretsOut:
    """End a rotation: only the newest secret is accepted from now on."""
    count = await retire_previous_webhook_secrets(runtime.units, merchant_id, connection_id)
    if count is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such connection")
    return WebhookSecretsOut(connection_id=connection_id, active_secrets=count)


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
    reason: str | None = Field(None, description="Why an adaptive buffer hid what it hid (one line per such rule)")


def _valid_sku(value: str | None) -> str | None:
    if value is not None and not is_valid_sku(value):
        raise ValueError(f"a SKU is 1 to {SKU_MAX_LENGTH} characters without control characters")
    return value


SkuQuery = Annotated[str | None, Query(max_length=SKU_MAX_LENGTH), AfterValidator(_valid_sku)]


@router.get("/pushes", response_model=list[PushOut], tags=["pushes"])
async def list_pushes(
    runtime: RuntimeDep,
    merchant_id: MerchantId,
    connection_id: uuid.UUID | None = None,
    sku: Annotated[Sku | None, Query()] = None,
    push_status: Annotated[
        Label | None, Query(alias="status", description="accepted, rejected, retrying, unmapped, ...")
    ] = None,
    since: Annotated[Timestamp | None, Query(description="Pushes finished at or after this time")] = None,
    until: Annotated[Timestamp | None, Query(description="Pushes finished before this time")] = None,
    after: Annotated[NonNegativeInt64, Query(description="Return pushes with a larger push_id")] = 0,
    before: Annotated[int | None, Query(ge=1, le=INT64_MAX, description="Return pushes with a smaller push_id")] = None,
    order: Annotated[
        Literal["asc", "desc"], Query(description="By push_id: oldest (asc) or newest (desc) first")
    ] = "asc",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[PushOut]:
    rows = await push_history(
        runtime.engine,
        merchant_id,
        PushFilter(connection_id, sku, push_status, since, until, after, before),
        newest_first=order == "desc",
        limit=limit,
    )
    return [PushOut.model_validate(dict(row._mapping)) for row in rows]


class PublishedOut(BaseModel):
    connection_id: uuid.UUID
    sku: str
    location: str
    quantity: int = Field(description="The newest quantity the channel accepted")
    version: int
    sent_at: datetime
    rule_ids: list[uuid.UUID] = Field(description="Rules that decided the quantity (its accepted push)")


@router.get("/pushes/published", response_model=list[PublishedOut], tags=["pushes"])
async def list_published(
    runtime: RuntimeDep,
    merchant_id: MerchantId,
    sku: Annotated[
        list[str], Query(min_length=1, max_length=500, description="SKUs to look up (repeat the parameter)")
    ],
) -> list[PublishedOut]:
    """The quantity each channel last accepted for these SKUs (one row per connection, SKU and location)."""
    if not all(is_valid_sku(s) for s in sku):
        raise RequestValidationError(
            [
                {
                    "type": "value_error",
                    "loc": ("query", "sku"),
                    "msg": f"a SKU is 1 to {SKU_MAX_LENGTH} characters without control characters",
                    "input": None,
                }
            ]
        )
    rows = await published_quantities(runtime.engine, merchant_id, sku)
    return [PublishedOut.model_validate({**row._mapping, "rule_ids": row.rule_ids or []}) for row in rows]


def _drainer(request: Request) -> Drainer:
    drainer: Drainer = request.app.state.drainer
    return drainer


def _settings(request: Request) -> PublisherSettings:
    settings: PublisherSettings = request.app.state.settings
    return settings


def _adapters(request: Request) -> AdapterSource:
    adapters: AdapterSource = request.app.state.adapters
    return adapters


# What endpoints use besides the runtime (entrypoints/app.py keeps them on the app).
DrainerDep = Annotated[Drainer, Depends(_drainer)]
SettingsDep = Annotated[PublisherSettings, Depends(_settings)]
AdaptersDep = Annotated[AdapterSource, Depends(_adapters)]


class PauseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Annotated[Label, Field(max_length=500)] = "paused by the merchant"


@router.post("/connections/{connection_id}/pause", response_model=ConnectionOut, tags=["connections"])
async def post_pause(
    connection_id: uuid.UUID, runtime: RuntimeDep, merchant_id: MerchantId, body: PauseIn | None = None
) -> ConnectionOut:
    """Stop sending to this channel; quantities keep coalescing until it is resumed."""
    if not await pause_connection(runtime.engine, merchant_id, connection_id, (body or PauseIn()).reason):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such connection")
    return await _connection_out(runtime, merchant_id, connection_id)


@router.post("/connections/{connection_id}/resume", response_model=ConnectionOut, tags=["connections"])
async def post_resume(
    connection_id: uuid.UUID, runtime: RuntimeDep, drainer: DrainerDep, merchant_id: MerchantId
) -> ConnectionOut:
    """End a pause (the merchant's or an automatic one): the newest quantities are sent now."""
    if not await resume_connection(runtime.engine, merchant_id, connection_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such connection")
    drainer.wake()
    return await _connection_out(runtime, merchant_id, connection_id)


class ResyncOut(BaseModel):
    resync_id: uuid.UUID = Field(description="The pushes it queued carry `resync:<resync_id>` as their causation")
    queued: int = Field(description="Listed SKUs queued to be sent again with the quantity the channel last accepted")
    already_pending: int = Field(description="Listed SKUs already waiting to be sent (a newer quantity, or a resync)")
    without_quantity: int = Field(description="Listed SKUs no quantity was ever decided for yet: nothing to send")


@router.post(
    "/connections/{connection_id}/resync",
    response_model=ResyncOut,
    status_code=status.HTTP_202_ACCEPTED,
    tags=["connections"],
    responses=error_responses(404),
)
async def post_resync(
    connection_id: uuid.UUID, runtime: RuntimeDep, drainer: DrainerDep, merchant_id: MerchantId
) -> ResyncOut:
    """Send every listed SKU's current quantity to the channel again (after the channel lost
    or changed them). Idempotent: a SKU already waiting is not queued twice. A paused
    connection sends them when resumed."""
    resync = await resync_connection(runtime.engine, merchant_id, connection_id)
    if resync is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such connection")
    drainer.drain_now([connection_id])
    return ResyncOut(
        resync_id=resync.resync_id,
        queued=resync.queued,
        already_pending=resync.already_pending,
        without_quantity=resync.without_quantity,
    )


class SyncWindowOut(BaseModel):
    p50: float | None
    p95: float | None
    max: float | None


class LastErrorOut(BaseModel):
    sku: str
    status: str
    channel_response: str | None
    finished_at: datetime


class CredentialsHealthOut(BaseModel):
    token_expires_at: datetime | None
    token_refreshed_at: datetime | None
    error: str | None = Field(description="The channel's answer to the last refresh, when it failed")
    failed_at: datetime | None


class DisplayDelayOut(BaseModel):
    p50_s: float
    p95_s: float
    samples: int = Field(description="Measurements in the sliding window")
    measured: bool = Field(description="False while too few samples exist: p50 and p95 are the configured default")


class HealthOut(BaseModel):
    connection_id: uuid.UUID
    status: str = Field(description="ok, failing (calls failing or the credentials refused, not paused yet) or paused")
    since: datetime
    pushes: dict[str, int] = Field(description="Pushes of the last hour by status")
    sync_window_ms: SyncWindowOut
    last_error: LastErrorOut | None
    pending: int
    oldest_pending_since: datetime | None
    consecutive_failures: int
    paused_at: datetime | None
    pause_reason: str | None
    resume_at: datetime | None
    last_drift_check_at: datetime | None
    drift_findings: int = Field(description="SKUs found drifted in the last hour")
    unmapped_skus: int = Field(
        description="SKUs whose stock changed that this connection does not list (GET .../unmapped lists them)"
    )
    credentials: CredentialsHealthOut | None = Field(
        description="The access token obtained from the credentials (channels with expiring tokens)"
    )
    display_delay: DisplayDelayOut = Field(
        description="Time from an order's receipt to the channel showing the new quantity (the adaptive buffer's delay)"
    )


@router.get("/connections/{connection_id}/health", response_model=HealthOut, tags=["connections"])
async def get_health(
    connection_id: uuid.UUID, runtime: RuntimeDep, settings: SettingsDep, merchant_id: MerchantId
) -> HealthOut:
    """The last hour of one connection."""
    health = await connection_health(runtime.engine, merchant_id, connection_id, settings)
    if health is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such connection")
    return HealthOut.model_validate(health)


class PendingOut(BaseModel):
    sku: str
    location: str
    quantity: int
    version: int
    attempts: int
    enqueued_at: datetime
    not_before: datetime | None


def _found(rows: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    if rows is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such connection")
    return rows


@router.get("/connections/{connection_id}/pending", response_model=list[PendingOut], tags=["pushes"])
async def list_pending(
    connection_id: uuid.UUID,
    runtime: RuntimeDep,
    merchant_id: MerchantId,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> list[PendingOut]:
    """Quantities waiting to be sent (only the newest per SKU), oldest first."""
    rows = _found(await pending_pushes_of(runtime.engine, merchant_id, connection_id, limit))
    return [PendingOut.model_validate(row) for row in rows]


class UnmappedSkuOut(BaseModel):
    sku: str
    location: str
    changes: int = Field(description="Stock changes for this SKU the connection could not send")
    first_seen_at: datetime
    last_seen_at: datetime
    last_quantity: int


@router.get("/connections/{connection_id}/unmapped", response_model=list[UnmappedSkuOut], tags=["connections"])
async def list_unmapped(
    connection_id: uuid.UUID,
    runtime: RuntimeDep,
    merchant_id: MerchantId,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    after_sku: Annotated[str, Query(max_length=200)] = "",
) -> list[UnmappedSkuOut]:
    """SKUs whose stock changed that this connection has no listing for, by SKU (page with after_sku)."""
    rows = _found(await unmapped_skus_of(runtime.engine, merchant_id, connection_id, after_sku, limit))
    return [UnmappedSkuOut.model_validate(row) for row in rows]


class DriftFindingOut(BaseModel):
    finding_id: int | None = None
    sku: str
    location: str
    sent_quantity: int
    sent_version: int
    channel_quantity: int | None
    checked_at: datetime


@router.get("/connections/{connection_id}/drift", response_model=list[DriftFindingOut], tags=["connections"])
async def list_drift(
    connection_id: uuid.UUID,
    runtime: RuntimeDep,
    merchant_id: MerchantId,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[DriftFindingOut]:
    """SKUs whose quantity on the channel differed from what Stocksync last sent, newest first."""
    rows = _found(await drift_findings_of(runtime.engine, merchant_id, connection_id, limit))
    return [DriftFindingOut.model_validate(row) for row in rows]


@router.post(
    "/connections/{connection_id}/drift-checks",
    response_model=list[DriftFindingOut],
    tags=["connections"],
    responses=error_responses(409, e409="The channel type cannot read quantities back"),
)
async def post_drift_check(
    connection_id: uuid.UUID,
    runtime: RuntimeDep,
    settings: SettingsDep,
    adapters: AdaptersDep,
    merchant_id: MerchantId,
) -> list[DriftFindingOut]:
    """Read the channel's quantities back now (Shopify, WooCommerce, eBay); return what drifted."""
    if not await is_merchants(runtime.engine, merchant_id, connection_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such connection")
    try:
        findings = await check_drift(runtime.engine, settings, adapters, connection_id)
    except DriftCheckUnsupported as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, f"{exc} cannot read quantities back") from exc
    return [DriftFindingOut.model_validate(f) for f in findings]
