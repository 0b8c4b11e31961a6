"""Turn one version of a CustomResourceDefinition into the JSON Schema tests/deploy uses.

    python tests/deploy/schemas/crd_to_json_schema.py CRD.yaml VERSION SOURCE > KIND.schema.json

CRD.yaml is the operator's published CRD (tests/deploy/schemas/README.md says which file
of which release); SOURCE is recorded in the schema's `$comment`. The API server
validates a custom resource against the version's `openAPIV3Schema` and, with strict
field validation, refuses a field the schema does not declare: so every object that
declares its properties is closed (`additionalProperties: false`) unless it keeps
unknown fields (`x-kubernetes-preserve-unknown-fields`). The OpenAPI extensions become
their JSON Schema equivalent (`nullable`, `x-kubernetes-int-or-string`); descriptions and
CEL rules (`x-kubernetes-validations`, which JSON Schema cannot express) are dropped.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

DROPPED = {"description", "x-kubernetes-validations", "example", "externalDocs"}


def convert(node: Any) -> Any:
    if isinstance(node, list):
        return [convert(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {
        key: convert(value) for key, value in node.items() if key not in DROPPED and not key.startswith("x-kubernetes-")
    }
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("nullable"):
        out.pop("nullable")
        if "type" in out:
            out["type"] = [out["type"], "null"]
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def crd_version_schema(crd: dict[str, Any], version: str, source: str) -> dict[str, Any]:
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version and v.get("served", True)]
    schema: dict[str, Any] = convert(served["schema"]["openAPIV3Schema"])
    api_version = f"{crd['spec']['group']}/{version}"
    kind = crd["spec"]["names"]["kind"]
    schema["properties"]["apiVersion"] = {"const": api_version}
    schema["properties"]["kind"] = {"const": kind}
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata"})
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$comment": f"{api_version} {kind}, converted by crd_to_json_schema.py from {source}",
        **schema,
    }


def main() -> None:
    path, version, source = sys.argv[1:4]
    crd = yaml.safe_load(Path(path).read_text())
    json.dump(crd_version_schema(crd, version, source), sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
