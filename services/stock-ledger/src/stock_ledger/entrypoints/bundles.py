"""The bundles API: `POST/GET/PUT/DELETE /v1/bundles` (service_layer/bundles.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Response, status
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from stocksync_common.auth import MerchantId
from stocksync_common.bounds import Sku
from stocksync_common.errors import error_responses
from stocksync_common.runtime import RuntimeDep

from stock_ledger.domain.bundles import COMPONENTS_MAX, QUANTITY_PER_BUNDLE_MAX, BundleRefused
from stock_ledger.service_layer.bundles import BundleExists, BundleNotFound, list_bundles, read_bundle, save_bundle

router = APIRouter(prefix="/v1", tags=["bundles"])

BundleSku = Annotated[Sku, Path(description="The bundle's SKU, percent-encoded")]


class ComponentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sku: Sku
    quantity: Annotated[int, Field(ge=1, le=QUANTITY_PER_BUNDLE_MAX, description="Units of this SKU in one bundle")]


def _distinct(components: list[ComponentIn]) -> list[ComponentIn]:
    if len({c.sku for c in components}) != len(components):
        raise ValueError("a component is listed twice")
    return components


Components = Annotated[list[ComponentIn], Field(min_length=1, max_length=COMPONENTS_MAX), AfterValidator(_distinct)]


class BundleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sku: Sku
    components: Components


class DefinitionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    components: Components


class ComponentOut(BaseModel):
    sku: str
    quantity: int


class BundleOut(BaseModel):
    sku: str
    components: list[ComponentOut]
    available: dict[str, int] = Field(
        default_factory=dict,
        description="Per location: whole bundles the components make there (min over components of "
        "floor(available / quantity)); empty in lists",
    )


def _refused(exc: BundleRefused, field: str) -> HTTPException:
    return HTTPException(
        status.HTTP_422_UNPROCESSABLE_ENTITY, [{"loc": ["body", field], "msg": str(exc), "type": "value_error"}]
    )


def _out(sku: str, components: dict[str, int], available: dict[str, int]) -> BundleOut:
    return BundleOut(
        sku=sku,
        components=[ComponentOut(sku=c, quantity=q) for c, q in sorted(components.items())],
        available=available,
    )


@router.post(
    "/bundles",
    status_code=status.HTTP_201_CREATED,
    response_model=BundleOut,
    responses=error_responses(409, e409="The bundle exists (PUT replaces it)"),
)
async def post_bundle(body: BundleIn, runtime: RuntimeDep, merchant_id: MerchantId) -> BundleOut:
    """Define a bundle: its available at each location follows its components' from now on."""
    definition = {c.sku: c.quantity for c in body.components}
    try:
        saved = await save_bundle(
            runtime.units(),
            merchant_id,
            body.sku,
            definition,
            create_only=True,
        )
    except BundleExists as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    except BundleRefused as exc:
        raise _refused(exc, "components") from exc
    return _out(body.sku, definition, saved.available)


IMPORT_MAX = 1000


class BundlesImportIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    bundles: list[BundleIn] = Field(min_length=1, max_length=IMPORT_MAX)


class RefusedBundleOut(BaseModel):
    index: int = Field(description="Position in `bundles`, from 0")
    sku: str
    message: str


class BundlesImportOut(BaseModel):
    saved: int = Field(description="Bundles defined or replaced")
    refused: list[RefusedBundleOut] = Field(description="Bundles that break a rule of bundles; nothing of them saved")


@router.post("/bundles/import", response_model=BundlesImportOut)
async def import_bundles(body: BundlesImportIn, runtime: RuntimeDep, merchant_id: MerchantId) -> BundlesImportOut:
    """Define or replace up to 1,000 bundles (the import format: the same objects as
    `POST /v1/bundles`). Each is saved on its own, in order: a bundle refused changes
    nothing and does not stop the others. A SKU listed twice is refused the second time."""
    saved, refused, seen = 0, [], set()
    for index, bundle in enumerate(body.bundles):
        if bundle.sku in seen:
            refused.append(RefusedBundleOut(index=index, sku=bundle.sku, message="listed twice in this import"))
            continue
        seen.add(bundle.sku)
        try:
            await save_bundle(runtime.units(), merchant_id, bundle.sku, {c.sku: c.quantity for c in bundle.components})
        except BundleRefused as exc:
            refused.append(RefusedBundleOut(index=index, sku=bundle.sku, message=str(exc)))
        else:
            saved += 1
    return BundlesImportOut(saved=saved, refused=refused)


@router.put(
    "/bundles/{sku:path}",
    response_model=BundleOut,
    responses={201: {"model": BundleOut, "description": "The bundle was created"}},
)
async def put_bundle(
    sku: BundleSku, body: DefinitionIn, runtime: RuntimeDep, response: Response, merchant_id: MerchantId
) -> BundleOut:
    """Define or replace a bundle's components. Order lines already placed keep what they reserved."""
    definition = {c.sku: c.quantity for c in body.components}
    try:
        saved = await save_bundle(runtime.units(), merchant_id, sku, definition)
    except BundleRefused as exc:
        raise _refused(exc, "components") from exc
    if saved.created:
        response.status_code = status.HTTP_201_CREATED
    return _out(sku, definition, saved.available)


@router.delete("/bundles/{sku:path}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
async def delete_bundle(sku: BundleSku, runtime: RuntimeDep, merchant_id: MerchantId) -> Response:
    """Delete a bundle: its available becomes 0 everywhere (channels stop selling it); order
    lines already placed keep their components reserved until they move."""
    try:
        await save_bundle(runtime.units(), merchant_id, sku, None)
    except BundleNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such bundle") from exc
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/bundles", response_model=list[BundleOut])
async def get_bundles(
    runtime: RuntimeDep,
    merchant_id: MerchantId,
    after: Annotated[Sku | None, Query(description="List the bundles after this SKU (byte order)")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[BundleOut]:
    found = await list_bundles(runtime.units(), merchant_id, after or "", limit)
    return [_out(b.sku, b.components, {}) for b in found]


@router.get("/bundles/{sku:path}", response_model=BundleOut)
async def get_bundle(sku: BundleSku, runtime: RuntimeDep, merchant_id: MerchantId) -> BundleOut:
    try:
        bundle, available = await read_bundle(runtime.units(), merchant_id, sku)
    except BundleNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such bundle") from exc
    return _out(bundle.sku, bundle.components, available)
