"""What an existing consumer of a `.v1` topic can live with, checked on JSON Schemas.

A consumer built against the committed schema (v1_schemas.json) reads both the events
already on the topic and those the changed code will publish. So, against the
committed schema, a change must not: remove a topic or a field, change a field's type
or format, drop an enum value, or make a field required that was not (old events lack
it). Adding an optional field or an enum value is compatible (docs/asyncapi.yaml tells
consumers to ignore what they do not know).

    python -m tests.contracts.compatibility   # add NEW topics to the snapshot; never rewrites one
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from stocksync_common.topics import ALL_TOPICS

SNAPSHOT = Path(__file__).with_name("v1_schemas.json")
# What makes a property's type; bounds (minLength, minimum, ...) are not compared: an
# existing consumer reads values within tighter bounds, and the bounds of the edges
# (stocksync_common.bounds) tighten as the product hardens.
TYPE_WORDS = {"type", "format", "items", "prefixItems", "additionalProperties", "$ref"}


def current_schemas() -> dict[str, dict[str, Any]]:
    return {
        topic.name: topic.event_type.model_json_schema(mode="validation")
        for topic in ALL_TOPICS
        if topic.name.endswith(".v1")
    }


def _shape(schema: dict[str, Any]) -> dict[str, Any]:
    """The property's type, without documentation, bounds and enum values (compared apart)."""
    if "anyOf" in schema:
        return {"anyOf": sorted(json.dumps(_shape(s), sort_keys=True) for s in schema["anyOf"])}
    shape: dict[str, Any] = {}
    for word, value in schema.items():
        if word not in TYPE_WORDS:
            continue
        if isinstance(value, dict):
            shape[word] = _shape(value)
        elif isinstance(value, list) and word == "prefixItems":
            shape[word] = [_shape(item) for item in value]
        else:
            shape[word] = value
    return shape


def _enum(schema: dict[str, Any]) -> set[Any]:
    if "anyOf" in schema:
        return set().union(*(_enum(s) for s in schema["anyOf"]))
    if "const" in schema:
        return {schema["const"]}
    return set(schema.get("enum", []))


def breaking_changes(old: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]]) -> list[str]:
    found = []
    for topic, before in old.items():
        after = new.get(topic)
        if after is None:
            found.append(f"{topic}: topic removed")
            continue
        before_props, after_props = before.get("properties", {}), after.get("properties", {})
        for field, was in before_props.items():
            now = after_props.get(field)
            if now is None:
                found.append(f"{topic}.{field}: field removed")
                continue
            if _shape(was) != _shape(now):
                found.append(f"{topic}.{field}: type changed from {_shape(was)} to {_shape(now)}")
            if lost := _enum(was) - _enum(now):
                found.append(f"{topic}.{field}: values {sorted(lost, key=str)} removed")
        for field in sorted(set(after.get("required", [])) - set(before.get("required", []))):
            found.append(f"{topic}.{field}: newly required (events already on the topic lack it)")
    return found


def add_new_topics() -> list[str]:
    snapshot = json.loads(SNAPSHOT.read_text()) if SNAPSHOT.exists() else {}
    added = [name for name in current_schemas() if name not in snapshot]
    snapshot.update({name: schema for name, schema in current_schemas().items() if name in added})
    SNAPSHOT.write_text(json.dumps(snapshot, indent=1, sort_keys=True) + "\n")
    return added


if __name__ == "__main__":
    print("added to the snapshot:", ", ".join(add_new_topics()) or "nothing")
