"""Render every Kubernetes object of the stacks to YAML files, without a cluster or the Pulumi CLI.

    python -m offline --out rendered            # every Pulumi.<stack>.yaml, primaries first
    python -m offline --out rendered region2    # region2, and the primary stack it reads

The program runs under Pulumi's mock engine with the real stack files. A replica stack's
StackReference is answered by its primary stack's render in the same run. Secret values are
redacted: generated passwords do not exist outside a real deployment, and nothing secret-shaped
should land in a repository. Each stack gets one file per object and ``outputs.yaml``.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from components.render.paths import ACL_KEY, PUBLIC_KEYS

from .engine import ROOT, SECRET_SIG, SECRET_VALUE, Rendered, render, stack_file_config

REDACTED = "<redacted>"
# Files of a config Secret a reviewer should read: those that hold no secret whole (valkey.conf,
# the CA bundle, the scripts: render/paths.py lists them), the ACL file without its password hashes.
# Every other key is redacted whole.
REVIEWABLE: dict[str, Callable[[str], str]] = {
    **{key: lambda text: text for key in PUBLIC_KEYS},
    ACL_KEY: lambda text: re.sub(r"#[0-9a-f]{64}", f"#{REDACTED}", text),
}


def redact(value: Any) -> Any:
    """Replace what Pulumi marks secret: a secret map keeps its keys, every value is redacted but
    the reviewable files' non-secret lines."""
    if isinstance(value, dict):
        if value.get(SECRET_SIG) == SECRET_VALUE:
            inner = value["value"]
            if not isinstance(inner, dict):
                return REDACTED
            return {k: REVIEWABLE[k](v) if k in REVIEWABLE else REDACTED for k, v in inner.items()}
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)  # the mock engine turns every number into a float
    return value


def manifests(rendered: Rendered) -> dict[str, dict[str, Any]]:
    """File name -> manifest, for every Kubernetes object of a render."""
    files = {}
    for (typ, _), captured in rendered.resources.items():
        if not typ.startswith("kubernetes:") or typ.startswith("pulumi:providers"):
            continue
        manifest = redact(captured.inputs)
        meta = manifest["metadata"]
        scope = meta.get("namespace", "_cluster")
        # A Patch resource changes fields of an object Kubernetes made (a StatefulSet's claim): apply
        # it with `kubectl apply --server-side` onto that object, never as an object of its own.
        patch = ".patch" if typ.endswith("Patch") else ""
        files[f"{scope}.{manifest['kind']}.{meta['name']}{patch}.yaml".lower()] = manifest
    return dict(sorted(files.items()))


def outputs(rendered: Rendered) -> dict[str, Any]:
    return {name: REDACTED if name in rendered.secret_exports else value for name, value in rendered.exports.items()}


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (config files, scripts, certificates) as literal blocks, readable in diffs."""


def _str(dumper: yaml.SafeDumper, text: str) -> yaml.Node:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _str)


def dump(value: Any) -> str:
    return yaml.dump(value, Dumper=_Dumper, sort_keys=True, width=120)


def write(rendered: Rendered, directory: Path) -> int:
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    objects = manifests(rendered)
    for name, manifest in objects.items():
        (directory / name).write_text(dump(manifest))
    (directory / "outputs.yaml").write_text(dump(outputs(rendered)))
    return len(objects)


def render_stacks(stacks: list[str]) -> dict[str, Rendered]:
    """Render ``stacks`` (and the primary stacks they read), primaries first."""
    primaries = {}
    wanted: list[str] = []
    for stack in stacks:
        config = stack_file_config(stack)
        primary = config.get("primaryStack") if config.get("role") == "replica" else None
        if primary:
            primaries[stack] = primary
            short = primary.rsplit("/", 1)[-1]
            if short not in wanted:
                wanted.append(short)
        if stack not in wanted:
            wanted.append(stack)
    order = sorted(wanted, key=lambda s: s in primaries)
    rendered: dict[str, Rendered] = {}
    for stack in order:
        references = {}
        if stack in primaries:
            source = primaries[stack].rsplit("/", 1)[-1]
            references[primaries[stack]] = rendered[source]
        rendered[stack] = render(stack, references=references)
    return rendered


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m offline", description=__doc__.split("\n\n")[0])
    parser.add_argument("stacks", nargs="*", help="stack names (default: every Pulumi.<stack>.yaml)")
    parser.add_argument("--out", type=Path, required=True, help="directory; one subdirectory per stack")
    args = parser.parse_args(argv)
    stacks = args.stacks or sorted(p.name.split(".")[1] for p in ROOT.glob("Pulumi.*.yaml"))
    for stack, rendered in render_stacks(stacks).items():
        count = write(rendered, args.out / stack)
        print(f"{stack}: {count} objects -> {args.out / stack}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
