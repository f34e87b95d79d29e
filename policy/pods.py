"""Pod-spec inspection: where a resource keeps its pod spec, its containers, what they run.

A *Valkey pod* is a pod spec (Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob)
with a container that runs a ``valkey`` image or ``valkey-server``. Every container of such a pod
is checked.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from typing import Any

from resource_inputs import as_list, dig, strings

STATEFULSET = "kubernetes:apps/v1:StatefulSet"
_TEMPLATE = ("spec", "template", "spec")
POD_SPEC_PATHS: dict[str, tuple[str, ...]] = {
    "kubernetes:core/v1:Pod": ("spec",),
    "kubernetes:apps/v1:Deployment": _TEMPLATE,
    STATEFULSET: _TEMPLATE,
    "kubernetes:apps/v1:DaemonSet": _TEMPLATE,
    "kubernetes:apps/v1:ReplicaSet": _TEMPLATE,
    "kubernetes:batch/v1:Job": _TEMPLATE,
    "kubernetes:batch/v1:CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}

SERVERS = {"valkey-server", "redis-server"}  # the valkey image links redis-server to valkey-server


def pod_spec(resource_type: str, props: Mapping[str, Any]) -> Mapping[str, Any] | None:
    path = POD_SPEC_PATHS.get(resource_type)
    spec = dig(props, *path) if path else None
    return spec if isinstance(spec, Mapping) else None


def all_containers(spec: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Init, regular and ephemeral containers: each runs in the pod, each is checked."""
    found = []
    for key in ("initContainers", "containers", "ephemeralContainers"):
        found += [c for c in as_list(spec.get(key)) if isinstance(c, Mapping)]
    return found


def argv(container: Mapping[str, Any]) -> list[str]:
    return strings(container.get("command")) + strings(container.get("args"))


def _image_name(image: str) -> str:
    """``docker.io/valkey/valkey:8.1@sha256:..`` -> ``valkey``."""
    last = image.split("@", 1)[0].rsplit("/", 1)[-1]
    return last.split(":", 1)[0]


def simple_commands(container: Mapping[str, Any]) -> list[list[str]]:
    """Simple commands the container runs: its argv, plus each shell command inside an argument
    that holds a script (``sh -c '...'``), split on ``; | & ( )`` and newlines, quotes dropped."""
    args = argv(container)
    segments = [args]
    for arg in args:
        if any(c.isspace() for c in arg):
            for part in re.split(r"\|\||&&|[;&|\n()`]", arg):
                words = [w.strip("\"'") for w in part.split()]
                if words:
                    segments.append(words)
    return segments


def program_of(words: list[str]) -> str | None:
    """The command a simple command runs, past ``VAR=value`` prefixes and ``exec``/``env``."""
    for word in words:
        if re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", word) or word in ("exec", "env", "command", "nice"):
            continue
        return posixpath.basename(word)
    return None


START_SCRIPTS = ("start.sh", "single.sh")
"""A group member's Valkey container runs ``sh <dir>/start.sh``, which execs valkey-server on a
config file it writes at each start, including the rendered one its ``CONFIG_FILE`` names; a single
pod's runs ``sh <dir>/single.sh``, which execs valkey-server on ``CONFIG_FILE`` itself (the
program's components/render/scripts/)."""


def started_config(container: Mapping[str, Any]) -> str | None:
    """The rendered config file of a container started by a start script of the program, else None."""
    words = argv(container)
    if len(words) < 2 or posixpath.basename(words[0]) not in ("sh", "ash", "bash", "dash"):
        return None
    if posixpath.basename(words[1]) not in START_SCRIPTS:
        return None
    env = {e.get("name"): e.get("value") for e in as_list(container.get("env")) if isinstance(e, Mapping)}
    config = env.get("CONFIG_FILE")
    return config if isinstance(config, str) and config else None


def runs_server(container: Mapping[str, Any]) -> bool:
    """The container runs valkey-server: named in its argv or a script, the group start script, or
    the image's default command (a valkey image with no ``command``, arguments empty or options/
    config file only)."""
    if any(program_of(words) in SERVERS for words in simple_commands(container)):
        return True
    if started_config(container) is not None:
        return True
    image = container.get("image")
    args = strings(container.get("args"))
    return (
        not as_list(container.get("command"))
        and isinstance(image, str)
        and "valkey" in _image_name(image)
        and (not args or args[0].startswith("-") or args[0].endswith(".conf"))
    )


def is_valkey_pod(spec: Mapping[str, Any]) -> bool:
    """A container runs a valkey image or valkey-server (a Redis pod is not in scope)."""
    for container in all_containers(spec):
        image = container.get("image")
        if isinstance(image, str) and "valkey" in _image_name(image):
            return True
        if any(program_of(words) == "valkey-server" for words in simple_commands(container)):
            return True
    return False


def valkey_pod_spec(resource_type: str, props: Mapping[str, Any]) -> Mapping[str, Any] | None:
    spec = pod_spec(resource_type, props)
    return spec if spec is not None and is_valkey_pod(spec) else None
