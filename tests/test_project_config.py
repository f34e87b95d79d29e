"""Pulumi.yaml's config block declares exactly the stack config the pydantic models accept."""

from __future__ import annotations

import re
from typing import Any

import yaml
from harness import ROOT, render, stack_file_config
from project_config import expected_declarations

from components.config.models import StackConfig


def declared() -> dict[str, dict[str, object]]:
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    assert project["name"] == "valkey"
    config: dict[str, dict[str, object]] = project["config"]
    return config


def test_every_scalar_and_list_key_is_declared_as_the_models_define_it() -> None:
    expected, objects = expected_declarations()
    assert declared() == expected
    assert objects == {
        "instances",
        "tls",
        "networkPolicy",
        "passwordRotation",
        "externalService",
        "monitoring",
        "scheduling",
        "failover",
    }


def test_object_keys_are_documented_in_the_configuration_reference_instead() -> None:
    """Every field of the object keys has a row in docs/configuration.md's tables."""
    reference = (ROOT / "docs" / "configuration.md").read_text()
    rows = {m.group(1) for m in re.finditer(r"^\| `([^`]+)`", reference, flags=re.MULTILINE)}
    schema = StackConfig.model_json_schema(by_alias=True)
    _, objects = expected_declarations()

    def fields(ref: dict[str, Any]) -> dict[str, Any]:
        name = (ref.get("$ref") or ref["additionalProperties"]["$ref"]).rsplit("/", 1)[1]
        return dict(schema["$defs"][name]["properties"])

    # The reference is generated (offline/docs.py); this reads the schema instead, so a key the
    # generator skipped shows up here.
    for key in objects - {"instances"}:
        for field in fields(schema["properties"][key]):
            assert f"{key}.{field}" in rows, f"docs/configuration.md has no row for {key}.{field}"
    for field, prop in fields(schema["properties"]["instances"]).items():
        path = f"instances.<name>.{field}"
        assert path in rows, f"docs/configuration.md has no row for {path}"
        for sub in fields(prop) if "$ref" in prop else ():
            assert f"{path}.{sub}" in rows, f"docs/configuration.md has no row for {path}.{sub}"


def test_the_declared_defaults_are_what_the_program_does_without_them() -> None:
    """The CLI hands the program the declared default of every key the stack file leaves out."""
    base = {k: stack_file_config("region1")[k] for k in ("externalDomain", "peerCidrs", "tls")}
    for stack, own in (("region1", stack_file_config("region1")), ("seed", base)):
        injected = {key: entry["default"] for key, entry in declared().items() if key not in own}
        assert injected, stack
        from_file = stack == "region1"
        with_defaults = render(stack, {**base, **injected}, from_stack_file=from_file)
        without = render(stack, base, from_stack_file=from_file)
        assert with_defaults.exports == without.exports
        assert with_defaults.manifests() == without.manifests()
