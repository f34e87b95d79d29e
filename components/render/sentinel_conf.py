"""The two rendered parts of a group's Sentinel config; sentinel.sh (render/scripts/) puts this
pod's identity and the group's current primary between them, on a writable volume.

Both parts hold passwords (the Sentinel's own, the nodes' Sentinel user's): they live in the
config Secret, never in a ConfigMap. Sentinel rewrites its config file as it learns, with these
passwords in it: that copy is on the pod's own emptyDir, gone with the pod.
"""

from __future__ import annotations

from dataclasses import dataclass

from .acl import SENTINEL_USER, password_hash
from .valkey_conf import TlsFiles, listeners, quote

PEER_USER = "peer"
CLIENT_USER = "client"
METRICS_USER = "metrics"
# Measured on Valkey 8.1.8 and 9.1.2 (tests/test_sentinel_real.py repeats it): a Sentinel sends its
# peers PING, PUBLISH on the hello channel, CLIENT SETNAME and SENTINEL IS-MASTER-DOWN-BY-ADDR (its
# vote: without it no failover happens). The pod's own scripts, logged in as the same user, ask
# for the primary (start.sh, sentinel.sh) and start a planned failover (prestop.sh).
PEER_RULES = (
    "-@all +ping +publish +client|setname +sentinel|is-master-down-by-addr "
    "+sentinel|get-master-addr-by-name +sentinel|failover &__sentinel__:hello"
)
# Applications (valkey-py's Sentinel asks SENTINEL MASTERS and SLAVES; others ask
# GET-MASTER-ADDR-BY-NAME, REPLICAS, SENTINELS), and clients that listen for +switch-master.
# Refused: FAILOVER, SET, REMOVE, MONITOR, RESET, CONFIG, ACL, INFO.
CLIENT_RULES = (
    "-@all +ping +sentinel|get-master-addr-by-name +sentinel|masters +sentinel|master +sentinel|slaves "
    "+sentinel|replicas +sentinel|sentinels +subscribe &+switch-master"
)
# The Sentinel's exporter (render/exporter.py sentinel_args). Measured on Valkey 8.1.8 and 9.1.2 with
# Debian's exporter 1.45 (tests/test_sentinel_exporter_real.py repeats it): after AUTH it sends
# INFO ALL (the Sentinel section: masters, tilt, each master's status), then per master SENTINEL
# MASTERS, CKQUORUM, SENTINELS and SLAVES (quorum, healthy Sentinels and replicas); with these
# rules the ACL LOG stays empty. Also sent, and answered "unknown command" by a Sentinel before
# any ACL check: "- GET *" (1.45's skipped CONFIG), LATENCY LATEST, SLOWLOG LEN/GET. The source of
# later releases (v1.88.0 and after, read) sends the same, no LATENCY with our flag, and COMMAND
# INFO COMMANDLOG, which is refused here and logged (one ACL LOG entry, counted): the exporter then
# skips COMMANDLOG, which a Sentinel does not have anyway. SENTINEL CONFIG GET only with
# --include-config-metrics, which we do not set. Read-only: no FAILOVER, SET, RESET, no channel.
METRICS_RULES = "-@all +info +sentinel|masters +sentinel|ckquorum +sentinel|sentinels +sentinel|slaves"


@dataclass(frozen=True)
class SentinelSettings:
    """Everything the Sentinel's config depends on, already validated."""

    port: int
    master_name: str
    down_after_ms: int
    failover_timeout_ms: int
    peer_password: str
    """The Sentinels' peer user: each other, and the pod's scripts."""
    client_password: str
    """The Sentinels' application user."""
    node_password: str
    """The nodes' Sentinel user's password."""
    data_dir: str
    tls: TlsFiles | None = None
    """Serve TLS only and reach the nodes over TLS."""
    metrics_password: str | None = None
    """The Sentinel's exporter's user; None without monitoring (no such user)."""


def render_sentinel_conf(settings: SentinelSettings) -> str:
    """The global part: listeners, hostnames instead of IPs, the Sentinels' own password."""
    lines = [
        "# Rendered by the valkey Pulumi program; sentinel.sh adds this pod's identity and the primary.",
        *listeners(settings.port, settings.tls, "# TLS only, towards clients, peers and the nodes alike."),
        "daemonize no",
        'logfile ""',
        f"dir {quote(settings.data_dir)}",
        "# Pod IPs change: nodes and Sentinels are known by their pods' DNS names only.",
        "sentinel resolve-hostnames yes",
        "sentinel announce-hostnames yes",
        "# Scripts cannot be set at run time (SENTINEL SET ... notification-script).",
        "sentinel deny-scripts-reconfig yes",
        "# Its users: no default user; peers (and this pod's scripts), applications, its exporter.",
        "user default off",
        f"user {PEER_USER} on #{password_hash(settings.peer_password)} resetchannels {PEER_RULES}",
        f"user {CLIENT_USER} on #{password_hash(settings.client_password)} resetchannels {CLIENT_RULES}",
        *(
            [f"user {METRICS_USER} on #{password_hash(settings.metrics_password)} resetchannels {METRICS_RULES}"]
            if settings.metrics_password
            else []
        ),
        f"sentinel sentinel-user {PEER_USER}",
        f"sentinel sentinel-pass {quote(settings.peer_password)}",
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
