"""The metrics sidecars' containers and volumes, placed into the pod by ``specs.pod``: the node's
exporter in every pod, the Sentinel's in every pod of a group with Sentinels.

Their flags and password files are rendered in ``render.exporter``.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

import pulumi_kubernetes as k8s

from ..config.models import METRICS_PORT, SENTINEL_METRICS_PORT
from ..render import exporter
from ..render.paths import (
    CA_KEY,
    EXPORTER_CA_FILE,
    EXPORTER_DIR,
    EXPORTER_PASSWORD_FILE,
    EXPORTER_PASSWORD_KEY,
    SENTINEL_EXPORTER_CA_FILE,
    SENTINEL_EXPORTER_DIR,
    SENTINEL_EXPORTER_PASSWORD_FILE,
    SENTINEL_EXPORTER_PASSWORD_KEY,
)
from .security_context import restricted

# v1.92.1: a recent release that has --disable-scrape-endpoint (since v1.83.0). The tag without a
# suffix is the scratch image, which runs as USER 59000:59000 and has no shell.
IMAGE = "oliver006/redis_exporter:v1.92.1"
PORT_NAME = "metrics"
EXPORTER_UID = 59000
VOLUME_NAME = "exporter-credentials"
SENTINEL_CONTAINER = "sentinel-exporter"
SENTINEL_PORT_NAME = "sentinelmetrics"
"""The Sentinel's exporter's port: on the headless Service, the ServiceMonitor's second endpoint.
Port names are at most 15 characters: no hyphen fits ("sentinel-metrics" is 16)."""
SENTINEL_VOLUME_NAME = "sentinel-exporter-credentials"


@dataclass(frozen=True)
class _Sidecar:
    """What tells the two exporters apart besides their flags."""

    name: str
    port_name: str
    port: int
    volume: str
    directory: str
    password_key: str
    password_file: str
    ca_file: str


NODE = _Sidecar(
    "exporter", PORT_NAME, METRICS_PORT, VOLUME_NAME, EXPORTER_DIR, EXPORTER_PASSWORD_KEY, EXPORTER_PASSWORD_FILE,
    EXPORTER_CA_FILE,
)  # fmt: skip
SENTINEL = _Sidecar(
    SENTINEL_CONTAINER, SENTINEL_PORT_NAME, SENTINEL_METRICS_PORT, SENTINEL_VOLUME_NAME, SENTINEL_EXPORTER_DIR,
    SENTINEL_EXPORTER_PASSWORD_KEY, SENTINEL_EXPORTER_PASSWORD_FILE, SENTINEL_EXPORTER_CA_FILE,
)  # fmt: skip


def volume(config_secret: str, tls: bool = False) -> k8s.core.v1.VolumeArgs:
    """Only the exporter's keys of the config Secret, and under TLS the CA bundle: the sidecar never
    sees valkey.conf or a replica's masterauth files."""
    return _volume(NODE, config_secret, tls)


def sentinel_volume(config_secret: str, tls: bool = False) -> k8s.core.v1.VolumeArgs:
    """The Sentinel's exporter's password file (and the CA bundle): nothing of the node's or the Sentinel's own."""
    return _volume(SENTINEL, config_secret, tls)


def _volume(sidecar: _Sidecar, config_secret: str, tls: bool) -> k8s.core.v1.VolumeArgs:
    items = [k8s.core.v1.KeyToPathArgs(key=sidecar.password_key, path=posixpath.basename(sidecar.password_file))]
    if tls:
        items.append(k8s.core.v1.KeyToPathArgs(key=CA_KEY, path=posixpath.basename(sidecar.ca_file)))
    return k8s.core.v1.VolumeArgs(
        name=sidecar.volume,
        secret=k8s.core.v1.SecretVolumeSourceArgs(
            secret_name=config_secret,
            items=items,
            # Group-readable: the exporter's uid reads it through the pod's fsGroup.
            default_mode=0o440,
        ),
    )


def container(valkey_port: int, image: str = IMAGE, tls: bool = False) -> k8s.core.v1.ContainerArgs:
    """The sidecar, with ``volume()`` mounted at ``EXPORTER_DIR``; ``tls`` connects over TLS,
    verifying against the mounted CA bundle."""
    flags = exporter.args(valkey_port, NODE.password_file, tls_ca_path=NODE.ca_file if tls else None)
    return _container(NODE, image, flags)


def sentinel_container(sentinel_port: int, image: str = IMAGE, tls: bool = False) -> k8s.core.v1.ContainerArgs:
    """The Sentinel's exporter, with ``sentinel_volume()`` mounted at ``SENTINEL_EXPORTER_DIR``."""
    flags = exporter.sentinel_args(sentinel_port, SENTINEL.password_file, tls_ca_path=SENTINEL.ca_file if tls else None)
    return _container(SENTINEL, image, flags)


def _container(sidecar: _Sidecar, image: str, flags: list[str]) -> k8s.core.v1.ContainerArgs:
    def health(period: int, failures: int) -> k8s.core.v1.ProbeArgs:
        # /health answers without asking Valkey: a slow or loading Valkey never restarts the exporter,
        # and the exporter never makes the pod unready on Valkey's account.
        return k8s.core.v1.ProbeArgs(
            http_get=k8s.core.v1.HTTPGetActionArgs(path="/health", port=sidecar.port_name),
            period_seconds=period,
            timeout_seconds=3,
            failure_threshold=failures,
        )

    return k8s.core.v1.ContainerArgs(
        name=sidecar.name,
        image=image,
        image_pull_policy="IfNotPresent",
        # The image's entrypoint, spelt out: what runs is exactly this line.
        command=["/redis_exporter"],
        args=flags + exporter.PINNED_ONLY_ARGS,
        ports=[k8s.core.v1.ContainerPortArgs(name=sidecar.port_name, container_port=sidecar.port, protocol="TCP")],
        resources=k8s.core.v1.ResourceRequirementsArgs(
            requests={"cpu": "10m", "memory": "64Mi"}, limits={"memory": "64Mi"}
        ),
        security_context=restricted(EXPORTER_UID, EXPORTER_UID),
        volume_mounts=[k8s.core.v1.VolumeMountArgs(name=sidecar.volume, mount_path=sidecar.directory, read_only=True)],
        liveness_probe=health(period=10, failures=3),
        readiness_probe=health(period=10, failures=3),
    )
