"""The two rendered parts of a group's Sentinel config; sentinel.sh (render/scripts/) puts this
pod's identity and the group's current primary between them, on a writable volume.

Both parts hold passwords (the Sentinel's own, the nodes' Sentinel user's): they live in the
config Secret, never in a ConfigMap. Sentinel rewrites its config file as it learns, with these
passwords in it: that copy is on the pod's own emptyDir, gone with the pod.
"""

from __future__ import annotations

from dataclasses import dataclass

from .acl import SENTINEL_USER
from .valkey_conf import TlsFiles, quote


@dataclass(frozen=True)
class SentinelSettings:
    """Everything the Sentinel's config depends on, already validated."""

    port: int
    master_name: str
    down_after_ms: int
    failover_timeout_ms: int
    password: str
    """The Sentinels' own password: their peers, start.sh and Sentinel-aware clients log in with it."""
    node_password: str
    """The nodes' Sentinel user's password."""
    data_dir: str
    tls: TlsFiles | None = None
    """Serve TLS only and reach the nodes over TLS."""


def render_sentinel_conf(settings: SentinelSettings) -> str:
    """The global part: listeners, hostnames instead of IPs, the Sentinels' own password."""
    if settings.tls is None:
        listeners = [f"port {settings.port}"]
    else:
        listeners = [
            "# TLS only, towards clients, peers and the nodes alike.",
            "port 0",
            f"tls-port {settings.port}",
            f"tls-cert-file {quote(settings.tls.cert)}",
            f"tls-key-file {quote(settings.tls.key)}",
            f"tls-ca-cert-file {quote(settings.tls.ca)}",
            "tls-auth-clients no",
            "tls-replication yes",
        ]
    lines = [
        "# Rendered by the valkey Pulumi program; sentinel.sh adds this pod's identity and the primary.",
        *listeners,
        "daemonize no",
        'logfile ""',
        f"dir {quote(settings.data_dir)}",
        "# Pod IPs change: nodes and Sentinels are known by their pods' DNS names only.",
        "sentinel resolve-hostnames yes",
        "sentinel announce-hostnames yes",
        "# Scripts cannot be set at run time (SENTINEL SET ... notification-script).",
        "sentinel deny-scripts-reconfig yes",
        "# Its own password: peers, start.sh and Sentinel-aware clients log in with it.",
        f"requirepass {quote(settings.password)}",
        f"sentinel sentinel-pass {quote(settings.password)}",
    ]
    return "\n".join(lines) + "\n"


def render_sentinel_master_conf(settings: SentinelSettings) -> str:
    """The part after ``sentinel monitor``: how the Sentinels log in to the nodes, and timeouts."""
    name = settings.master_name
    lines = [
        f"sentinel auth-user {name} {SENTINEL_USER}",
        f"sentinel auth-pass {name} {quote(settings.node_password)}",
        f"sentinel down-after-milliseconds {name} {settings.down_after_ms}",
        f"sentinel failover-timeout {name} {settings.failover_timeout_ms}",
        "# One replica at a time resyncs with a new primary; the others keep serving reads.",
        f"sentinel parallel-syncs {name} 1",
    ]
    return "\n".join(lines) + "\n"
