"""The shell scripts a Valkey pod runs, and what they are told: their command lines and environments.

The scripts are real files in ``scripts/`` (shellcheck reads them, tests run them as they are),
shipped byte for byte in the instance's config Secret and run as ``sh /etc/valkey/<script>``: the
Secret volume is mounted 0440, not executable. Their parameters are environment variables of the
container (and the probe's mode an argument); nothing is formatted into a script.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

from .acl import PROBE_USER, RELOADER_USER, REPLICATION_USER, SENTINEL_USER
from .exporter import RELOAD_URL
from .paths import (
    ACL_FILE,
    AOF_MANIFEST_FILE,
    CA_FILE,
    CONFIG_FILE,
    FENCE_FILE,
    FENCE_SCRIPT_KEY,
    GROUP_SCRIPT_KEY,
    KEEPER_SCRIPT,
    KEEPER_SCRIPT_KEY,
    LABELER_SCRIPT_KEY,
    LOGIN_SCRIPT_KEY,
    MASTERAUTH_CONFIG_FILE,
    MASTERAUTH_FILE,
    MIGRATION_FILE,
    PRESTOP_SCRIPT,
    PRESTOP_SCRIPT_KEY,
    PROBE_PASSWORD_FILE,
    PROBE_SCRIPT,
    PROBE_SCRIPT_KEY,
    RELOADER_PASSWORD_FILE,
    RELOADER_SCRIPT,
    RELOADER_SCRIPT_KEY,
    RUNTIME_CONFIG_FILE,
    SENTINEL_CONFIG_FILE,
    SENTINEL_MASTER_CONFIG_FILE,
    SENTINEL_PASSWORD_FILE,
    SENTINEL_PEER_PASSWORD_FILE,
    SENTINEL_RUNTIME_CONFIG_FILE,
    SENTINEL_SCRIPT,
    SENTINEL_SCRIPT_KEY,
    SINGLE_SCRIPT,
    SINGLE_SCRIPT_KEY,
    SOURCE_LOGIN_DIR,
    START_SCRIPT,
    START_SCRIPT_KEY,
    TLS_CERT_FILE,
    TLS_KEY_FILE,
    UPSTREAM_FILE,
)
from .sentinel_conf import PEER_USER
from .valkey_conf import replica_priority


def _read(key: str) -> str:
    """The script shipped under Secret key ``key``: the file of that name in ``scripts/``."""
    return resources.files(__package__).joinpath("scripts", key).read_text(encoding="utf-8")


SCRIPTS = {key: _read(key) for key in (PROBE_SCRIPT_KEY, RELOADER_SCRIPT_KEY, FENCE_SCRIPT_KEY, LOGIN_SCRIPT_KEY)}
"""Config Secret key -> script, in every pod."""
SINGLE_SCRIPTS = {SINGLE_SCRIPT_KEY: _read(SINGLE_SCRIPT_KEY)}
"""Config Secret key -> script, in a single pod only (replicas: 1)."""
GROUP_SCRIPT_KEYS = (GROUP_SCRIPT_KEY, START_SCRIPT_KEY, SENTINEL_SCRIPT_KEY, LABELER_SCRIPT_KEY, KEEPER_SCRIPT_KEY)
GROUP_SCRIPTS = {key: _read(key) for key in (*GROUP_SCRIPT_KEYS, PRESTOP_SCRIPT_KEY)}
"""Config Secret key -> script, in a group's pods only. prestop.sh is read at each stop (a live
key); the others at their container's start."""
PRESTOP_COMMAND = ["sh", PRESTOP_SCRIPT]
KEEPER_COMMAND = ["sh", KEEPER_SCRIPT]
KEEPER_INTERVAL_SECONDS = 2
KEEPER_CONFIRMATIONS = 3
"""keeper.sh acts on a difference seen this many rounds in a row: about 6 s after a head is lost."""
HANDOVER_TIMEOUT_SECONDS = 10
"""prestop.sh: how long the replicas may take to catch up, and the Sentinels to agree, each."""
START_COMMAND = ["sh", START_SCRIPT]
SINGLE_COMMAND = ["sh", SINGLE_SCRIPT]
FENCE_HOST = "fenced.invalid"
"""What a fenced node replicates from (render/scripts/fence.sh): under .invalid, it resolves nowhere.
The alert on fenced nodes matches it (render/alerts.py)."""
DATA_EXPECTED_ENV = "DATA_EXPECTED"
"""The Valkey container's variable from the instance's marker ConfigMap (specs/marker.py)."""
SENTINEL_COMMAND = ["sh", SENTINEL_SCRIPT]
SENTINEL_PEER_USER = PEER_USER
"""The Sentinels' user the pod's scripts ask them with (render/sentinel_conf.py)."""

READY, ALIVE = "ready", "alive"
"""probe.sh's modes: ``ready`` passes on PONG only; ``alive`` also on LOADING (a server loading its
dataset is alive but not ready)."""
RELOADER_INTERVAL_SECONDS = 5
"""How often the reloader compares the files it watches."""


def probe_command(mode: str) -> list[str]:
    if mode not in (READY, ALIVE):
        raise ValueError(f"probe mode {mode!r}: {READY!r} or {ALIVE!r}")
    return ["sh", PROBE_SCRIPT, mode]


RELOADER_COMMAND = ["sh", RELOADER_SCRIPT]


def _connection(port: int, tls: bool) -> dict[str, str]:
    env = {"VALKEY_PORT": str(port), "VALKEY_TLS": "yes" if tls else "no"}
    if tls:
        env["VALKEY_CA_FILE"] = CA_FILE
    return env


def probe_env(port: int, tls: bool) -> dict[str, str]:
    """The Valkey container's environment, which its exec probes inherit: what probe.sh reads."""
    return {**_connection(port, tls), "PROBE_USER": PROBE_USER, "PROBE_PASSWORD_FILE": PROBE_PASSWORD_FILE}


def fence_env(persistence: bool) -> dict[str, str]:
    """What fence.sh and probe.sh read about the fence, besides DATA_EXPECTED_ENV (specs/pod.py sets
    it from the marker). Without persistence nothing is fenced: no data is expected after a restart."""
    if not persistence:
        return {}
    return {"FENCE_FILE": FENCE_FILE, "FENCE_HOST": FENCE_HOST, "AOF_MANIFEST_FILE": AOF_MANIFEST_FILE}


def single_env(port: int, tls: bool, persistence: bool, primary: bool) -> dict[str, str]:
    """A single pod's Valkey container (replicas: 1): what single.sh, and probe.sh, read."""
    return {
        **probe_env(port, tls),
        **fence_env(persistence),
        "CONFIG_FILE": CONFIG_FILE,
        "SERVER_ROLE": "primary" if primary else "replica",
    }


def reloader_env(
    port: int, tls: bool, metrics_exporter: bool, migration: MigrationLogin | None = None
) -> dict[str, str]:
    """The reloader container's environment: what reloader.sh reads. Files, never their contents."""
    env = _connection(port, tls) | migration_env(migration)
    if tls:
        env |= {"TLS_CERT_FILE": TLS_CERT_FILE, "TLS_KEY_FILE": TLS_KEY_FILE}
    env |= {
        "RELOADER_USER": RELOADER_USER,
        "RELOADER_PASSWORD_FILE": RELOADER_PASSWORD_FILE,
        "ACL_FILE": ACL_FILE,
        "MASTERAUTH_FILE": MASTERAUTH_FILE,
        "RELOADER_INTERVAL_SECONDS": str(RELOADER_INTERVAL_SECONDS),
    }
    if metrics_exporter:
        env["EXPORTER_RELOAD_URL"] = RELOAD_URL
    return env


@dataclass(frozen=True)
class MigrationLogin:
    """A group that migrates from a source by replication: whether the source takes a login (its
    credentials Secret, mounted at SOURCE_LOGIN_DIR)."""

    login: bool


def migration_env(migration: MigrationLogin | None) -> dict[str, str]:
    """What login.sh reads, in the containers that source it; nothing without a migration."""
    if migration is None:
        return {}
    return {
        "MIGRATING": "yes",
        "UPSTREAM_FILE": UPSTREAM_FILE,
        "SOURCE_LOGIN_DIR": SOURCE_LOGIN_DIR if migration.login else "",
        "REPLICATION_USER": REPLICATION_USER,
        "MASTERAUTH_FILE": MASTERAUTH_FILE,
    }


@dataclass(frozen=True)
class GroupEnv:
    """What group.sh needs to find the group's primary."""

    pods: list[str]
    """The group's pod names, in ordinal order."""
    domain: str
    """<headless-service>.<namespace>.svc.<cluster-domain>."""
    master_name: str
    sentinel_port: int
    down_after_seconds: int
    failover_timeout_seconds: int
    follows: bool = False
    """The group follows another region: no Sentinel, keeper.sh in its place."""
    announce_suffix: str = ""
    """A following group's members announce <pod>.<suffix>, a name that resolves nowhere."""
    migration: MigrationLogin | None = None
    """The group follows a migration source (its upstream), not another region."""


def _group_env(port: int, tls: bool, group: GroupEnv) -> dict[str, str]:
    return {
        **_connection(port, tls),
        "GROUP_PODS": " ".join(group.pods),
        "GROUP_DOMAIN": group.domain,
        "GROUP_MODE": "follower" if group.follows else "leader",
        "SENTINEL_PORT": str(group.sentinel_port),
        "MASTER_NAME": group.master_name,
        "QUORUM": str(len(group.pods) // 2 + 1),
        "PROBE_USER": PROBE_USER,
        "PROBE_PASSWORD_FILE": PROBE_PASSWORD_FILE,
        "SENTINEL_PEER_USER": SENTINEL_PEER_USER,
        "SENTINEL_PEER_PASSWORD_FILE": SENTINEL_PEER_PASSWORD_FILE,
    }


def start_env(port: int, tls: bool, group: GroupEnv, persistence: bool) -> dict[str, str]:
    """A group member's Valkey container: what start.sh (and probe.sh) read; POD_NAME comes from
    the downward API. It waits for a failover at most one detection and one failover attempt."""
    wait = group.down_after_seconds + group.failover_timeout_seconds
    return (
        {
            **_group_env(port, tls, group),
            **fence_env(persistence),
            # probe.sh, lifting a fence: the priority valkey.conf gives, set as the reloader's user.
            "REPLICA_PRIORITY": str(replica_priority(group.follows)),
            "RELOADER_USER": RELOADER_USER,
            "RELOADER_PASSWORD_FILE": RELOADER_PASSWORD_FILE,
            "CONFIG_FILE": CONFIG_FILE,
            "MASTERAUTH_CONFIG_FILE": MASTERAUTH_CONFIG_FILE,
            "RUNTIME_CONFIG_FILE": RUNTIME_CONFIG_FILE,
            "FAILOVER_WAIT_SECONDS": str(wait),
            # prestop.sh, which the kubelet runs in this container with its environment.
            "SENTINEL_NODE_USER": SENTINEL_USER,
            "SENTINEL_NODE_PASSWORD_FILE": SENTINEL_PASSWORD_FILE,
            "HANDOVER_TIMEOUT_SECONDS": str(HANDOVER_TIMEOUT_SECONDS),
        }
        | (
            # A migration's record on the volume: written while migrating, removed once the group leads.
            {"MIGRATION_FILE": MIGRATION_FILE} if persistence else {}
        )
        | (_follower_env(group) if group.follows else {})
    )


def _follower_env(group: GroupEnv) -> dict[str, str]:
    env = {"UPSTREAM_FILE": UPSTREAM_FILE, "ANNOUNCE_SUFFIX": group.announce_suffix}
    if group.migration is not None:
        env |= migration_env(group.migration)
    return env


def keeper_env(port: int, tls: bool, group: GroupEnv) -> dict[str, str]:
    """A following group member's keeper container (in place of the Sentinel): what keeper.sh reads."""
    return {
        **_group_env(port, tls, group),
        **_follower_env(group),
        "SENTINEL_NODE_USER": SENTINEL_USER,
        "SENTINEL_NODE_PASSWORD_FILE": SENTINEL_PASSWORD_FILE,
        "KEEPER_INTERVAL_SECONDS": str(KEEPER_INTERVAL_SECONDS),
        "KEEPER_CONFIRMATIONS": str(KEEPER_CONFIRMATIONS),
        "FENCE_HOST": FENCE_HOST,
    } | (
        {
            "RELOADER_USER": RELOADER_USER,
            "RELOADER_PASSWORD_FILE": RELOADER_PASSWORD_FILE,
            "MIGRATION_FILE": MIGRATION_FILE,
        }
        if group.migration is not None
        else {}
    )


def sentinel_env(port: int, tls: bool, group: GroupEnv) -> dict[str, str]:
    """A group member's Sentinel container: what sentinel.sh reads."""
    return {
        **_group_env(port, tls, group),
        "SENTINEL_CONFIG_FILE": SENTINEL_CONFIG_FILE,
        "SENTINEL_MASTER_CONFIG_FILE": SENTINEL_MASTER_CONFIG_FILE,
        "SENTINEL_RUNTIME_CONFIG_FILE": SENTINEL_RUNTIME_CONFIG_FILE,
    }
