"""Runs the real Pulumi program (``__main__.py``) under Pulumi's mock engine and captures what it
would create: every resource's inputs, and the stack's exports resolved to plain values.

A stack is rendered from its real ``Pulumi.<stack>.yaml``; a replica stack's StackReference is
answered with the exports of a rendered primary stack, never with a hand-written dictionary.
The offline render (``python -m offline``) and the tests (tests/harness.py) both run this;
``offline.rendered`` holds what a run returns and the accessors that read it.
"""

from __future__ import annotations

import copy
import json
import runpy
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime import settings as runtime_settings
from pulumi.runtime.mocks import MockMonitor
from pulumi.runtime.stack import Stack, run_in_stack
from pulumi.runtime.sync_await import _sync_await

from .rendered import SECRET_SIG, SECRET_VALUE, Captured, Registration, Rendered, is_secret_envelope, unwrap

__all__ = [
    "PROJECT",
    "RANDOM_PASSWORD",
    "ROOT",
    "SECRET_SIG",
    "SECRET_VALUE",
    "STACK_REFERENCE",
    "CaptureMocks",
    "Captured",
    "RecordingMonitor",
    "Registration",
    "Rendered",
    "engine_config",
    "is_secret_envelope",
    "render",
    "render_both",
    "run_program",
    "stack_file_config",
    "unwrap",
    "with_overrides",
]

ROOT = Path(__file__).resolve().parents[1]
"""The project directory (Pulumi.yaml, __main__.py)."""
PROJECT = "valkey"
STACK_REFERENCE = "pulumi:pulumi:StackReference"
RANDOM_PASSWORD = "random:index/randomPassword:RandomPassword"

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


class RecordingMonitor(MockMonitor):
    """The mock engine does not pass resource options to ``new_resource``: record them here."""

    def __init__(self, mocks: CaptureMocks):
        super().__init__(mocks)
        self.capture = mocks

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)  # type: ignore[no-untyped-call]  # pulumi's MockMonitor
        if request.type != "pulumi:pulumi:Stack":
            dependencies = set(request.dependencies)
            for urns in request.propertyDependencies.values():
                dependencies |= set(urns.urns)
            timeouts = request.customTimeouts
            captured = self.capture.resources.get((request.type, request.name))
            self.capture.registrations[response.urn] = Registration(
                urn=response.urn,
                typ=request.type,
                name=request.name,
                custom=bool(request.custom),
                parent=request.parent,
                dependencies=frozenset(dependencies),
                provider=request.provider,
                protect=bool(request.protect),
                delete_before_replace=bool(request.deleteBeforeReplace),
                ignore_changes=tuple(request.ignoreChanges),
                replace_on_changes=tuple(request.replaceOnChanges),
                retain_on_delete=bool(request.retainOnDelete),
                custom_timeouts={k: v for k in ("create", "update", "delete") if (v := getattr(timeouts, k))},
                deleted_with=request.deletedWith,
                inputs=captured.inputs if captured else {},
            )
        return response


class CaptureMocks(pulumi.runtime.Mocks):
    def __init__(self, reference_outputs: dict[str, Rendered] | None = None):
        self.reference_outputs = reference_outputs or {}
        self.resources: dict[tuple[str, str], Captured] = {}
        self.references: list[str] = []
        self.registrations: dict[str, Registration] = {}
        """By URN: every resource the program registered, with its options (not the stack itself)."""
        self.passwords: list[str] = []
        """Every value the mock RandomPassword generated: none may leak outside a Secret."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        state = dict(args.inputs)
        if args.typ == STACK_REFERENCE:
            name = args.inputs["name"]
            self.references.append(name)
            source = self.reference_outputs.get(name)
            if source is None:
                raise AssertionError(f"the program referenced stack {name!r}, which this test did not render")
            return name, {
                "name": name,
                "outputs": copy.deepcopy(source.exports),
                "secretOutputNames": sorted(source.secret_exports),
            }
        if args.typ == RANDOM_PASSWORD:
            # Deterministic, distinct per resource, and the length the program asked for.
            length = int(args.inputs.get("length", 16))
            seed = f"{pulumi.get_stack()}{args.name}".replace("-", "")
            state["result"] = (seed * length)[:length]
            self.passwords.append(state["result"])
        self.resources[(args.typ, args.name)] = Captured(args.typ, args.name, args.inputs, args.provider or None)
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, None


def stack_file_config(stack: str) -> dict[str, Any]:
    """The ``config:`` map of ``Pulumi.<stack>.yaml`` with the namespace stripped from keys."""
    data = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())
    prefix = f"{PROJECT}:"
    return {k[len(prefix) :]: v for k, v in (data.get("config") or {}).items() if k.startswith(prefix)}


def with_overrides(config: dict[str, Any], overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """A copy of ``config`` (a stack file's config map) with ``overrides`` applied in order. A key is
    a path of map keys (and list indexes) joined by dots: ``"instances.sessions.maxmemory"`` sets
    one field of one instance and keeps every other setting of the file; a plain ``"tls"`` replaces
    the whole top-level value. Missing maps on the way are created. A value of None removes what is
    at the path (nothing, if it is not there). A key with a dot in it (a label such as
    ``app.kubernetes.io/team``) cannot be a path segment: override its parent map instead."""
    result = copy.deepcopy(config)
    for path, value in (overrides or {}).items():
        *parents, last = path.split(".")
        node: Any = result
        for depth, key in enumerate(parents):
            where = ".".join(parents[: depth + 1])
            child = _child(node, key, path)
            if child is None:
                if value is None:
                    break  # removing below a map that is not there: nothing to remove
                child = {}
                _set(node, key, child, path)
            if not isinstance(child, dict | list):
                raise ValueError(f"override {path!r}: {where} is {child!r}, neither a map nor a list")
            node = child
        else:
            if value is None:
                _remove(node, last, path)
            else:
                _set(node, last, copy.deepcopy(value), path)
    return result


def _index(node: list[Any], key: str, path: str) -> int:
    if not key.isdigit() or int(key) >= len(node):
        raise ValueError(f"override {path!r}: {key!r} is not an index of a list of {len(node)}")
    return int(key)


def _child(node: dict[str, Any] | list[Any], key: str, path: str) -> Any:
    return node[_index(node, key, path)] if isinstance(node, list) else node.get(key)


def _set(node: dict[str, Any] | list[Any], key: str, value: Any, path: str) -> None:
    if isinstance(node, list):
        node[_index(node, key, path)] = value
    else:
        node[key] = value


def _remove(node: dict[str, Any] | list[Any], key: str, path: str) -> None:
    if isinstance(node, list):
        del node[_index(node, key, path)]
    else:
        node.pop(key, None)


def engine_config(config: dict[str, Any]) -> dict[str, str]:
    """Config as the Pulumi engine hands it to a program: strings, objects as JSON."""
    out = {}
    for key, value in config.items():
        if isinstance(value, str):
            text = value
        elif isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (int, float)):
            text = str(value)
        else:
            text = json.dumps(value)
        out[f"{PROJECT}:{key}"] = text
    return out


def render(
    stack: str,
    config: Mapping[str, Any] | None = None,
    references: dict[str, Rendered] | None = None,
    from_stack_file: bool = True,
    *,
    mocks: CaptureMocks | None = None,
    secret_keys: list[str] | None = None,
) -> Rendered:
    """Run ``__main__.py`` for ``stack``. ``config`` overrides the stack file's config, by
    top-level key or by path (``with_overrides``; a value of None removes); ``references`` answers
    StackReferences by fully qualified name. Pass ``mocks`` to inspect what was registered when the
    program raises; ``secret_keys`` are the (top-level) keys set with ``--secret``."""
    values = with_overrides(stack_file_config(stack) if from_stack_file else {}, config)
    secrets = [f"{PROJECT}:{key}" for key in secret_keys or []]
    return run_program(
        ROOT / "__main__.py", PROJECT, stack, engine_config(values), references=references, mocks=mocks, secrets=secrets
    )


def run_program(
    path: Path,
    project: str,
    stack: str,
    config: dict[str, str],
    *,
    references: dict[str, Rendered] | None = None,
    mocks: CaptureMocks | None = None,
    secrets: list[str] | None = None,
) -> Rendered:
    """Run the Pulumi program at ``path`` as the language host would, with ``config`` as the engine
    passes it (``<project>:<key>`` -> string), and capture what it declares and exports."""
    mocks = mocks or CaptureMocks()
    mocks.reference_outputs = references or {}
    monitor = RecordingMonitor(mocks)
    pulumi.runtime.set_mocks(mocks, project=project, stack=stack, preview=False, monitor=monitor)
    pulumi.runtime.set_all_config(config, secrets or [])
    runtime_settings.SETTINGS.rpc_manager.clear()
    runtime_settings.SETTINGS.outputs.clear()
    # run_in_stack is the SDK's own entrypoint: it creates the stack resource, runs the module,
    # then awaits what the module registered with pulumi.run and exports its result.
    runtime_settings.ROOT.set(None)
    stacks: list[Stack] = []

    def program() -> None:
        root = runtime_settings.get_root_resource()
        assert isinstance(root, Stack), root
        stacks.append(root)
        runpy.run_path(str(path), run_name="__main__")

    _sync_await(run_in_stack(program))

    exports: dict[str, Any] = {}
    secret: set[str] = set()

    async def resolve(outputs: dict[str, Any]) -> None:
        for name, value in outputs.items():
            out = pulumi.Output.from_input(value)
            exports[name] = await out.future()
            if await out.is_secret():
                secret.add(name)

    _sync_await(resolve(dict(stacks[0].outputs)))
    return Rendered(stack, mocks.resources, exports, secret, mocks.references, mocks.passwords, mocks.registrations)


def render_both(
    region1: Mapping[str, Any] | None = None, region2: Mapping[str, Any] | None = None
) -> tuple[Rendered, Rendered]:
    """Region 1, then region 2 with its StackReference answered by region 1's exports; each with
    its overrides (see ``render``)."""
    r1 = render("region1", region1)
    primary_stack = with_overrides(stack_file_config("region2"), region2)["primaryStack"]
    r2 = render("region2", region2, references={primary_stack: r1})
    return r1, r2
