"""A change to a `.v1` contract must not break a consumer built against the committed
schemas (tests/contracts/v1_schemas.json): see compatibility.py for the rules."""

from __future__ import annotations

import json
from typing import Any, Literal

import pytest
from pydantic import Field, create_model

from stocksync_common.contracts import OversellDetected, StockChanged

from tests.contracts.compatibility import SNAPSHOT, breaking_changes, current_schemas


def snapshot() -> dict[str, dict[str, Any]]:
    loaded: dict[str, dict[str, Any]] = json.loads(SNAPSHOT.read_text())
    return loaded


def test_no_change_to_a_v1_contract_breaks_an_existing_consumer() -> None:
    assert breaking_changes(snapshot(), current_schemas()) == []


def test_every_v1_topic_is_in_the_committed_snapshot() -> None:
    missing = set(current_schemas()) - set(snapshot())
    assert not missing, f"new topics {sorted(missing)}: run `python -m tests.contracts.compatibility` and commit"


def with_stock_changed(model: Any) -> dict[str, dict[str, Any]]:
    return {**snapshot(), "stock.changed.v1": model.model_json_schema(mode="validation")}


def test_the_check_finds_a_removed_field() -> None:
    fields = {name: (f.annotation, f) for name, f in StockChanged.model_fields.items() if name != "reserved"}
    changed = create_model("StockChanged", **fields)  # type: ignore[call-overload]
    assert breaking_changes(snapshot(), with_stock_changed(changed)) == ["stock.changed.v1.reserved: field removed"]


def test_the_check_finds_a_retyped_field() -> None:
    changed = create_model("StockChanged", __base__=StockChanged, on_hand=(str, ...))
    (found,) = breaking_changes(snapshot(), with_stock_changed(changed))
    assert found.startswith("stock.changed.v1.on_hand: type changed")


def test_the_check_finds_a_new_required_field() -> None:
    changed = create_model("StockChanged", __base__=StockChanged, warehouse=(str, ...))
    assert breaking_changes(snapshot(), with_stock_changed(changed)) == [
        "stock.changed.v1.warehouse: newly required (events already on the topic lack it)"
    ]


def test_the_check_finds_a_removed_enum_value_and_a_removed_topic() -> None:
    channel_types = Literal["shopify", "woocommerce", "amazon", "ebay", "mirakl", "walmart"]  # no "generic"
    from stocksync_common.contracts import OrderLineMoved

    changed = create_model("OrderLineMoved", __base__=OrderLineMoved, channel_type=(channel_types, ...))
    new = {**current_schemas(), "orders.v1": changed.model_json_schema(mode="validation")}
    del new["stock.oversells.v1"]
    assert sorted(breaking_changes(snapshot(), new)) == [
        "orders.v1.channel_type: values ['generic'] removed",
        "stock.oversells.v1: topic removed",
    ]


@pytest.mark.parametrize(
    "addition",
    [
        {"warehouse": (str | None, None)},  # a new optional field
        {"oversold": (int, Field(gt=0, le=10**9))},  # a tighter bound
    ],
    ids=["optional-field", "tighter-bound"],
)
def test_compatible_changes_pass(addition: dict[str, Any]) -> None:
    changed = create_model("OversellDetected", __base__=OversellDetected, **addition)
    new = {**current_schemas(), "stock.oversells.v1": changed.model_json_schema(mode="validation")}
    assert breaking_changes(snapshot(), new) == []
