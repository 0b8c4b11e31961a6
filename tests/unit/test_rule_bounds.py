"""A rule is refused at save time, naming the field, when the engine could not apply it."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from stocksync_common.bounds import QUANTITY_MAX

from rule_engine.entrypoints.api import RuleIn, RulePatch


def rule(**fields: Any) -> dict[str, Any]:
    return {"name": "r", "condition": {"op": "<=", "value": 3}, "action": {"type": "set", "value": 0}, **fields}


def refused_fields(document: dict[str, Any]) -> set[tuple[Any, ...]]:
    with pytest.raises(ValidationError) as refused:
        RuleIn.model_validate(document)
    return {error["loc"][:2] for error in refused.value.errors()}


@pytest.mark.parametrize("value", [2**70, 2**63, QUANTITY_MAX + 1, -1])
def test_an_action_value_beyond_the_bounds_is_refused_on_the_action(value: int) -> None:
    assert refused_fields(rule(action={"type": "set", "value": value})) == {("action", "value")}


@pytest.mark.parametrize("field", ["value", "upper"])
def test_a_condition_threshold_beyond_the_bounds_is_refused_on_the_condition(field: str) -> None:
    condition = {"op": "between", "value": 1, "upper": 2, field: 2**70}
    assert ("condition", field) in refused_fields(rule(condition=condition))


def test_a_position_beyond_the_integer_column_is_refused() -> None:
    assert refused_fields(rule(position=2**40)) == {("position",)}


@pytest.mark.parametrize("sku", ["S" * 201, "A\x00B", ""])
def test_a_sku_in_scope_that_no_edge_accepts_is_refused(sku: str) -> None:
    assert refused_fields(rule(skus=["OK", sku])) == {("skus", 1)}


def test_a_name_with_a_control_character_is_refused() -> None:
    assert refused_fields(rule(name="bad\x00name")) == {("name",)}


def test_values_at_the_bounds_are_accepted_and_evaluate() -> None:
    accepted = RuleIn.model_validate(
        rule(
            condition={"op": "between", "value": 0, "upper": QUANTITY_MAX},
            action={"type": "subtract", "value": QUANTITY_MAX},
            position=QUANTITY_MAX,
        )
    )
    assert accepted.action.value == QUANTITY_MAX


def test_a_patch_is_held_to_the_same_bounds() -> None:
    with pytest.raises(ValidationError):
        RulePatch.model_validate({"action": {"type": "cap", "value": 2**70}})
