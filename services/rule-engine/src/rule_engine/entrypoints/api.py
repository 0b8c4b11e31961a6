"""The rule-engine's REST API: `/v1/rules` (CRUD, history) and `/v1/rules/preview`."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, time
from typing import Annotated, Any, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from stocksync_common.auth import MerchantId, api_key_id
from stocksync_common.bounds import INT64_MAX, QUANTITY_MAX, Identifier, Label, Quantity, Sku
from stocksync_common.contracts import utcnow
from stocksync_common.errors import error_responses
from stocksync_common.runtime import RuntimeDep

from rule_engine.domain.adaptive import MAX_FLOOR_PER_HOUR, MAX_HIDDEN_UNITS, AdaptiveBuffer
from rule_engine.domain.rules import Action, ActionType, AdaptiveActionType, Condition, ConditionOp, Weekday
from rule_engine.service_layer import rule_changes
from rule_engine.service_layer.evaluation import rule_from_row
from rule_engine.service_layer.rule_changes import RuleNotFound, UnknownChannels

router = APIRouter(prefix="/v1", tags=["rules"])

# The quantities a condition and an action are tried on before a rule is saved: the
# extremes of what a rule can see (an earlier rule of the funnel can take a quantity
# below zero or up to a bound). A rule the engine could not evaluate is refused here,
# with the field at fault, instead of stopping the engine when stock changes.
_PROBES = (-QUANTITY_MAX, -1, 0, 1, QUANTITY_MAX)


def _check_evaluates(evaluate: Callable[[int], object]) -> None:
    try:
        results = [evaluate(quantity) for quantity in _PROBES]
    except (ValueError, TypeError, ArithmeticError) as exc:
        raise ValueError(f"the rule cannot be evaluated: {exc}") from None
    if any(isinstance(r, int) and not isinstance(r, bool) and abs(r) > INT64_MAX for r in results):
        raise ValueError("the rule cannot be evaluated: its result would not fit a channel quantity")


# SKUs one rule can list; a larger selection is a product filter's job.
MAX_RULE_SKUS = 10_000


class ConditionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    op: ConditionOp
    value: Quantity | None = None
    upper: Quantity | None = Field(None, description='Inclusive upper bound, for "between"')

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.op != "always" and self.value is None:
            raise ValueError(f"value is required for the condition {self.op!r}")
        if self.op == "between" and (self.upper is None or self.value is None or self.upper < self.value):
            raise ValueError("between needs value <= upper")
        _check_evaluates(Condition(self.op, self.value, self.upper).holds)
        return self


class ActionIn(BaseModel):
    """What a rule does to the quantity. "adaptive" hides the units the SKU is expected to
    sell while the channel's listing is stale (docs/rules.md): it takes `confidence_pct`,
    `minimum`, `maximum` and `floor_per_hour` instead of `value`. Each error names its field."""

    model_config = ConfigDict(extra="forbid")
    type: Literal[ActionType, AdaptiveActionType]
    value: Quantity | None = Field(
        None, validate_default=True, description='The action\'s number; required except for "adaptive"'
    )
    confidence_pct: float | None = Field(
        None, ge=50, le=99.99, description="adaptive: the chance that the hidden units cover the sales meanwhile"
    )
    minimum: int | None = Field(None, ge=0, le=MAX_HIDDEN_UNITS, description="adaptive: units always hidden")
    maximum: int | None = Field(
        None, ge=0, le=MAX_HIDDEN_UNITS, validate_default=True, description="adaptive: units hidden at most"
    )
    floor_per_hour: float | None = Field(
        None,
        ge=0,
        le=MAX_FLOOR_PER_HOUR,
        description="adaptive: the least sales rate assumed (units/hour), for a launch or a sales day",
    )

    @field_validator("value")
    @classmethod
    def _value_of_its_type(cls, value: int | None, info: ValidationInfo) -> int | None:
        kind = info.data.get("type")
        if kind == "adaptive" and value not in (None, 0):
            raise ValueError("the adaptive action takes no value (confidence_pct, minimum, maximum)")
        if kind is not None and kind != "adaptive" and value is None:
            raise ValueError(f"Field required for the action {kind!r}")
        return value

    @field_validator("confidence_pct", "minimum", "maximum", "floor_per_hour")
    @classmethod
    def _only_adaptive(cls, value: float | None, info: ValidationInfo) -> float | None:
        kind = info.data.get("type")
        if kind != "adaptive":
            if value is not None and kind is not None:
                raise ValueError("only for the adaptive action")
            return value
        if info.field_name == "maximum":
            maximum = AdaptiveBuffer().maximum if value is None else value
            if maximum < (info.data.get("minimum") or 0):
                raise ValueError("must be at least minimum")
        return value

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.type == "adaptive":
            buffer = AdaptiveBuffer()
            self.value = 0
            self.confidence_pct = buffer.confidence_pct if self.confidence_pct is None else self.confidence_pct
            self.minimum = buffer.minimum if self.minimum is None else self.minimum
            self.maximum = buffer.maximum if self.maximum is None else self.maximum
            self.floor_per_hour = buffer.floor_per_hour if self.floor_per_hour is None else self.floor_per_hour
            return self
        assert self.value is not None  # `_value_of_its_type`
        if self.type == "percent" and self.value > 100:
            raise ValueError("a percentage is at most 100")
        _check_evaluates(Action(self.type, self.value).apply)
        return self

    @model_serializer(mode="wrap")
    def _without_unused(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Only the fields of the action's type: `{"type": "set", "value": 0}` stays as it was."""
        dumped: dict[str, Any] = handler(self)
        return {k: v for k, v in dumped.items() if v is not None}

    def stored(self) -> dict[str, Any]:
        return self.model_dump()


class ProductFilterIn(BaseModel):
    """Catalogue attributes, compared case-insensitively; every non-empty list must hold."""

    model_config = ConfigDict(extra="forbid")
    brands: list[Label] = Field(default_factory=list, max_length=1000, description="Keep products of these brands")
    exclude_brands: list[Label] = Field(default_factory=list, max_length=1000)
    categories: list[Label] = Field(
        default_factory=list, max_length=1000, description="Keep products of these categories"
    )
    exclude_categories: list[Label] = Field(default_factory=list, max_length=1000)
    tags: list[Label] = Field(
        default_factory=list, max_length=1000, description="Keep products carrying at least one of these tags"
    )
    exclude_tags: list[Label] = Field(
        default_factory=list, max_length=1000, description="Drop products carrying any of these tags"
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        if not any(self.model_dump().values()):
            raise ValueError("an empty product filter matches everything; omit it for all products")
        return self

    def stored(self) -> dict[str, list[str]]:
        return {k: sorted({v.casefold() for v in values}) for k, values in self.model_dump().items() if values}


class WeeklyWindowIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    days: list[Weekday] = Field(min_length=1, max_length=7, description="Weekdays the window opens on: mon ... sun")
    start: time = Field(description="Local time the window opens, HH:MM")
    end: time = Field(description="Local time it closes, HH:MM; at or before start runs past midnight")

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.start == self.end:
            raise ValueError("end: a window must not start and end at the same time")
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("start, end: local times without an offset; the rule's time_zone applies")
        return self


class RuleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Label
    channels: list[uuid.UUID] | Literal["all"] = Field(
        "all", max_length=1000, description='Connection ids the rule applies to, or "all"'
    )
    skus: list[Sku] | None = Field(
        None, max_length=MAX_RULE_SKUS, description="SKUs the rule applies to; omitted for all products"
    )
    product_filter: ProductFilterIn | None = Field(None, description="Filter on catalogue attributes")
    condition: ConditionIn
    action: ActionIn
    starts_at: datetime | None = Field(None, description="Start of the period; without an offset, in time_zone")
    ends_at: datetime | None = Field(None, description="End of the period (excluded)")
    weekly_windows: list[WeeklyWindowIn] = Field(
        default_factory=list,
        max_length=100,
        description="When set, the rule is in force only inside one of these windows",
    )
    time_zone: Identifier = Field("UTC", description="IANA time zone of weekly windows and of dates without an offset")
    position: Quantity = Field(100, description="Lower positions are applied first")
    enabled: bool = True

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}; use an IANA name such as Europe/Paris") from None
        return value

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.channels != "all" and not self.channels:
            raise ValueError('channels: give at least one connection id, or "all"')
        if self.skus is not None and not self.skus:
            raise ValueError("skus: an empty SKU list matches nothing; omit it for all products")
        zone = ZoneInfo(self.time_zone)
        if self.starts_at is not None and self.starts_at.tzinfo is None:
            self.starts_at = self.starts_at.replace(tzinfo=zone)
        if self.ends_at is not None and self.ends_at.tzinfo is None:
            self.ends_at = self.ends_at.replace(tzinfo=zone)
        if self.starts_at is not None and self.ends_at is not None and self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self

    def row_values(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "position": self.position,
            "enabled": self.enabled,
            "connection_ids": [] if self.channels == "all" else list(dict.fromkeys(self.channels)),
            "skus": sorted(set(self.skus or [])),
            "condition": self.condition.model_dump(),
            "action": self.action.stored(),
            "product_filter": self.product_filter.stored() if self.product_filter is not None else {},
            "starts_at": self.starts_at,
            "ends_at": self.ends_at,
            "weekly_windows": [
                {"days": w.days, "start": w.start.isoformat("minutes"), "end": w.end.isoformat("minutes")}
                for w in self.weekly_windows
            ],
            "time_zone": self.time_zone,
        }


class RulePatch(BaseModel):
    """Any subset of a rule's fields; the others keep their value. `{"enabled": false}` disables."""

    model_config = ConfigDict(extra="forbid")
    name: Label | None = None
    channels: list[uuid.UUID] | Literal["all"] | None = Field(None, max_length=1000)
    skus: list[Sku] | None = Field(None, max_length=MAX_RULE_SKUS)
    product_filter: ProductFilterIn | None = None
    condition: ConditionIn | None = None
    action: ActionIn | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    weekly_windows: list[WeeklyWindowIn] | None = Field(None, max_length=100)
    time_zone: Identifier | None = None
    position: Quantity | None = None
    enabled: bool | None = None

    def applied_to(self, current: dict[str, Any]) -> RuleIn:
        merged = {**current, **self.model_dump(exclude_unset=True, mode="json")}
        try:
            return RuleIn.model_validate(merged)
        except ValidationError as error:
            raise RequestValidationError(
                [{**e, "loc": ("body", *e["loc"])} for e in error.errors(include_url=False, include_context=False)]
            ) from None


class RuleOut(BaseModel):
    rule_id: uuid.UUID
    name: str
    channels: list[uuid.UUID] | Literal["all"]
    skus: list[str] | None
    product_filter: dict[str, list[str]] | None
    condition: ConditionIn
    action: ActionIn
    starts_at: datetime | None
    ends_at: datetime | None
    weekly_windows: list[WeeklyWindowIn]
    time_zone: str
    position: int
    enabled: bool
    in_force: bool = Field(description="Whether the period and weekly windows put the rule in force now")
    next_change_at: datetime | None = Field(description="When the period or a window next starts or ends")
    created_at: datetime
    updated_at: datetime


class RuleSaved(RuleOut):
    channel_quantities_changed: int = Field(description="Channel quantities this change re-published")


class RuleDeleted(BaseModel):
    rule_id: uuid.UUID
    channel_quantities_changed: int


class RuleChangeOut(BaseModel):
    change_id: int
    kind: Literal["created", "updated", "enabled", "disabled", "deleted"]
    changed_by: str = Field(description='"api_key:<key id>" of the key that made the change')
    changed_at: datetime
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    channel_quantities_changed: int


class PreviewCursor(BaseModel):
    """A row of the change list: a page starts after it."""

    model_config = ConfigDict(extra="forbid")
    sku: Sku
    location: Identifier


class PreviewIn(BaseModel):
    """A rule not yet saved (`rule`), a change to one (`rule_id` with `rule` or `patch`), or its deletion
    (`rule_id` with `delete`)."""

    model_config = ConfigDict(extra="forbid")
    rule_id: uuid.UUID | None = None
    rule: RuleIn | None = None
    patch: RulePatch | None = None
    delete: bool = False
    at: datetime | None = Field(None, description="Evaluate schedules at this moment (default: now)")
    limit: int = Field(1000, ge=0, le=100_000, description="Most changes listed; the totals count them all")
    after: PreviewCursor | None = Field(
        None, description="List the changes after this SKU and location: the `next` of the previous page"
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        given = sum((self.rule is not None, self.patch is not None, self.delete))
        if given != 1:
            raise ValueError("give exactly one of rule, patch, delete")
        if (self.patch is not None or self.delete) and self.rule_id is None:
            raise ValueError("rule_id: required with patch or delete")
        if self.at is not None and self.at.tzinfo is None:
            raise ValueError("at: give an offset, e.g. 2026-12-01T09:00:00+01:00")
        return self


class PreviewedChange(BaseModel):
    connection_id: uuid.UUID
    sku: str
    location: str
    available: int
    current: int | None = Field(description="The quantity last published; null if never published")
    proposed: int
    rule_ids: list[uuid.UUID] = Field(
        description="Rules that decided the proposed quantity; the nil UUID is the previewed rule when not yet saved"
    )
    reasons: list[str] = Field(
        default_factory=list, description="Why an adaptive buffer hid what it hid on this channel"
    )


class PreviewOut(BaseModel):
    at: datetime
    channel_quantities_changed: int
    skus_changed: int
    changes: list[PreviewedChange]
    truncated: bool = Field(description="Whether more changes follow this page")
    next: PreviewCursor | None = Field(
        description="Give it as `after`, with the same `at`, for the next page; null when nothing follows"
    )


def _changed_by(request: Request, merchant_id: MerchantId) -> str:
    # MerchantId has verified the key; the history names it by its public id.
    return f"api_key:{api_key_id(request.headers['X-API-Key'])}"


ChangedBy = Annotated[str, Depends(_changed_by)]


def _rule_out(row: Any) -> RuleOut:
    m = row._mapping
    return RuleOut(
        **rule_changes.rule_document(row),
        rule_id=m["rule_id"],
        in_force=m["in_force"],
        next_change_at=rule_from_row(row).schedule.next_change(utcnow()),
        created_at=m["created_at"],
        updated_at=m["updated_at"],
    )


def _saved(row: Any, changed: int) -> RuleSaved:
    return RuleSaved(**_rule_out(row).model_dump(), channel_quantities_changed=changed)


@contextmanager
def service_errors() -> Iterator[None]:
    """Service-layer errors as HTTP answers naming what is wrong."""
    try:
        yield
    except RuleNotFound as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no rule {error.args[0]}") from None
    except UnknownChannels as error:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_ENTITY,
            [{"loc": ["body", "channels"], "msg": str(error), "type": "value_error"}],
        ) from None


@router.post("/rules", status_code=status.HTTP_201_CREATED, response_model=RuleSaved)
async def create_rule(body: RuleIn, runtime: RuntimeDep, merchant_id: MerchantId, changed_by: ChangedBy) -> RuleSaved:
    with service_errors():
        row, changed = await rule_changes.create_rule(runtime.units, merchant_id, body.row_values(), changed_by)
    return _saved(row, changed)


@router.get("/rules", response_model=list[RuleOut])
async def list_rules(runtime: RuntimeDep, merchant_id: MerchantId) -> list[RuleOut]:
    return [_rule_out(row) for row in await rule_changes.list_rules(runtime.engine, merchant_id)]


@router.get("/rules/{rule_id}", response_model=RuleOut)
async def get_rule(rule_id: uuid.UUID, runtime: RuntimeDep, merchant_id: MerchantId) -> RuleOut:
    with service_errors():
        return _rule_out(await rule_changes.get_rule(runtime.engine, merchant_id, rule_id))


@router.put("/rules/{rule_id}", response_model=RuleSaved)
async def replace_rule(
    rule_id: uuid.UUID, body: RuleIn, runtime: RuntimeDep, merchant_id: MerchantId, changed_by: ChangedBy
) -> RuleSaved:
    with service_errors():
        values = body.row_values()
        row, changed = await rule_changes.replace_rule(
            runtime.units, merchant_id, rule_id, lambda _: values, changed_by
        )
    return _saved(row, changed)


@router.patch("/rules/{rule_id}", response_model=RuleSaved)
async def patch_rule(
    rule_id: uuid.UUID, body: RulePatch, runtime: RuntimeDep, merchant_id: MerchantId, changed_by: ChangedBy
) -> RuleSaved:
    with service_errors():
        # Merged under the rule's lock, so two concurrent patches both apply.
        row, changed = await rule_changes.replace_rule(
            runtime.units, merchant_id, rule_id, lambda current: body.applied_to(current).row_values(), changed_by
        )
    return _saved(row, changed)


@router.delete("/rules/{rule_id}", response_model=RuleDeleted)
async def delete_rule(
    rule_id: uuid.UUID, runtime: RuntimeDep, merchant_id: MerchantId, changed_by: ChangedBy
) -> RuleDeleted:
    with service_errors():
        changed = await rule_changes.delete_rule(runtime.units, merchant_id, rule_id, changed_by)
    return RuleDeleted(rule_id=rule_id, channel_quantities_changed=changed)


@router.get("/rules/{rule_id}/history", response_model=list[RuleChangeOut])
async def rule_history(rule_id: uuid.UUID, runtime: RuntimeDep, merchant_id: MerchantId) -> list[RuleChangeOut]:
    """Every change of the rule, oldest first, including its deletion."""
    with service_errors():
        rows = await rule_changes.rule_history(runtime.engine, merchant_id, rule_id)
    return [RuleChangeOut.model_validate(row._mapping) for row in rows]


@router.post(
    "/rules/preview",
    response_model=PreviewOut,
    responses=error_responses(404, e404="No rule `rule_id` for this merchant"),
)
async def preview_rule(body: PreviewIn, runtime: RuntimeDep, merchant_id: MerchantId) -> PreviewOut:
    """What saving would change, and to what, without saving; evaluated in memory on the projection."""
    with service_errors():
        values: dict[str, Any] | None = None
        if body.rule is not None:
            values = body.rule.row_values()
        elif body.patch is not None:
            assert body.rule_id is not None
            current = rule_changes.rule_document(await rule_changes.get_rule(runtime.engine, merchant_id, body.rule_id))
            values = body.patch.applied_to(current).row_values()
        preview = await rule_changes.preview_rule_change(
            runtime.engine,
            merchant_id,
            rule_id=body.rule_id,
            values=values,
            at=body.at,
            limit=body.limit,
            after=(body.after.sku, body.after.location) if body.after is not None else None,
        )
    return PreviewOut(
        at=preview.at,
        channel_quantities_changed=preview.channel_quantities_changed,
        skus_changed=preview.skus_changed,
        changes=[
            PreviewedChange(
                connection_id=c.connection_id,
                sku=c.sku,
                location=c.location,
                available=c.available,
                current=c.current,
                proposed=c.decision.quantity,
                rule_ids=list(c.decision.rule_ids),
                reasons=list(c.decision.reasons),
            )
            for c in preview.changes
        ],
        truncated=preview.more,
        next=PreviewCursor(sku=preview.next[0], location=preview.next[1]) if preview.next is not None else None,
    )
