"""The files of an instance's config Secret, rendered from validated settings.

``restart_checksum`` covers whole keys: those a running pod cannot take live (``RESTART_KEYS``).
Every other key is taken live (``LIVE_KEYS`` says how), mostly by the reloader sidecar.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace

from ..config.models import Failover, Instance
from ..sizing import (
    aof_rewrite_min_bytes,
    backlog_bytes,
    clients_bytes,
    replica_buffer_limit_bytes,
    server_maxmemory_bytes,
)
from . import acl, exporter, sentinel_conf, valkey_conf
from .paths import (
    ACL_FILE,
    ACL_KEY,
    CA_FILE,
    CA_KEY,
    CONFIG_KEY,
    DATA_DIR,
    EXPORTER_PASSWORD_KEY,
    FENCE_SCRIPT_KEY,
    LABELER_PASSWORD_KEY,
    LOGIN_SCRIPT_KEY,
    MASTERAUTH_CONFIG_FILE,
    MASTERAUTH_CONFIG_KEY,
    MASTERAUTH_KEY,
    PRESTOP_SCRIPT_KEY,
    PROBE_PASSWORD_KEY,
    PROBE_SCRIPT_KEY,
    RELOADER_PASSWORD_KEY,
    RELOADER_SCRIPT_KEY,
    SENTINEL_CONFIG_KEY,
    SENTINEL_DIR,
    SENTINEL_EXPORTER_PASSWORD_KEY,
    SENTINEL_MASTER_CONFIG_KEY,
    SENTINEL_PASSWORD_KEY,
    SENTINEL_PEER_PASSWORD_KEY,
    SINGLE_SCRIPT_KEY,
    SOCKET_FILE,
    TLS_CERT_FILE,
    TLS_KEY_FILE,
    UPSTREAM_KEY,
)
from .pod_scripts import GROUP_SCRIPT_KEYS, GROUP_SCRIPTS, SCRIPTS, SINGLE_SCRIPTS


@dataclass(frozen=True)
class Group:
    """What a group's (replicas > 1) files depend on besides the instance."""

    master_name: str
    """The name its Sentinels monitor it under."""
    failover: Failover
    follows: bool = False
    """The group follows another region (this stack's role is replica): no Sentinel; pod 0 or the
    lowest member that answers replicates across regions, the others from it (keeper.sh)."""
    source: MigrationSource | None = None
    """The group follows a migration source instead (``follows`` too): its head replicates that
    server with the source's own login (render/scripts/login.sh), its members the head with the
    group's own replication login."""


@dataclass(frozen=True)
class MigrationSource:
    """The server a migrating group replicates from: where only, its login is a Secret of its own."""

    host: str
    port: int


def server_settings(
    instance: Instance,
    upstream: valkey_conf.Upstream | None = None,
    tls: valkey_conf.TlsFiles | None = None,
    *,
    data_dir: str = DATA_DIR,
    acl_file: str = ACL_FILE,
    masterauth_file: str = MASTERAUTH_CONFIG_FILE,
    group: Group | None = None,
    socket: str = SOCKET_FILE,
) -> valkey_conf.ServerSettings:
    """What valkey.conf says for an instance; the paths are the pod's unless given."""
    member = None
    if group is not None:
        member = valkey_conf.GroupMember(
            replication_user=acl.REPLICATION_USER,
            max_replica_lag_seconds=int(group.failover.max_replica_lag.total_seconds()),
            socket=socket,
            replica_priority=valkey_conf.replica_priority(group.follows),
        )
    return valkey_conf.ServerSettings(
        port=instance.port,
        maxmemory=server_maxmemory_bytes(instance),
        maxmemory_policy=instance.maxmemory_policy,
        repl_backlog_size=backlog_bytes(instance),
        replica_buffer_limit=replica_buffer_limit_bytes(instance),
        clients_memory=clients_bytes(instance),
        data_dir=data_dir,
        acl_file=acl_file,
        upstream=upstream,
        tls=tls,
        persistence=instance.persistence,
        aof_rewrite_min_size=aof_rewrite_min_bytes(instance),
        masterauth_file=masterauth_file,
        group=member,
        relaxed_rdb_version_check=instance.migration is not None
        and instance.migration.method == "replication"
        and instance.migration.rdb_version_check == "relaxed",
    )


def sentinel_settings(
    group: Group, passwords: acl.Passwords, tls: valkey_conf.TlsFiles | None, *, data_dir: str = SENTINEL_DIR
) -> sentinel_conf.SentinelSettings:
    if passwords.sentinel is None or passwords.sentinel_peer is None or passwords.sentinel_client is None:
        raise ValueError("a group needs the Sentinels' passwords")
    return sentinel_conf.SentinelSettings(
        port=group.failover.sentinel_port,
        master_name=group.master_name,
        down_after_ms=int(group.failover.down_after.total_seconds() * 1000),
        failover_timeout_ms=int(group.failover.timeout.total_seconds() * 1000),
        peer_password=passwords.sentinel_peer,
        client_password=passwords.sentinel_client,
        node_password=passwords.sentinel,
        data_dir=data_dir,
        tls=tls,
        metrics_password=passwords.sentinel_metrics,
    )


def render_files(
    instance: Instance,
    passwords: acl.Passwords,
    upstream: valkey_conf.Upstream | None,
    ca_bundle: str | None,
    denied_commands: Sequence[str],
    *,
    group: Group | None = None,
) -> dict[str, str]:
    """Secret keys -> file contents. ``ca_bundle`` set means TLS; ``group`` a Sentinel group."""
    tls = valkey_conf.TlsFiles(TLS_CERT_FILE, TLS_KEY_FILE, CA_FILE) if ca_bundle else None
    if group is not None and upstream is not None:
        # The members of a following group log in to its head with the other region's password,
        # the one the head itself uses upstream: one masterauth, whoever is the head.
        passwords = replace(passwords, replication=(*passwords.replication, upstream.password))
    files = {
        CONFIG_KEY: valkey_conf.render_valkey_conf(server_settings(instance, upstream, tls, group=group)),
        PROBE_PASSWORD_KEY: passwords.probe,
        RELOADER_PASSWORD_KEY: passwords.reloader,
        **SCRIPTS,
    }
    if upstream is not None and group is None:
        # The same password twice, rendered from the one value, never parsed back: a config line
        # for the server's start, the raw password for the reloader's CONFIG SET.
        files[MASTERAUTH_CONFIG_KEY] = valkey_conf.render_masterauth_conf(upstream)
        files[MASTERAUTH_KEY] = upstream.password
    if group is not None:
        files |= _group_files(group, passwords, tls, upstream)
    else:
        files |= SINGLE_SCRIPTS
    if passwords.metrics:
        files[EXPORTER_PASSWORD_KEY] = exporter.password_file(
            instance.port, passwords.metrics[0], tls=ca_bundle is not None
        )
    files[ACL_KEY] = acl.render_acl(acl.server_users(passwords, denied_commands))
    if ca_bundle:
        files[CA_KEY] = ca_bundle
    return files


def _group_files(
    group: Group, passwords: acl.Passwords, tls: valkey_conf.TlsFiles | None, upstream: valkey_conf.Upstream | None
) -> dict[str, str]:
    """A group member's Sentinel config, scripts and passwords. Every member, the primary too, has
    a masterauth: Sentinel may make any of them a replica of another member at run time. A
    following group's masterauth is the other region's replication password; a migrating one's is
    its own (only the head logs in to the source, with the source's login: login.sh)."""
    sentinel = sentinel_settings(group, passwords, tls)
    login = upstream or valkey_conf.Upstream(
        host="", port=0, username=acl.REPLICATION_USER, password=passwords.replication[0]
    )
    files = {}
    if upstream is not None:
        files[UPSTREAM_KEY] = f"{upstream.host} {upstream.port}\n"
    elif group.source is not None:
        files[UPSTREAM_KEY] = f"{group.source.host} {group.source.port}\n"
    if sentinel.metrics_password:
        files[SENTINEL_EXPORTER_PASSWORD_KEY] = exporter.sentinel_password_file(
            sentinel.port, sentinel.metrics_password, tls=tls is not None
        )
    return files | {
        MASTERAUTH_CONFIG_KEY: valkey_conf.render_masterauth_conf(login),
        MASTERAUTH_KEY: login.password,
        SENTINEL_CONFIG_KEY: sentinel_conf.render_sentinel_conf(sentinel),
        SENTINEL_MASTER_CONFIG_KEY: sentinel_conf.render_sentinel_master_conf(sentinel),
        SENTINEL_PEER_PASSWORD_KEY: sentinel.peer_password,
        SENTINEL_PASSWORD_KEY: sentinel.node_password,
        LABELER_PASSWORD_KEY: passwords.labeler or "",
        **GROUP_SCRIPTS,
    }


RESTART_KEYS = (
    CONFIG_KEY,
    RELOADER_PASSWORD_KEY,
    RELOADER_SCRIPT_KEY,
    SENTINEL_CONFIG_KEY,
    SENTINEL_MASTER_CONFIG_KEY,
    *GROUP_SCRIPT_KEYS,
    FENCE_SCRIPT_KEY,
    LOGIN_SCRIPT_KEY,
    SINGLE_SCRIPT_KEY,
)
"""What a running pod cannot take live: valkey.conf (read at start only; it holds no password), the
reloader's own password (it logs in with it to apply everything else), reloader.sh (a running
loop never re-reads itself); in a group, the Sentinel's config and the scripts that start the
server and the Sentinel, read at start only, and the label updater's loop; the fence's scripts,
read at start only (a single pod's start script, fence.sh); login.sh, sourced by scripts read at
start only."""
LIVE_KEYS = {
    ACL_KEY: "the reloader's ACL LOAD",
    MASTERAUTH_KEY: "the reloader's CONFIG SET masterauth",
    MASTERAUTH_CONFIG_KEY: "read at start only, but the same password as MASTERAUTH_KEY, applied live",
    CA_KEY: "the reloader's TLS reload (CONFIG SET tls-ca-cert-file)",
    PROBE_PASSWORD_KEY: "read at each probe; the server takes the new one with ACL LOAD",
    PROBE_SCRIPT_KEY: "read by the kubelet at each probe",
    EXPORTER_PASSWORD_KEY: "the exporter's reload, which the reloader calls",
    SENTINEL_PEER_PASSWORD_KEY: "read by the pod's scripts at each use; never rotated (also in sentinel.conf)",
    SENTINEL_PASSWORD_KEY: "read by prestop.sh at each use; never rotated (also in sentinel-master.conf)",
    SENTINEL_EXPORTER_PASSWORD_KEY: "read by the Sentinel's exporter at its start; never rotated (its hash is in "
    "sentinel.conf)",
    PRESTOP_SCRIPT_KEY: "read by the kubelet at each stop of a group member's Valkey container",
    UPSTREAM_KEY: "read by start.sh at each start and by keeper.sh at each round",
    LABELER_PASSWORD_KEY: "read by the label updater at each ROLE; the server takes it with ACL LOAD",
}
"""Keys taken without a restart, and how. A key in neither is a test failure (tests/test_scripts.py)."""


def restart_checksum(files: dict[str, str]) -> str:
    """Hash of the ``RESTART_KEYS`` of an instance's config files: its change rolls the pod."""
    restart_relevant = {key: files[key] for key in RESTART_KEYS if key in files}
    return hashlib.sha256(json.dumps(restart_relevant, sort_keys=True).encode()).hexdigest()
