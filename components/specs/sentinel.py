"""A group member's Sentinel sidecar and the writable volumes of a group's pod, placed into the pod
by ``specs.pod``. The Sentinel's config parts are rendered in ``render.sentinel_conf``; sentinel.sh
(render/scripts/) assembles them at each start."""

from __future__ import annotations

import pulumi_kubernetes as k8s

from ..render import pod_scripts
from ..render.paths import CONFIG_DIR, RUN_DIR, SENTINEL_DIR, SOCKET_DIR, TLS_DIR
from .security_context import restricted

PORT_NAME = "sentinel"
RUN_VOLUME = "run"
"""The Valkey container's own writable config file (as start.sh wrote it)."""
SOCKET_VOLUME = "socket"
"""The unix socket, shared with the label updater; the config file (with a password once Sentinel
rewrote it) is not on it."""
SENTINEL_VOLUME = "sentinel"
"""The Sentinel's config file, which it rewrites. An emptyDir: it survives the container's
restarts, not the pod's; a new pod starts from what the group says (sentinel.sh)."""


def volumes() -> list[k8s.core.v1.VolumeArgs]:
    # Memory-backed: a few kilobytes, and nothing of it needs to outlive the pod.
    return [
        k8s.core.v1.VolumeArgs(
            name=name, empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs(medium="Memory", size_limit="1Mi")
        )
        for name in (RUN_VOLUME, SOCKET_VOLUME, SENTINEL_VOLUME)
    ]


def run_mounts() -> list[k8s.core.v1.VolumeMountArgs]:
    """The Valkey container's: its config file's volume and the socket's."""
    return [
        k8s.core.v1.VolumeMountArgs(name=RUN_VOLUME, mount_path=RUN_DIR),
        k8s.core.v1.VolumeMountArgs(name=SOCKET_VOLUME, mount_path=SOCKET_DIR),
    ]


def container(
    image: str,
    *,
    uid: int,
    gid: int,
    env: list[k8s.core.v1.EnvVarArgs],
    port: int,
    tls: bool,
    keeper: bool = False,
    extra_mounts: list[k8s.core.v1.VolumeMountArgs] | None = None,
) -> k8s.core.v1.ContainerArgs:
    """The Sentinel, started by sentinel.sh from the config Secret; with ``keeper``, in a group that
    follows another region or a migration source, keeper.sh in its place (no port: it only points
    its node). ``extra_mounts``: a migrating keeper's source login (specs/pod.py)."""
    mounts = [
        k8s.core.v1.VolumeMountArgs(name="config", mount_path=CONFIG_DIR, read_only=True),
        k8s.core.v1.VolumeMountArgs(name=SENTINEL_VOLUME, mount_path=SENTINEL_DIR),
    ]
    if tls:
        mounts.append(k8s.core.v1.VolumeMountArgs(name="tls", mount_path=TLS_DIR, read_only=True))
    mounts += extra_mounts or []
    return k8s.core.v1.ContainerArgs(
        name="keeper" if keeper else "sentinel",
        image=image,
        image_pull_policy="IfNotPresent",
        command=pod_scripts.KEEPER_COMMAND if keeper else pod_scripts.SENTINEL_COMMAND,
        env=env,
        ports=None if keeper else [k8s.core.v1.ContainerPortArgs(name=PORT_NAME, container_port=port, protocol="TCP")],
        resources=k8s.core.v1.ResourceRequirementsArgs(
            requests={"cpu": "20m", "memory": "32Mi"}, limits={"memory": "64Mi"}
        ),
        security_context=restricted(uid, gid),
        volume_mounts=mounts,
    )
