"""What Pulumi.yaml's ``config:`` block must declare, derived from the pydantic models' JSON schema.

Pulumi's project config types are string, integer, boolean and array (sdk/go/common/workspace/
project.json, ``simpleConfigType``): object-valued keys (instances, tls, ...) cannot be declared,
and a declared key without a default is required by the CLI. So every scalar and list key is
declared with its default ("" standing for "not set", which the loader reads as unset), and the
object keys are documented in docs/configuration.md's configuration reference instead.
"""

from __future__ import annotations

from typing import Any

from components.config.models import StackConfig


def expected_declarations() -> tuple[dict[str, dict[str, Any]], set[str]]:
    """(declarations by key, object keys that cannot be declared)."""
    schema = StackConfig.model_json_schema(by_alias=True)
    declared: dict[str, dict[str, Any]] = {}
    objects: set[str] = set()
    for key, prop in schema["properties"].items():
        types = [p for p in prop.get("anyOf", [prop]) if p.get("type") != "null"]
        (typ,) = types
        if "$ref" in typ or typ.get("type") == "object":
            objects.add(key)
            continue
        entry: dict[str, Any] = {"type": typ["type"]}
        if typ["type"] == "array":
            entry["items"] = {"type": typ["items"]["type"]}
        entry["description"] = " ".join(prop["description"].split())
        entry["default"] = "" if prop.get("default") is None else prop["default"]
        declared[key] = entry
    return declared, objects
