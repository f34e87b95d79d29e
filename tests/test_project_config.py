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
    assert objects == {"instances", "tls", "networkPolicy", "passwordRotation", "externalService", "monitoring"}


def test_object_keys_are_documented_in_the_readme_instead() -> None:
    """Every field of the object keys has a row in the README's configuration tables."""
    readme = (ROOT / "README.md").read_text()
    rows = {m.group(1) for m in re.finditer(r"^\| `([^`]+)`", readme, flags=re.MULTILINE)}
    schema = StackConfig.model_json_schema(by_alias=True)
    _, objects = expected_declarations()

    def fields(ref: dict[str, Any]) -> dict[str, Any]:
        name = (ref.get("$ref") or ref["additionalProperties"]["$ref"]).rsplit("/", 1)[1]
        return dict(schema["$defs"][name]["properties"])

    for key in objects - {"instances"}:
        for field in fields(schema["properties"][key]):
            documented = f"{key}.{field}" in rows or f"{key}.{field}.*" in rows
            documented = documented or any(r.startswith(f"{key}.<") and field in r for r in rows)
            assert documented, f"README has no row for {key}.{field}"
    # Instance settings have their own table, one row per leaf (storage.size, ...).
    for field, prop in fields(schema["properties"]["instances"]).items():
        if "$ref" in prop:
            for sub in fields(prop):
                assert f"{field}.{sub}" in rows, f"README has no row for instances.<name>.{field}.{sub}"
        else:
            assert field in rows, f"README has no row for instances.<name>.{field}"


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
