"""Every channel's order parser refuses what the pipeline could not store or apply."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from stocksync_common.bounds import SKU_MAX_LENGTH
from stocksync_sandboxes import (
    amazon_orders,
    ebay_orders,
    generic_orders,
    mirakl_orders,
    walmart_orders,
    woocommerce_orders,
)
from stocksync_sandboxes.order_delivery import SandboxOrderLine

from order_ingest.adapters.channels import MalformedDelivery
from order_ingest.adapters.channels.registry import PARSERS


def _shopify(lines: list[SandboxOrderLine]) -> tuple[dict[str, str], dict[str, Any]]:
    body = {
        "id": 820982911946154508,
        "line_items": [
            {"id": 466157049 + i, "sku": line.sku, "quantity": line.quantity} for i, line in enumerate(lines)
        ],
    }
    return {"x-shopify-event-id": "e-1", "x-shopify-topic": "orders/create"}, body


def _woocommerce(lines: list[SandboxOrderLine]) -> tuple[dict[str, str], dict[str, Any]]:
    return {"x-wc-webhook-topic": "order.created"}, woocommerce_orders.build_order(77, "processing", lines)


def _amazon(lines: list[SandboxOrderLine]) -> tuple[dict[str, str], dict[str, Any]]:
    return {}, amazon_orders.build_notification(seller_id="S", order_id="902-1", status="Unshipped", lines=lines)


def _ebay(lines: list[SandboxOrderLine]) -> tuple[dict[str, str], dict[str, Any]]:
    return {}, ebay_orders.build_notification("12-34", lines)


def _walmart(lines: list[SandboxOrderLine]) -> tuple[dict[str, str], dict[str, Any]]:
    return {}, walmart_orders.build_notification("PO_CREATED", "1796", lines)


def _generic(lines: list[SandboxOrderLine]) -> tuple[dict[str, str], dict[str, Any]]:
    return {"webhook-id": "msg_1"}, generic_orders.build_event("order.created", "A-1", lines)


def _mirakl(lines: list[SandboxOrderLine]) -> tuple[dict[str, str], dict[str, Any]]:
    now = datetime.now(UTC)
    return {}, mirakl_orders.build_order("M-1-A", "WAITING_ACCEPTANCE", lines, now, now)


DELIVERIES: dict[str, Callable[[list[SandboxOrderLine]], tuple[dict[str, str], dict[str, Any]]]] = {
    "shopify": _shopify,
    "woocommerce": _woocommerce,
    "amazon": _amazon,
    "ebay": _ebay,
    "walmart": _walmart,
    "generic": _generic,
    "mirakl": _mirakl,
}


def _parse(channel: str, sku: str, line_id: str = "1") -> Any:
    headers, body = DELIVERIES[channel]([SandboxOrderLine(sku=sku, quantity=2, line_id=line_id)])
    return PARSERS[channel](headers, orjson.dumps(body))


def test_every_channel_type_has_a_bounded_parser_under_test() -> None:
    assert set(PARSERS) == set(DELIVERIES)


@pytest.mark.parametrize("channel", sorted(DELIVERIES))
def test_a_sku_at_the_limit_is_read(channel: str) -> None:
    notification = _parse(channel, "S" * SKU_MAX_LENGTH)
    assert [line.sku for line in notification.lines] == ["S" * SKU_MAX_LENGTH]


@pytest.mark.parametrize("channel", sorted(DELIVERIES))
@pytest.mark.parametrize("sku", ["S" * 10_000, "AB\x00C", "TAB\tSKU", "A\u0085B"])
def test_a_sku_too_long_or_with_a_control_character_makes_the_delivery_malformed(channel: str, sku: str) -> None:
    with pytest.raises(MalformedDelivery) as refused:
        _parse(channel, sku)
    detail = refused.value.detail
    assert isinstance(detail, list)
    assert any(error["loc"][-1] == "sku" for error in detail), detail


def test_an_order_id_beyond_the_identifier_bound_is_refused() -> None:
    headers, body = _shopify([SandboxOrderLine(sku="A", quantity=1)])
    body["id"] = 10**250  # a JSON number of 251 digits: its text is the order id
    with pytest.raises(MalformedDelivery) as refused:
        PARSERS["shopify"](headers, json.dumps(body).encode())
    assert isinstance(refused.value.detail, list)
    assert any(error["loc"][-1] == "external_order_id" for error in refused.value.detail)


def test_a_quantity_beyond_any_stock_is_refused() -> None:
    headers, body = _shopify([SandboxOrderLine(sku="A", quantity=1)])
    body["line_items"][0]["quantity"] = 2**70
    with pytest.raises(MalformedDelivery) as refused:
        PARSERS["shopify"](headers, json.dumps(body).encode())
    assert isinstance(refused.value.detail, list)
    assert any(error["loc"][-1] == "ordered" for error in refused.value.detail)
