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

ALL_KEYS_ALL_COMMANDS = "~* &* +@all"
# The replication user's commands, measured on Valkey 8.1.8: PSYNC is the sync itself (without
# it a replica falls back to SYNC and every reconnect is a full resync), REPLCONF carries the
# replica's listening port and offset ACKs (without it the primary cannot track lag). PING is
# not needed: a replica's handshake PING is accepted even when it is refused.
REPLICATION_RULES = "-@all +psync +replconf"
PROBE_RULES = "-@all +ping"
# Applies changed credentials and renewed certificates without a restart: ACL LOAD re-reads the
# ACL file, CONFIG SET masterauth / tls-cert-file takes the new values.
RELOADER_RULES = "-@all +acl|load +config|set"
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


def server_users(passwords: Passwords, denied_commands: Sequence[str] = ()) -> list[AclUser]:
    """Every user of an instance's server."""
    denied = "".join(f" -{command}" for command in denied_commands)
    users = [
        # Applications keep the seed's `AUTH <password>`: that authenticates the default user.
        AclUser(DEFAULT_USER, passwords.client, ALL_KEYS_ALL_COMMANDS + denied),
        AclUser(REPLICATION_USER, passwords.replication, REPLICATION_RULES),
        AclUser(PROBE_USER, (passwords.probe,), PROBE_RULES),
        AclUser(RELOADER_USER, (passwords.reloader,), RELOADER_RULES),
        # Operators (promotion, break-glass); its password is in a Secret, never in the pod.
        AclUser(ADMIN_USER, (passwords.admin,), ALL_KEYS_ALL_COMMANDS),
    ]
    if passwords.metrics:
        # The exporter logs in with the current password; the ACL also accepts the previous one.
        users.append(AclUser(EXPORTER_USER, passwords.metrics, EXPORTER_RULES))
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
