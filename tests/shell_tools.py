"""PATH for running a pod script under test: the host's tools (dash, GNU or mawk), or only busybox's
applets, as in the image (busybox ash and its awk, sed, od...). Used by the script tests that run
each case with both."""

from __future__ import annotations

import shutil
from collections.abc import Iterable

import pytest

KINDS = ("host", "busybox")


def tool_path(kind: str, tmp_path_factory: pytest.TempPathFactory, tools: Iterable[str]) -> str:
    """``kind`` "host": the host's /usr/bin:/bin; "busybox": a directory of links to busybox, one
    per tool in ``tools``, and nothing else."""
    if kind == "host":
        return "/usr/bin:/bin"
    busybox = shutil.which("busybox")
    assert busybox, "busybox is missing: .ci/run installs it"
    links = tmp_path_factory.mktemp("busybox")
    for tool in tools:
        (links / tool).symlink_to(busybox)
    return str(links)
