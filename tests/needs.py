"""What some tests need from the machine, as skip markers whose reason says what is missing and how
to get it. CI (``bash .ci/run``) runs as root and installs every Debian package named here, so
there nothing is skipped; a developer's machine may lack some.

    pytestmark = needs.root                          # a whole module
    @needs.debian({"prometheus": ["promtool"]})      # one test: package -> the commands of it used
"""

from __future__ import annotations

import os
import shutil

import pytest

root = pytest.mark.skipif(
    os.geteuid() != 0,
    reason="needs root (the pod runner makes network namespaces, mounts and veth pairs): run pytest as root, "
    "as CI does with bash .ci/run; its pods also need Debian's iproute2, wget and prometheus-redis-exporter",
)
"""For tests that start rendered pods with tests/podrunner."""


def debian(packages: dict[str, list[str]]) -> pytest.MarkDecorator:
    """Skip unless every command is on PATH; ``packages`` maps a Debian package to the commands of it
    the test runs. The reason names only what is missing."""
    missing = {package: [c for c in commands if shutil.which(c) is None] for package, commands in packages.items()}
    missing = {package: commands for package, commands in missing.items() if commands}
    wanted = " and ".join(f"{package} ({', '.join(commands)})" for package, commands in missing.items())
    reason = f"needs Debian's {wanted}: apt-get install {' '.join(missing)}, or run bash .ci/run (it installs them)"
    return pytest.mark.skipif(bool(missing), reason=reason)
