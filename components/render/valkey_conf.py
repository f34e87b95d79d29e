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

from .paths import AOF_DIR_NAME, MASTERAUTH_CONFIG_FILE


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


LEADER_REPLICA_PRIORITY = 100
"""A leading group's members: any may be promoted (Valkey's default). A fenced one runs with 0
until probe.sh gives it this back (render/scripts/fence.sh)."""


def replica_priority(follows: bool) -> int:
    """A member's replica-priority: 0 in a group that follows another region (no Sentinel may
    promote it), else LEADER_REPLICA_PRIORITY."""
    return 0 if follows else LEADER_REPLICA_PRIORITY


@dataclass(frozen=True)
class GroupMember:
    """A member of a group (replicas > 1): start.sh writes its role and name at each start, into a
    file that includes this one first (render/scripts/start.sh)."""

    replication_user: str
    """Every member may become a replica at run time (Sentinel), so each logs in as this user."""
    max_replica_lag_seconds: int
    """A primary refuses writes once no replica has acknowledged the stream for this long."""
    socket: str
    """The unix socket the label updater asks ROLE on (plaintext, inside the pod only)."""
    replica_priority: int = LEADER_REPLICA_PRIORITY
    """0: no Sentinel ever promotes this node (a group that follows another region)."""


@dataclass(frozen=True)
class ServerSettings:
    """Everything valkey.conf depends on, already validated."""

    port: int
    maxmemory: int
    maxmemory_policy: str
    repl_backlog_size: int
    replica_buffer_limit: int
    """``client-output-buffer-limit replica``'s hard limit: at least the backlog (sizing.py)."""
    clients_memory: int
    """``maxmemory-clients``: every normal and pub/sub client's buffers together; 0: off."""
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
    group: GroupMember | None = None
    """Set in a group: start.sh decides the role and writes ``replicaof``; ``upstream`` then only
    names the other region's login (a group that follows it)."""
    relaxed_rdb_version_check: bool = False
    """``rdb-version-check relaxed``: load an RDB of a newer or foreign format (a migration source's,
    Redis 7.4's RDB 12: Valkey 9 and later); off, the line is not written (Valkey before 8.1 does
    not know it)."""


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
        "# Memory: the container limit leaves room above maxmemory for forks and for the buffers",
        '# bounded here (README "Sizing"). Past maxmemory-clients the largest clients are closed;',
        "# a replica whose unsent stream passes its hard limit is cut; no soft limit cuts a long sync.",
        f"maxmemory {settings.maxmemory}",
        f"maxmemory-policy {settings.maxmemory_policy}",
        f"maxmemory-clients {settings.clients_memory}",
        f"client-output-buffer-limit normal 0 0 0 replica {settings.replica_buffer_limit} 0 0 pubsub 32mb 8mb 60",
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
    if settings.relaxed_rdb_version_check:
        lines += [
            "",
            "# A migration source streams an RDB of a format this Valkey does not write (docs/migration.md).",
            "rdb-version-check relaxed",
        ]
    if settings.group is not None:
        lines += ["", *_group(settings.group)]
    elif settings.upstream is not None:
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


def _group(group: GroupMember) -> list[str]:
    return [
        "# A group member: start.sh includes this file, then adds replica-announce-ip, replicaof",
        "# (unless it starts as the primary) and the masterauth include.",
        f"masteruser {quote(group.replication_user)}",
        f"replica-priority {group.replica_priority}",
        "# Cut off from every replica for longer than this, the primary refuses writes: those the",
        "# group would lose when it fails over without it.",
        "min-replicas-to-write 1",
        f"min-replicas-max-lag {group.max_replica_lag_seconds}",
        "# Inside the pod only, plaintext even with TLS: the label updater asks ROLE here.",
        f"unixsocket {quote(group.socket)}",
        "unixsocketperm 700",
    ]


def _persistence(enabled: bool, rewrite_min_size: int | None) -> list[str]:
    if not enabled:
        return ["# No persistence: a local instance whose data may be lost with its pod.", "appendonly no", 'save ""']
    rewrite = [f"auto-aof-rewrite-min-size {rewrite_min_size}"] if rewrite_min_size else []
    return [
        "# Persistence: AOF on the PersistentVolume; an acknowledged write is on disk within 1 s.",
        "appendonly yes",
        "appendfsync everysec",
        f"appenddirname {quote(AOF_DIR_NAME)}",
        "aof-use-rdb-preamble yes",
        *rewrite,
        "# No RDB snapshots: the AOF is the persistence, and each snapshot would be another fork.",
        'save ""',
    ]


def _listeners(settings: ServerSettings) -> list[str]:
    comment = "# TLS only: the plaintext port is closed; replicas verify their primary against the CA."
    return listeners(settings.port, settings.tls, comment)


def listeners(port: int, tls: TlsFiles | None, comment: str) -> list[str]:
    """A server's (or a Sentinel's) port: plaintext, or TLS only, verifying the nodes it
    replicates from (or monitors) against the CA; clients need no certificate."""
    if tls is None:
        return [f"port {port}"]
    return [
        comment,
        "port 0",
        f"tls-port {port}",
        f"tls-cert-file {quote(tls.cert)}",
        f"tls-key-file {quote(tls.key)}",
        f"tls-ca-cert-file {quote(tls.ca)}",
        "tls-auth-clients no",
        "tls-replication yes",
    ]
