"""The rule-engine's REST API: `POST/GET /v1/rules`."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal, Self

import sqlalchemy as sa
from fastapi import APIRouter, HTTPException, Request, status
from pydantic import BaseModel, ConfigDict, Field, model_validator

from stocksync_common.auth import MerchantId
from stocksync_common.runtime import Runtime

from rule_engine.adapters.tables import connections, rules
from rule_engine.domain.rules import ActionType, ConditionOp
from rule_engine.service_layer.evaluation import reevaluate

router = APIRouter(prefix="/v1", tags=["rules"])


class ConditionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    op: ConditionOp
    value: int | None = Field(None, ge=0)
    upper: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.op != "always" and self.value is None:
            raise ValueError(f"value is required for the condition {self.op!r}")
        if self.op == "between" and (self.upper is None or self.value is None or self.upper < self.value):
            raise ValueError("between needs value <= upper")
        return self


class ActionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: ActionType
    value: int = Field(ge=0)

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.type == "percent" and self.value > 100:
            raise ValueError("a percentage is at most 100")
        return self


class RuleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    channels: list[uuid.UUID] | Literal["all"] = Field(
        "all", description='Connection ids the rule applies to, or "all"'
    )
    skus: list[str] | None = Field(None, description="SKUs the rule applies to; omitted for all products")
    condition: ConditionIn
    action: ActionIn
    position: int = Field(100, ge=0, description="Lower positions are applied first")
    enabled: bool = True

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.channels != "all" and not self.channels:
            raise ValueError('channels: give at least one connection id, or "all"')
        if self.skus is not None and not self.skus:
            raise ValueError("skus: an empty SKU list matches nothing; omit it for all products")
        return self


class RuleOut(BaseModel):
    rule_id: uuid.UUID
    name: str
    channels: list[uuid.UUID] | Literal["all"]
    skus: list[str] | None
    condition: ConditionIn
    action: ActionIn
    position: int
    enabled: bool
    created_at: datetime
    updated_at: datetime


class RuleCreated(RuleOut):
    channel_quantities_changed: int


def _rule_out(row: sa.Row[tuple[object, ...]]) -> RuleOut:
    m = row._mapping
    return RuleOut(
        rule_id=m["rule_id"], name=m["name"], channels=list(m["connection_ids"]) or "all",
        skus=list(m["skus"]) or None, condition=ConditionIn(**m["condition"]),
        action=ActionIn(**m["action"]), position=m["position"], enabled=m["enabled"],
        created_at=m["created_at"], updated_at=m["updated_at"],
    )


@router.post("/rules", status_code=status.HTTP_201_CREATED, response_model=RuleCreated)
async def create_rule(body: RuleIn, request: Request, merchant_id: MerchantId) -> RuleCreated:
    runtime: Runtime = request.app.state.runtime
    channel_ids = [] if body.channels == "all" else body.channels
    async with runtime.engine.begin() as conn:
        if channel_ids:
            known = set((await conn.execute(
                sa.select(connections.c.connection_id).where(
                    connections.c.merchant_id == merchant_id, connections.c.connection_id.in_(channel_ids)
                )
            )).scalars())
            unknown = [str(c) for c in channel_ids if c not in known]
            if unknown:
                raise HTTPException(
                    status.HTTP_422_UNPROCESSABLE_ENTITY,
                    [{"loc": ["body", "channels"], "msg": f"unknown channel connection(s): {', '.join(unknown)}",
                      "type": "value_error"}],
                )
        row = (await conn.execute(
            sa.insert(rules).values(
                rule_id=uuid.uuid4(), merchant_id=merchant_id, name=body.name, position=body.position,
                enabled=body.enabled, connection_ids=channel_ids, skus=body.skus or [],
                condition=body.condition.model_dump(), action=body.action.model_dump(),
            ).returning(rules)
        )).one()
        changed = await reevaluate(conn, merchant_id, causation_id=f"rule:{row.rule_id}:created")
    runtime.wake_relay()
    return RuleCreated(**_rule_out(row).model_dump(), channel_quantities_changed=len(changed))


@router.get("/rules", response_model=list[RuleOut])
async def list_rules(request: Request, merchant_id: MerchantId) -> list[RuleOut]:
    runtime: Runtime = request.app.state.runtime
    async with runtime.engine.connect() as conn:
        rows = (await conn.execute(
            sa.select(rules).where(rules.c.merchant_id == merchant_id).order_by(rules.c.position, rules.c.created_at)
        )).all()
    return [_rule_out(row) for row in rows]


@router.get("/rules/{rule_id}", response_model=RuleOut)
async def get_rule(rule_id: uuid.UUID, request: Request, merchant_id: MerchantId) -> RuleOut:
    runtime: Runtime = request.app.state.runtime
    async with runtime.engine.connect() as conn:
        row = (await conn.execute(
            sa.select(rules).where(rules.c.rule_id == rule_id, rules.c.merchant_id == merchant_id)
        )).one_or_none()
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such rule")
    return _rule_out(row)
