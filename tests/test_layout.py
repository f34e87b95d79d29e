"""The layers of components/ hold: what renders files never imports Pulumi, what builds specs never
creates a resource, and no module imports from a layer above its own."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMPONENTS = ROOT / "components"

# Bottom to top. A module may import from its own layer and the ones below.
LAYERS: list[tuple[str, ...]] = [
    (
        "config.types",
        "config.names",
        "config.pem",
        "config.valkey_commands",
        "config.security",
        "config.migration",
        "config.models",
        "config.problems",
        "object_names",
    ),
    ("sizing",),
    ("config.checks", "config.loader"),
    ("render",),
    ("specs",),
    ("namespace", "credentials", "valkey_server", "monitoring", "migration"),
    ("stack",),
]
PURE = ["render", "sizing", "object_names", *(m for m in LAYERS[0] if m.startswith("config.")), "config.checks"]
"""Modules (or packages) that import neither pulumi nor pulumi_kubernetes, however deep."""


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(COMPONENTS).with_suffix("").parts).removesuffix(".__init__")


def layer_of(module: str) -> int:
    for index, members in enumerate(LAYERS):
        if any(module == m or module.startswith(f"{m}.") for m in members):
            return index
    raise AssertionError(f"components.{module} is in no layer of tests/test_layout.py")


def modules() -> list[Path]:
    return sorted(p for p in COMPONENTS.rglob("*.py") if p.name != "__init__.py")


def imported_components(path: Path, module: str | None = None) -> set[str]:
    """components.* modules ``path`` (the module ``module``, by default its own) imports, relative
    imports resolved."""
    module = module or module_name(path)
    package = module.rsplit(".", 1)[0] if "." in module else ""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name.removeprefix("components.") for a in node.names if a.name.startswith("components."))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                target = ".".join([*base, *([node.module] if node.module else [])])
                names = [target] if node.module else [".".join([*base, a.name]) for a in node.names]
                found.update(n for n in names if n)
            elif node.module and node.module.startswith("components."):
                found.add(node.module.removeprefix("components."))
    return found


@pytest.mark.parametrize("path", modules(), ids=module_name)
def test_no_module_imports_from_a_layer_above(path: Path) -> None:
    mine = layer_of(module_name(path))
    above = {m for m in imported_components(path) if layer_of(m) > mine}
    assert not above, f"components.{module_name(path)} (layer {mine}) imports {sorted(above)}"


@pytest.mark.parametrize("module", PURE)
def test_pure_layers_never_load_pulumi(module: str) -> None:
    targets = [module_name(p) for p in modules() if layer_of(module_name(p)) == layer_of(module)]
    targets = [t for t in targets if t == module or t.startswith(f"{module}.")]
    assert targets
    code = (
        "import importlib, sys\n"
        f"for name in {targets!r}: importlib.import_module('components.' + name)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pulumi', 'pulumi_kubernetes', 'pulumi_random')))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]", f"{targets} load {loaded.stdout}"


def test_specs_build_arguments_and_create_no_resource() -> None:
    """Every pulumi_kubernetes call in specs/ builds an ``...Args``: the resources are the components'."""
    calls = []
    for path in (COMPONENTS / "specs").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                dotted = ast.unparse(node.func)
                if dotted.startswith("k8s.") and not dotted.endswith("Args"):
                    calls.append(f"{path.name}: {dotted}")
    assert calls == []


def test_the_layer_check_sees_a_violation(tmp_path: Path) -> None:
    """A render module importing a spec is reported, however it imports it."""
    probe = tmp_path / "probe.py"
    probe.write_text("from ..specs import pod\nfrom .acl import AclUser\nimport components.specs.services\n")
    assert imported_components(probe, "render.probe") == {"specs", "render.acl", "specs.services"}
    assert layer_of("specs") > layer_of("render")


def test_the_package_docstring_maps_every_module() -> None:
    """components/__init__.py is the map a newcomer opens first: it lists exactly the modules."""
    text = (COMPONENTS / "__init__.py").read_text()
    listed = set()
    package = ""
    for line in text.splitlines():
        match = re.match(r"^( *)([a-z_]+)(/|\.py)\s", line)
        if not match:
            continue
        indent, name, kind = match.groups()
        if kind == "/":
            package = name
        else:
            listed.add(f"{package}.{name}" if indent and package else name)
            if not indent:
                package = ""
    assert listed == {module_name(p) for p in modules()}


def reads_pulumi_config(path: Path) -> list[str]:
    """Where ``path`` reads stack configuration: ``pulumi.Config``, or the runtime's config store."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and ast.unparse(node) in ("pulumi.Config", "pulumi.runtime.config"):
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pulumi"):
            names = {a.name for a in node.names}
            if (node.module == "pulumi.runtime" and "config" in names) or "Config" in names:
                found.append(f"line {node.lineno}: from {node.module} import {', '.join(sorted(names))}")
    return found


def test_only_the_loader_reads_pulumi_config(tmp_path: Path) -> None:
    """Everything else gets validated settings: a component that read a key itself would bypass the
    checks and the one RunError."""
    readers = {module_name(p) for p in modules() if reads_pulumi_config(p)}
    assert readers == {"config.loader"}
    probe = tmp_path / "probe.py"
    probe.write_text("import pulumi\nport = pulumi.Config('valkey').get_int('port')\n")
    assert reads_pulumi_config(probe) == ["line 2: pulumi.Config"]
