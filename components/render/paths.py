"""Where every file a Valkey pod reads lives, and under which key of its config Secret.

The one home of these paths: valkey.conf names them, the pod spec mounts them and hands them to the
scripts (as environment variables), and tests point them elsewhere (``valkey_process.localized``).
"""

from __future__ import annotations

import posixpath

CONFIG_DIR = "/etc/valkey"
"""The config Secret, mounted read-only in the server and reloader containers."""
TLS_DIR = "/etc/valkey-tls"
"""The server certificate's Secret (tls.crt, tls.key)."""
DATA_DIR = "/data"
"""The PersistentVolume (or an emptyDir without persistence): the append-only file."""

AOF_DIR_NAME = "appendonlydir"
"""``appenddirname``: the AOF's directory under DATA_DIR."""
AOF_MANIFEST_FILE = f"{DATA_DIR}/{AOF_DIR_NAME}/appendonly.aof.manifest"
"""Written by the server at its first start on a volume (appendfilename's default, appendonly.aof)."""
FENCE_FILE = f"{DATA_DIR}/fenced"
"""Present while the node is fenced (render/scripts/fence.sh); its first line says why."""
MIGRATION_FILE = f"{DATA_DIR}/migration-source"
"""Present while the volume's data comes from a migration by replication (render/scripts/start.sh)."""
SOURCE_LOGIN_DIR = "/etc/valkey-source"
"""A migration source's credentials Secret (files password, optionally username), mounted in a
migrating group's server, reloader and keeper containers (render/scripts/login.sh)."""

CONFIG_FILE = f"{CONFIG_DIR}/valkey.conf"
ACL_FILE = f"{CONFIG_DIR}/users.acl"
CA_FILE = f"{CONFIG_DIR}/ca-bundle.crt"
PROBE_PASSWORD_FILE = f"{CONFIG_DIR}/probe-password"
RELOADER_PASSWORD_FILE = f"{CONFIG_DIR}/reloader-password"
MASTERAUTH_CONFIG_FILE = f"{CONFIG_DIR}/masterauth.conf"
"""A replica's ``masterauth`` line, included at the end of valkey.conf: valkey.conf holds no password."""
MASTERAUTH_FILE = f"{CONFIG_DIR}/masterauth-password"
"""The same password, raw (no config quoting): what the reloader gives ``CONFIG SET masterauth``."""
PROBE_SCRIPT = f"{CONFIG_DIR}/probe.sh"
FENCE_SCRIPT = f"{CONFIG_DIR}/fence.sh"
SINGLE_SCRIPT = f"{CONFIG_DIR}/single.sh"
"""A single pod's start (replicas: 1, with persistence); a group member's is START_SCRIPT."""
RELOADER_SCRIPT = f"{CONFIG_DIR}/reloader.sh"
LOGIN_SCRIPT = f"{CONFIG_DIR}/login.sh"
"""Sourced by start.sh, keeper.sh and reloader.sh: a migrating group's logins."""
TLS_CERT_FILE = f"{TLS_DIR}/tls.crt"
TLS_KEY_FILE = f"{TLS_DIR}/tls.key"

# A group member's (replicas > 1) writable files, rewritten at each container start.
RUN_DIR = "/run/valkey"
"""An emptyDir of the Valkey container only: the server's config file as start.sh wrote it.
Sentinel's CONFIG REWRITE edits it and writes the replication password into it (primaryauth)."""
RUNTIME_CONFIG_FILE = f"{RUN_DIR}/valkey.conf"
SOCKET_DIR = "/run/valkey-socket"
"""An emptyDir shared with the label updater: the unix socket it asks ROLE on, and nothing else."""
SOCKET_FILE = f"{SOCKET_DIR}/valkey.sock"
SENTINEL_DIR = "/run/sentinel"
"""An emptyDir of the Sentinel container: its config file, which Sentinel rewrites as it learns."""
SENTINEL_RUNTIME_CONFIG_FILE = f"{SENTINEL_DIR}/sentinel.conf"
SENTINEL_CONFIG_FILE = f"{CONFIG_DIR}/sentinel.conf"
"""The rendered global part of the Sentinel's config (ports, TLS, hostnames, its users)."""
SENTINEL_MASTER_CONFIG_FILE = f"{CONFIG_DIR}/sentinel-master.conf"
"""The rendered part about the monitored group: how to log in to the nodes, timeouts."""
SENTINEL_PEER_PASSWORD_FILE = f"{CONFIG_DIR}/sentinel-peer-password"
"""The Sentinels' peer user's password: the Sentinels log in to each other with it, and the pod's
scripts ask them for the primary (start.sh, sentinel.sh) or for a failover (prestop.sh)."""
SENTINEL_PASSWORD_FILE = f"{CONFIG_DIR}/sentinel-password"
"""The nodes' Sentinel user's password, raw: prestop.sh hands the primary over as that user."""
LABELER_PASSWORD_FILE = f"{CONFIG_DIR}/labeler-password"
GROUP_SCRIPT = f"{CONFIG_DIR}/group.sh"
START_SCRIPT = f"{CONFIG_DIR}/start.sh"
LABELER_SCRIPT_KEY = "labeler.sh"
"""Projected into the label updater's container only (specs/labeler.py)."""
SENTINEL_SCRIPT = f"{CONFIG_DIR}/sentinel.sh"
PRESTOP_SCRIPT = f"{CONFIG_DIR}/prestop.sh"
KEEPER_SCRIPT = f"{CONFIG_DIR}/keeper.sh"
UPSTREAM_FILE = f"{CONFIG_DIR}/upstream"
"""A following group's upstream, ``<host> <port>``: the other region's external endpoint."""

EXPORTER_DIR = "/etc/valkey-exporter"
"""The exporter sidecar's own projection of the config Secret: its password file and the CA bundle."""
EXPORTER_PASSWORD_FILE = f"{EXPORTER_DIR}/password.json"
EXPORTER_CA_FILE = f"{EXPORTER_DIR}/ca-bundle.crt"
SENTINEL_EXPORTER_DIR = "/etc/valkey-sentinel-exporter"
"""The Sentinel's exporter's own projection of the config Secret: its password file and the CA bundle."""
SENTINEL_EXPORTER_PASSWORD_FILE = f"{SENTINEL_EXPORTER_DIR}/password.json"
SENTINEL_EXPORTER_CA_FILE = f"{SENTINEL_EXPORTER_DIR}/ca-bundle.crt"


def secret_key(path: str) -> str:
    """The config Secret's key of a file mounted from it: the file's name."""
    return posixpath.basename(path)


CONFIG_KEY = secret_key(CONFIG_FILE)
ACL_KEY = secret_key(ACL_FILE)
CA_KEY = secret_key(CA_FILE)
PROBE_PASSWORD_KEY = secret_key(PROBE_PASSWORD_FILE)
RELOADER_PASSWORD_KEY = secret_key(RELOADER_PASSWORD_FILE)
MASTERAUTH_CONFIG_KEY = secret_key(MASTERAUTH_CONFIG_FILE)
MASTERAUTH_KEY = secret_key(MASTERAUTH_FILE)
PROBE_SCRIPT_KEY = secret_key(PROBE_SCRIPT)
RELOADER_SCRIPT_KEY = secret_key(RELOADER_SCRIPT)
FENCE_SCRIPT_KEY = secret_key(FENCE_SCRIPT)
LOGIN_SCRIPT_KEY = secret_key(LOGIN_SCRIPT)
SINGLE_SCRIPT_KEY = secret_key(SINGLE_SCRIPT)
SENTINEL_CONFIG_KEY = secret_key(SENTINEL_CONFIG_FILE)
SENTINEL_MASTER_CONFIG_KEY = secret_key(SENTINEL_MASTER_CONFIG_FILE)
SENTINEL_PEER_PASSWORD_KEY = secret_key(SENTINEL_PEER_PASSWORD_FILE)
SENTINEL_PASSWORD_KEY = secret_key(SENTINEL_PASSWORD_FILE)
LABELER_PASSWORD_KEY = secret_key(LABELER_PASSWORD_FILE)
GROUP_SCRIPT_KEY = secret_key(GROUP_SCRIPT)
START_SCRIPT_KEY = secret_key(START_SCRIPT)
SENTINEL_SCRIPT_KEY = secret_key(SENTINEL_SCRIPT)
PRESTOP_SCRIPT_KEY = secret_key(PRESTOP_SCRIPT)
KEEPER_SCRIPT_KEY = secret_key(KEEPER_SCRIPT)
UPSTREAM_KEY = secret_key(UPSTREAM_FILE)
EXPORTER_PASSWORD_KEY = "exporter-password.json"
"""Projected as ``EXPORTER_PASSWORD_FILE`` into the exporter sidecar only."""
SENTINEL_EXPORTER_PASSWORD_KEY = "sentinel-exporter-password.json"
"""Projected as ``SENTINEL_EXPORTER_PASSWORD_FILE`` into the Sentinel's exporter only."""

PUBLIC_KEYS = frozenset(
    {
        CONFIG_KEY,
        CA_KEY,
        PROBE_SCRIPT_KEY,
        RELOADER_SCRIPT_KEY,
        FENCE_SCRIPT_KEY,
        SINGLE_SCRIPT_KEY,
        GROUP_SCRIPT_KEY,
        START_SCRIPT_KEY,
        SENTINEL_SCRIPT_KEY,
        LABELER_SCRIPT_KEY,
        PRESTOP_SCRIPT_KEY,
        KEEPER_SCRIPT_KEY,
        UPSTREAM_KEY,
    }
)
"""Keys of the config Secret that hold no secret: a review (the offline render) shows them whole.
Every other key is a password or holds one, except ``ACL_KEY``, whose password hashes alone are."""
