"""The ACL file: every user a Valkey server knows, with its rules. The one home of "which users
exist and what may each do".

Passwords reach the file only as SHA-256 hashes. Every instance gets the same users, primary or
replica (a replica may be promoted); the metrics user only with the exporter sidecar.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_USER = "default"
REPLICATION_USER = "replication"
PROBE_USER = "probe"
RELOADER_USER = "reloader"
ADMIN_USER = "admin"
EXPORTER_USER = "metrics"
SENTINEL_USER = "sentinel"
LABELER_USER = "labeler"

ALL_KEYS_ALL_COMMANDS = "~* &* +@all"
# The replication user's commands, measured on Valkey 8.1.8: PSYNC is the sync itself (without
# it a replica falls back to SYNC and every reconnect is a full resync), REPLCONF carries the
# replica's listening port and offset ACKs (without it the primary cannot track lag). PING is
# not needed: a replica's handshake PING is accepted even when it is refused.
REPLICATION_RULES = "-@all +psync +replconf"
# INFO: probe.sh reads a fenced node's replication and persistence state (render/scripts/fence.sh).
PROBE_RULES = "-@all +ping +info"
# In a group, start.sh and sentinel.sh also ask the peers' ROLE with it (render/scripts/group.sh).
GROUP_PROBE_RULES = PROBE_RULES + " +role"
# What Sentinel sends a node, measured on Valkey 8.1.8 and 9.1.2 (tests/test_sentinel_real.py):
# PING and INFO to watch it, PUBLISH/SUBSCRIBE on its hello channel to find the other Sentinels,
# and a failover's reconfiguration as one MULTI/EXEC of SLAVEOF, CONFIG REWRITE and CLIENT KILL
# (a refused command inside it makes the whole reconfiguration silently not happen). 9.1's
# SENTINEL FAILOVER ... COORDINATED sends FAILOVER and CLIENT PAUSE/UNPAUSE: granted on 8.1 too,
# where they exist and Sentinel never sends them, because one ACL file serves both versions
# during an upgrade. CLIENT SETNAME names its connections; SCRIPT KILL ends a busy script.
SENTINEL_RULES = (
    "-@all +ping +info +subscribe +publish +slaveof +multi +exec +config|rewrite +client|kill "
    "+client|setname +script|kill +failover +client|pause +client|unpause &__sentinel__:hello"
)
# The label updater only needs to know the role (render/scripts/labeler.sh).
LABELER_RULES = "-@all +role"
# Applies changed credentials and renewed certificates without a restart: ACL LOAD re-reads the
# ACL file, CONFIG SET masterauth / tls-cert-file takes the new values. ROLE: in a group that
# migrates by replication, which login the node's current target needs (render/scripts/login.sh).
RELOADER_RULES = "-@all +acl|load +config|set +role"
# Measured on Valkey 8.1.8 with Debian's exporter 1.45 (tests/test_monitoring_e2e.py repeats it):
# INFO is the only command whose refusal fails a scrape (redis_up 0), and INFO ALL holds every
# input of the recording rules. Everything else the exporter tries only adds optional metrics and
# is refused: CONFIG GET (redis_config_*; it would also hand out masterauth, the replication
# password, in plain text; skipped by a flag), CLIENT SETNAME (skipped by a flag), SLOWLOG LEN/GET
# (GET returns slow commands' arguments: key names and values), LATENCY LATEST/HISTOGRAM. From the
# source of later versions: COMMANDLOG LEN and CONFIG GET commandlog-* are refused alike; CLIENT
# LIST, MODULE LIST, key checks (SCAN, GET, ...) and CLUSTER INFO run only when a flag we do not
# set or cluster mode asks for them. No key patterns (~) and no channels: it never reads data.
EXPORTER_RULES = "-@all +info"


@dataclass(frozen=True)
class AclUser:
    name: str
    passwords: tuple[str, ...]
    """Plaintext passwords; the file gets their SHA-256. Two during a rotation, else one."""
    rules: str


@dataclass(frozen=True)
class Passwords:
    """Plaintext passwords of one instance's users. Users that rotate live hold the current
    password first and, while a rotation accepts it, the previous one."""

    client: tuple[str, ...]
    replication: tuple[str, ...]
    probe: str
    reloader: str
    admin: str
    metrics: tuple[str, ...] = ()
    """The metrics exporter's user; none without the exporter sidecar."""
    sentinel: str | None = None
    """The Sentinels' user on the nodes; only in a group (replicas > 1)."""
    labeler: str | None = None
    """The label updater's user; only in a group."""
    sentinel_peer: str | None = None
    """Not a node's user: the Sentinels' peer user (render/sentinel_conf.py); only in a group."""
    sentinel_client: str | None = None
    """Not a node's user: the Sentinels' user for applications; only in a group."""
    sentinel_metrics: str | None = None
    """Not a node's user: the Sentinels' exporter's user; only in a group, with the exporter."""


def server_users(passwords: Passwords, denied_commands: Sequence[str] = ()) -> list[AclUser]:
    """Every user of an instance's server."""
    denied = "".join(f" -{command}" for command in denied_commands)
    users = [
        # Applications keep the seed's `AUTH <password>`: that authenticates the default user.
        AclUser(DEFAULT_USER, passwords.client, ALL_KEYS_ALL_COMMANDS + denied),
        AclUser(REPLICATION_USER, passwords.replication, REPLICATION_RULES),
        AclUser(PROBE_USER, (passwords.probe,), GROUP_PROBE_RULES if passwords.sentinel else PROBE_RULES),
        AclUser(RELOADER_USER, (passwords.reloader,), RELOADER_RULES),
        # Operators (promotion, break-glass); its password is in a Secret, never in the pod.
        AclUser(ADMIN_USER, (passwords.admin,), ALL_KEYS_ALL_COMMANDS),
    ]
    if passwords.metrics:
        # The exporter logs in with the current password; the ACL also accepts the previous one.
        users.append(AclUser(EXPORTER_USER, passwords.metrics, EXPORTER_RULES))
    if passwords.sentinel:
        users.append(AclUser(SENTINEL_USER, (passwords.sentinel,), SENTINEL_RULES))
    if passwords.labeler:
        users.append(AclUser(LABELER_USER, (passwords.labeler,), LABELER_RULES))
    return users


def password_hash(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()


def render_acl(users: Sequence[AclUser]) -> str:
    lines = []
    for user in users:
        if not user.passwords:
            raise ValueError(f"ACL user {user.name} has no password")
        hashes = " ".join(f"#{password_hash(p)}" for p in user.passwords)
        lines.append(f"user {user.name} on {hashes} resetchannels {user.rules}")
    return "\n".join(lines) + "\n"
