"""valkey.conf, rendered from validated settings, and the file a replica's valkey.conf includes.

valkey.conf holds no secret: a replica's ``masterauth`` is the one line of its own file
(``render_masterauth_conf``), included last. The users are in ``render.acl``.

Why an include, measured on Valkey 8.1.8 and 9.1.2 (tests/test_scripts.py repeats what matters):
the included line is read in place, so the last one of a directive wins; a missing include file
stops the server at start ("Fatal error, can't open config file"), hence the include only on a
replica, which always has the file. CONFIG REWRITE (Sentinel's, once the config is a writable copy)
never edits the included file and keeps the include line, but writes the live value as
``primaryauth "..."`` into the main file: in place where the main file already sets it, else
appended after the include, where it then wins at the next start over the included file.
"""

from __future__ import annotations

from dataclasses import dataclass

from .paths import MASTERAUTH_CONFIG_FILE


@dataclass(frozen=True)
class Upstream:
    """Where a replica replicates from, and as whom."""

    host: str
    port: int
    username: str
    password: str


@dataclass(frozen=True)
class TlsFiles:
    """Where the server certificate, its key and the trusted CA bundle are mounted."""

    cert: str
    key: str
    ca: str


@dataclass(frozen=True)
class ServerSettings:
    """Everything valkey.conf depends on, already validated."""

    port: int
    maxmemory: int
    maxmemory_policy: str
    repl_backlog_size: int
    data_dir: str
    acl_file: str
    upstream: Upstream | None = None
    """Set on a replica; a primary has none."""
    tls: TlsFiles | None = None
    """Serve TLS only (the plaintext port is off) and replicate over TLS."""
    persistence: bool = True
    """AOF on; off only for local instances whose data may be lost with the pod."""
    aof_rewrite_min_size: int | None = None
    """``auto-aof-rewrite-min-size``; None keeps Valkey's 64mb."""
    masterauth_file: str = MASTERAUTH_CONFIG_FILE
    """Where a replica's ``render_masterauth_conf`` file is (the pod's unless given)."""


def quote(value: str) -> str:
    """A config-file string argument, quoted the way Valkey's parser (sdssplitargs) reads it."""
    if any(c in value for c in "\r\n\0"):
        raise ValueError("config values cannot contain line breaks or NUL")
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def render_valkey_conf(settings: ServerSettings) -> str:
    lines = [
        "# Rendered by the valkey Pulumi program; edit the stack config, not this file.",
        *_listeners(settings),
        "bind * -::*",
        "protected-mode yes",
        "daemonize no",
        'logfile ""',
        f"dir {quote(settings.data_dir)}",
        f"aclfile {quote(settings.acl_file)}",
        "",
        "# Memory: the container limit leaves room above maxmemory for forks and buffers.",
        f"maxmemory {settings.maxmemory}",
        f"maxmemory-policy {settings.maxmemory_policy}",
        "",
        *_persistence(settings.persistence, settings.aof_rewrite_min_size),
        "",
        "# Replication: diskless full sync without the 5 s default wait, and a backlog sized",
        "# for the cross-region outage the stack config tolerates, kept while no replica is connected.",
        "repl-diskless-sync yes",
        "repl-diskless-sync-delay 0",
        f"repl-backlog-size {settings.repl_backlog_size}",
        "repl-backlog-ttl 0",
        "replica-read-only yes",
        "replica-serve-stale-data yes",
    ]
    if settings.upstream is not None:
        upstream = settings.upstream
        lines += [
            "",
            "# This node is a replica: it follows the primary region and refuses writes.",
            f"replicaof {upstream.host} {upstream.port}",
            f"masteruser {quote(upstream.username)}",
            "# Its password (masterauth) is in its own file. Last: no line of this file overrides it.",
            f"include {quote(settings.masterauth_file)}",
        ]
    return "\n".join(lines) + "\n"


def render_masterauth_conf(upstream: Upstream) -> str:
    """The file a replica's valkey.conf includes: the upstream replication user's password."""
    return f"masterauth {quote(upstream.password)}\n"


def _persistence(enabled: bool, rewrite_min_size: int | None) -> list[str]:
    if not enabled:
        return ["# No persistence: a local instance whose data may be lost with its pod.", "appendonly no", 'save ""']
    rewrite = [f"auto-aof-rewrite-min-size {rewrite_min_size}"] if rewrite_min_size else []
    return [
        "# Persistence: AOF on the PersistentVolume; an acknowledged write is on disk within 1 s.",
        "appendonly yes",
        "appendfsync everysec",
        'appenddirname "appendonlydir"',
        "aof-use-rdb-preamble yes",
        *rewrite,
        "# No RDB snapshots: the AOF is the persistence, and each snapshot would be another fork.",
        'save ""',
    ]


def _listeners(settings: ServerSettings) -> list[str]:
    if settings.tls is None:
        return [f"port {settings.port}"]
    return [
        "# TLS only: the plaintext port is closed; replicas verify their primary against the CA.",
        "port 0",
        f"tls-port {settings.port}",
        f"tls-cert-file {quote(settings.tls.cert)}",
        f"tls-key-file {quote(settings.tls.key)}",
        f"tls-ca-cert-file {quote(settings.tls.ca)}",
        "tls-auth-clients no",
        "tls-replication yes",
    ]
