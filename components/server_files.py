"""The files a Valkey pod mounts from its config Secret, rendered from validated settings.

Pure: no Pulumi. ``restart_checksum`` covers only what a running server cannot take live; the
reloader sidecar applies the rest (ACL file, a replica's masterauth, CA bundle) without a restart.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence

from . import exporter, valkey_conf
from .config import Instance, aof_rewrite_min_bytes, backlog_bytes, server_maxmemory_bytes
from .pod import ACL_FILE, CA_FILE, DATA_DIR, PROBE_PASSWORD_FILE, RELOADER_PASSWORD_FILE, TLS_CERT_FILE, TLS_KEY_FILE

CONFIG_KEY = "valkey.conf"
ACL_KEY = os.path.basename(ACL_FILE)
CA_KEY = os.path.basename(CA_FILE)
PROBE_PASSWORD_KEY = os.path.basename(PROBE_PASSWORD_FILE)
RELOADER_PASSWORD_KEY = os.path.basename(RELOADER_PASSWORD_FILE)


def server_settings(
    s: Instance,
    upstream: valkey_conf.Upstream | None = None,
    tls: valkey_conf.TlsFiles | None = None,
    data_dir: str = DATA_DIR,
    acl_file: str = ACL_FILE,
) -> valkey_conf.ServerSettings:
    """What valkey.conf says for an instance; the directories are the pod's unless given."""
    return valkey_conf.ServerSettings(
        port=s.port,
        maxmemory=server_maxmemory_bytes(s),
        maxmemory_policy=s.maxmemory_policy,
        repl_backlog_size=backlog_bytes(s),
        data_dir=data_dir,
        acl_file=acl_file,
        upstream=upstream,
        tls=tls,
        persistence=s.persistence,
        aof_rewrite_min_size=aof_rewrite_min_bytes(s),
    )


def render_files(
    s: Instance,
    passwords: valkey_conf.Passwords,
    upstream: valkey_conf.Upstream | None,
    ca_bundle: str | None,
    denied_commands: Sequence[str],
) -> dict[str, str]:
    """Secret keys -> file contents. ``ca_bundle`` set means TLS."""
    tls = valkey_conf.TlsFiles(TLS_CERT_FILE, TLS_KEY_FILE, CA_FILE) if ca_bundle else None
    settings = server_settings(s, upstream, tls)
    users = valkey_conf.server_users(passwords, denied_commands)
    files = {
        CONFIG_KEY: valkey_conf.render_valkey_conf(settings),
        PROBE_PASSWORD_KEY: passwords.probe,
        RELOADER_PASSWORD_KEY: passwords.reloader,
    }
    if passwords.metrics:
        users.append(valkey_conf.AclUser(exporter.EXPORTER_USER, passwords.metrics, exporter.EXPORTER_RULES))
        # The exporter logs in with the current password; the ACL also accepts the previous one.
        files[exporter.SECRET_KEY] = exporter.password_file(s.port, passwords.metrics[0], tls=ca_bundle is not None)
    files[ACL_KEY] = valkey_conf.render_acl(users)
    if ca_bundle:
        files[CA_KEY] = ca_bundle
    return files


_MASTERAUTH = re.compile(r"^masterauth .*$", flags=re.MULTILINE)


def restart_checksum(files: dict[str, str]) -> str:
    """Hash of what needs a restart to take effect: valkey.conf except ``masterauth``, and the
    reloader's own password (it logs in with it to apply everything else)."""
    restart_relevant = {
        CONFIG_KEY: _MASTERAUTH.sub("masterauth <applied live>", files[CONFIG_KEY]),
        RELOADER_PASSWORD_KEY: files[RELOADER_PASSWORD_KEY],
    }
    return hashlib.sha256(json.dumps(restart_relevant, sort_keys=True).encode()).hexdigest()
