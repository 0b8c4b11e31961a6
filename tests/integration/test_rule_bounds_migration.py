"""Rules saved with values beyond the bounds (before the API bounded them) become readable again."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.ext.asyncio import create_async_engine

from stocksync_common.bounds import QUANTITY_MAX
from stocksync_common.migrations import alembic_config

import rule_engine
from rule_engine.adapters.tables import rule_changes
from rule_engine.entrypoints.api import RuleChangeOut, _rule_out
from rule_engine.service_layer.rule_changes import list_rules

pytestmark = pytest.mark.integration

MIGRATIONS = Path(rule_engine.__file__).parent / "migrations"
HUGE = 2**70


def test_a_rule_saved_out_of_bounds_is_clamped_disabled_and_listed_again(database_url: str) -> None:
    merchant_id, rule_id = uuid.uuid4(), uuid.uuid4()
    condition = {"op": "between", "value": 3, "upper": HUGE}
    action = {"type": "set", "value": HUGE}
    document = {"name": "huge", "condition": condition, "action": action, "position": 100}

    async def insert() -> None:
        engine = create_async_engine(database_url)
        try:
            async with engine.begin() as conn:
                # As the old API saved it: JSONB holds integers of any size.
                await conn.execute(
                    sa.text(
                        "INSERT INTO rule_engine.rules (rule_id, merchant_id, name, position, enabled, connection_ids,"
                        " skus, condition, action) VALUES (:rule_id, :merchant_id, 'huge', 100, true, '{}', '{}',"
                        " CAST(:condition AS jsonb), CAST(:action AS jsonb))"
                    ),
                    {
                        "rule_id": rule_id,
                        "merchant_id": merchant_id,
                        "condition": json.dumps(condition),
                        "action": json.dumps(action),
                    },
                )
                await conn.execute(
                    sa.text(
                        "INSERT INTO rule_engine.rule_changes (rule_id, merchant_id, kind, changed_by, after,"
                        " channel_quantities_changed) VALUES (:rule_id, :merchant_id, 'created', 'api_key:x',"
                        " CAST(:after AS jsonb), 0)"
                    ),
                    {"rule_id": rule_id, "merchant_id": merchant_id, "after": json.dumps(document)},
                )
        finally:
            await engine.dispose()

    asyncio.run(insert())
    config = alembic_config(MIGRATIONS, database_url)
    command.downgrade(config, "0004_dead_letters")
    command.upgrade(config, "head")

    async def read() -> tuple[list[Any], list[Any]]:
        engine = create_async_engine(database_url)
        try:
            listed = await list_rules(engine, merchant_id)
            async with engine.connect() as conn:
                history = (
                    await conn.execute(
                        sa.select(rule_changes)
                        .where(rule_changes.c.rule_id == rule_id)
                        .order_by(rule_changes.c.change_id)
                    )
                ).all()
            return listed, list(history)
        finally:
            await engine.dispose()

    listed, history = asyncio.run(read())

    (out,) = [_rule_out(row) for row in listed]
    assert (out.enabled, out.action.value, out.condition.value, out.condition.upper) == (
        False,
        QUANTITY_MAX,
        3,
        QUANTITY_MAX,
    )
    changes = [RuleChangeOut.model_validate(row._mapping) for row in history]
    assert [(c.kind, c.changed_by) for c in changes] == [
        ("created", "api_key:x"),
        ("disabled", "migration:0005_bound_rule_values"),
    ]
    assert changes[0].after is not None and changes[0].after["action"]["value"] == QUANTITY_MAX
    assert orjson.dumps([c.model_dump(mode="json") for c in changes])  # readable by the API's encoder
