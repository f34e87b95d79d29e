"""The metrics sidecar's container and volume, placed into the pod by ``specs.pod``.

Its flags and password file are rendered in ``render.exporter``.
"""

from __future__ import annotations

import posixpath

import pulumi_kubernetes as k8s

from ..config.models import METRICS_PORT
from ..render import exporter
from ..render.paths import CA_KEY, EXPORTER_CA_FILE, EXPORTER_DIR, EXPORTER_PASSWORD_FILE, EXPORTER_PASSWORD_KEY
from .security_context import restricted

# v1.92.1: a recent release that has --disable-scrape-endpoint (since v1.83.0). The tag without a
# suffix is the scratch image, which runs as USER 59000:59000 and has no shell.
IMAGE = "oliver006/redis_exporter:v1.92.1"
PORT_NAME = "metrics"
EXPORTER_UID = 59000
VOLUME_NAME = "exporter-credentials"


def volume(config_secret: str, tls: bool = False) -> k8s.core.v1.VolumeArgs:
    """Only the exporter's keys of the config Secret, and under TLS the CA bundle: the sidecar never
    sees valkey.conf or a replica's masterauth files."""
    items = [k8s.core.v1.KeyToPathArgs(key=EXPORTER_PASSWORD_KEY, path=posixpath.basename(EXPORTER_PASSWORD_FILE))]
    if tls:
        items.append(k8s.core.v1.KeyToPathArgs(key=CA_KEY, path=posixpath.basename(EXPORTER_CA_FILE)))
    return k8s.core.v1.VolumeArgs(
        name=VOLUME_NAME,
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

    def health(period: int, failures: int) -> k8s.core.v1.ProbeArgs:
        # /health answers without asking Valkey: a slow or loading Valkey never restarts the exporter,
        # and the exporter never makes the pod unready on Valkey's account.
        return k8s.core.v1.ProbeArgs(
            http_get=k8s.core.v1.HTTPGetActionArgs(path="/health", port=PORT_NAME),
            period_seconds=period,
            timeout_seconds=3,
            failure_threshold=failures,
        )

    flags = exporter.args(valkey_port, EXPORTER_PASSWORD_FILE, tls_ca_path=EXPORTER_CA_FILE if tls else None)
    return k8s.core.v1.ContainerArgs(
        name="exporter",
        image=image,
        image_pull_policy="IfNotPresent",
        # The image's entrypoint, spelt out: what runs is exactly this line.
        command=["/redis_exporter"],
        args=flags + exporter.PINNED_ONLY_ARGS,
        ports=[k8s.core.v1.ContainerPortArgs(name=PORT_NAME, container_port=METRICS_PORT, protocol="TCP")],
        resources=k8s.core.v1.ResourceRequirementsArgs(
            requests={"cpu": "10m", "memory": "64Mi"}, limits={"memory": "64Mi"}
        ),
        security_context=restricted(EXPORTER_UID, EXPORTER_UID),
        volume_mounts=[k8s.core.v1.VolumeMountArgs(name=VOLUME_NAME, mount_path=EXPORTER_DIR, read_only=True)],
        liveness_probe=health(period=10, failures=3),
        readiness_probe=health(period=10, failures=3),
    )
