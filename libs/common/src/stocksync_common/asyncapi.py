"""The AsyncAPI 3 document of Stocksync's topics, generated from the topic registry and
the pydantic contracts, for services that subscribe to them.

    python -m stocksync_common.asyncapi > docs/asyncapi.yaml      (make asyncapi)

Every service serves it at `/asyncapi` (JSON). tests/contracts fails while
docs/asyncapi.yaml differs from what this module generates.
"""

from __future__ import annotations

import sys
from functools import cache
from typing import Any

import yaml

from stocksync_common.topics import ALL_TOPICS, Topic

# Which service writes each topic (through its outbox).
PRODUCERS = {
    "orders.v1": "order-ingest",
    "stock.changed.v1": "stock-ledger",
    "stock.oversells.v1": "stock-ledger",
    "catalogue.v1": "stock-ledger",
    "channel.quantity.v1": "rule-engine",
    "connections.v1": "channel-publisher",
}
# Topics other systems must not read (connections.v1 carries webhook secrets).
INTERNAL = {"connections.v1"}

DESCRIPTION = """\
Stocksync publishes every stock-relevant fact on Kafka topics. Any service may subscribe
to the public ones with a consumer group of its own (read-only ACLs on `*.v1`).

**Delivery: at least once.** Each event is written to an outbox in the same database
transaction as the change it reports, then published; a crash between publishing and
marking it sent publishes it again. Consumers must be idempotent: remember the
`event_id` of what you applied (in the transaction of your effect), and drop an event
whose `event_id` you have seen.

**Order: per key.** The record key is `<merchant_id>:<sku>` (`<merchant_id>:<connection_id>`
on connections.v1), so all events of one SKU are in one partition, in the order they
were produced. There is no order across SKUs or partitions. Stock events carry
absolute values and a `version` that only grows per SKU (per connection and SKU on
channel.quantity.v1): a consumer keeps the newest version it has applied and drops
anything not newer, which also makes redelivery and replay harmless.

**Headers:** `event_type` (the contract's name, e.g. `StockChanged`) and
`causation_id` (what caused the event; the same id follows one order from webhook to
channel push, see docs/operations.md, Logs).

**Compatibility.** A `.v1` topic only changes compatibly: fields are added as optional
(with a default), enum values may be added; no field is removed, retyped or made
required. Consumers must ignore fields and enum values they do not know. A breaking
change gets a new topic (`orders.v2`) published side by side until consumers moved.
The test suite checks every change against the committed schemas of the `.v1` topics
(tests/contracts). `schema_version` is 1 on every `.v1` event.

**Retention.** Stock topics keep 7 days; catalogue.v1 and connections.v1 are compacted
(the newest event per key stays for ever): a new consumer can rebuild from them.
"""


def _message(topic: Topic, components: dict[str, Any]) -> dict[str, Any]:
    model = topic.event_type
    schema = model.model_json_schema(mode="validation", ref_template="#/components/schemas/{model}")
    components.update(schema.pop("$defs", {}))
    # The models refuse unknown fields, but subscribers must not: a compatible change
    # adds optional fields, which an old copy of this schema has to accept.
    schema.pop("additionalProperties", None)
    return {
        "name": model.__name__,
        "title": model.__name__,
        "summary": (model.__doc__ or "").strip().splitlines()[0],
        "contentType": "application/json",
        "headers": {
            "type": "object",
            "properties": {
                "event_type": {"type": "string", "const": model.__name__},
                "causation_id": {"type": "string"},
            },
            "required": ["event_type", "causation_id"],
        },
        "payload": {"schemaFormat": "application/schema+json;version=draft-07", "schema": schema},
        "bindings": {
            "kafka": {
                "key": {
                    "type": "string",
                    "description": "<merchant_id>:<connection_id>"
                    if topic.name == "connections.v1"
                    else "<merchant_id>:<sku>: one SKU's events share a partition, in order",
                },
                "bindingVersion": "0.5.0",
            }
        },
    }


def _channel_id(topic: Topic) -> str:
    return topic.name.replace(".", "-")


@cache
def build_document() -> dict[str, Any]:
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for topic in ALL_TOPICS:
        channel_id = _channel_id(topic)
        message = _message(topic, schemas)
        access = "internal to Stocksync: do not subscribe" if topic.name in INTERNAL else "public"
        producer = PRODUCERS.get(topic.name, "Stocksync")
        retention = "compacted" if topic.compacted else "kept 7 days"
        channels[channel_id] = {
            "address": topic.name,
            "title": topic.name,
            "description": f"{(topic.event_type.__doc__ or '').strip()}\n\n"
            f"Produced by {producer}; {topic.partitions} partitions; {retention}; {access}.",
            "messages": {message["name"]: message},
            "bindings": {
                "kafka": {
                    "topic": topic.name,
                    "partitions": topic.partitions,
                    "topicConfiguration": {"cleanup.policy": ["compact" if topic.compacted else "delete"]},
                    "bindingVersion": "0.5.0",
                }
            },
        }
        operations[f"publish-{channel_id}"] = {
            "action": "send",
            "title": f"{PRODUCERS.get(topic.name, 'Stocksync')} publishes {topic.event_type.__name__}",
            "channel": {"$ref": f"#/channels/{channel_id}"},
            "messages": [{"$ref": f"#/channels/{channel_id}/messages/{message['name']}"}],
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Stocksync events",
            "version": "1.0.0",
            "description": DESCRIPTION,
            "license": {"name": "Apache-2.0"},
        },
        "defaultContentType": "application/json",
        "servers": {
            "kafka": {
                "host": "stocksync-kafka-bootstrap:9092",
                "protocol": "kafka",
                "description": "The deployment's Kafka cluster (compose: localhost:19092; `make run` prints its own).",
            }
        },
        "channels": channels,
        "operations": operations,
        **({"components": {"schemas": schemas}} if schemas else {}),
    }


class _Dumper(yaml.SafeDumper):  # type: ignore[misc]
    """Multi-line text as literal blocks, so the descriptions read as written."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _text)


def render() -> str:
    text: str = yaml.dump(build_document(), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
    return "# Generated by `make asyncapi` (python -m stocksync_common.asyncapi): do not edit.\n" + text


def main() -> None:
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
