"""docs/asyncapi.yaml: generated from the registry and the contracts, current, describing
every topic, and served at /asyncapi."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import jsonschema
import yaml

from stocksync_common.asyncapi import build_document, render
from stocksync_common.contracts import OversellDetected, StockChanged
from stocksync_common.kafka import encode_event
from stocksync_common.runtime import Runtime, create_service_app
from stocksync_common.settings import ServiceSettings
from stocksync_common.topics import ALL_TOPICS, OVERSELLS, STOCK_CHANGED
from stocksync_embedded.gateway import ROUTES

from tests.deploy.conftest import REPO

DOCUMENT = REPO / "docs" / "asyncapi.yaml"


def payload_schema(document: dict[str, Any], topic: str) -> dict[str, Any]:
    (channel,) = [c for c in document["channels"].values() if c["address"] == topic]
    (message,) = channel["messages"].values()
    schema: dict[str, Any] = message["payload"]["schema"]
    return schema


def test_the_committed_document_is_what_the_code_generates() -> None:
    assert DOCUMENT.read_text() == render(), "docs/asyncapi.yaml is stale: run `make asyncapi`"


def test_every_topic_is_a_channel_with_its_key_partitions_and_a_send_operation() -> None:
    document = yaml.safe_load(DOCUMENT.read_text())
    assert document["asyncapi"].startswith("3.")
    for topic in ALL_TOPICS:
        (channel_id,) = [k for k, c in document["channels"].items() if c["address"] == topic.name]
        channel = document["channels"][channel_id]
        assert channel["bindings"]["kafka"]["partitions"] == topic.partitions
        policy = channel["bindings"]["kafka"]["topicConfiguration"]["cleanup.policy"]
        assert policy == ["compact" if topic.compacted else "delete"]
        (message,) = channel["messages"].values()
        assert message["name"] == topic.event_type.__name__
        assert message["bindings"]["kafka"]["key"]["type"] == "string"
        assert {"event_type", "causation_id"} <= set(message["headers"]["properties"])
        operations = [o for o in document["operations"].values() if o["channel"]["$ref"] == f"#/channels/{channel_id}"]
        assert [o["action"] for o in operations] == ["send"]
    description = document["info"]["description"]
    for promise in ("at least once", "event_id", "<merchant_id>:<sku>", "version"):
        assert promise in description


def test_the_payload_schemas_accept_the_events_as_published_and_refuse_broken_ones() -> None:
    document = yaml.safe_load(DOCUMENT.read_text())
    merchant = uuid.uuid4()
    events = [
        (
            STOCK_CHANGED.name,
            StockChanged(
                causation_id="c", merchant_id=merchant, sku="A", version=3, on_hand=5, reserved=1, available=4
            ),
        ),
        (
            OVERSELLS.name,
            OversellDetected(causation_id="c", merchant_id=merchant, sku="A", version=4, available=-2, oversold=2),
        ),
    ]
    for topic, event in events:
        validator = jsonschema.Draft7Validator(payload_schema(document, topic))
        published = yaml.safe_load(encode_event(event))
        assert list(validator.iter_errors(published)) == []
        # A later optional field does not break a consumer validating with this copy.
        assert validator.is_valid({**published, "added_later": 1})
        del published["sku"]
        assert not validator.is_valid(published)


async def test_every_service_and_the_gateway_route_serve_the_document() -> None:
    runtime = Runtime("stock-ledger", ServiceSettings(), outbox=None)
    app = create_service_app(title="t", description="t", runtime=runtime)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        served = await client.get("/asyncapi")
    assert served.status_code == 200
    assert served.json() == yaml.safe_load(DOCUMENT.read_text())
    assert served.json() == build_document()
    assert ("/asyncapi", "stock-ledger") in ROUTES
    await runtime.engine.dispose()
