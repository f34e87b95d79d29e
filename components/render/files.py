"""The files of an instance's config Secret, rendered from validated settings.

``restart_checksum`` covers only what a running server cannot take live; the reloader sidecar
applies the rest (ACL file, a replica's masterauth, CA bundle) without a restart.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence

from ..config.models import Instance
from ..sizing import aof_rewrite_min_bytes, backlog_bytes, server_maxmemory_bytes
from . import acl, exporter, valkey_conf
from .paths import (
    ACL_FILE,
    ACL_KEY,
    CA_FILE,
    CA_KEY,
    CONFIG_KEY,
    DATA_DIR,
    EXPORTER_PASSWORD_KEY,
    PROBE_PASSWORD_KEY,
    RELOADER_PASSWORD_KEY,
    TLS_CERT_FILE,
    TLS_KEY_FILE,
)


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
    passwords: acl.Passwords,
    upstream: valkey_conf.Upstream | None,
    ca_bundle: str | None,
    denied_commands: Sequence[str],
) -> dict[str, str]:
    """Secret keys -> file contents. ``ca_bundle`` set means TLS."""
    tls = valkey_conf.TlsFiles(TLS_CERT_FILE, TLS_KEY_FILE, CA_FILE) if ca_bundle else None
    files = {
        CONFIG_KEY: valkey_conf.render_valkey_conf(server_settings(s, upstream, tls)),
        PROBE_PASSWORD_KEY: passwords.probe,
        RELOADER_PASSWORD_KEY: passwords.reloader,
    }
    if passwords.metrics:
        files[EXPORTER_PASSWORD_KEY] = exporter.password_file(s.port, passwords.metrics[0], tls=ca_bundle is not None)
    files[ACL_KEY] = acl.render_acl(acl.server_users(passwords, denied_commands))
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
