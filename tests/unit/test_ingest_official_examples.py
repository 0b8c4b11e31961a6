"""The marketplaces' own order examples read into exactly the right order lines
(sources and versions in official_examples/README.md)."""

from __future__ import annotations

import json
from pathlib import Path

import orjson

from order_ingest.adapters.channels import shopify, woocommerce
from order_ingest.domain.movements import LineReport

EXAMPLES = Path(__file__).parent / "official_examples"


def example(name: str) -> bytes:
    return (EXAMPLES / name).read_bytes()


def test_shopifys_order_fixture_places_one_unit_of_each_of_its_three_lines() -> None:
    # The fixture's only fulfillment failed ("status": "failure"), so nothing is shipped.
    body = orjson.dumps(json.loads(example("shopify_order.json"))["order"])
    headers = {"x-shopify-event-id": "e-1", "x-shopify-topic": "orders/create"}
    parsed = shopify.parse(headers, body)
    assert parsed.lines == (
        LineReport("450789469", "466157049", "IPOD2008GREEN", 1),
        LineReport("450789469", "518995019", "IPOD2008RED", 1),
        LineReport("450789469", "703073504", "IPOD2008BLACK", 1),
    )
    assert parsed.skipped_lines == ()


def test_woocommerces_order_examples_place_then_ship_the_line_with_a_sku() -> None:
    created = woocommerce.parse({"x-wc-webhook-topic": "order.created"}, example("woocommerce_order_created.json"))
    # Line 315 has no SKU (""): reported, not refused.
    assert (created.lines, created.skipped_lines) == ((LineReport("727", "316", "Bar3", 1),), ("315",))
    updated = woocommerce.parse({"x-wc-webhook-topic": "order.updated"}, example("woocommerce_order_updated.json"))
    assert updated.lines == (LineReport("727", "316", "Bar3", 1, shipped=1),)
    assert created.channel_event_id != updated.channel_event_id  # processing, then completed
