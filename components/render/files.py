"""The files of an instance's config Secret, rendered from validated settings.

``restart_checksum`` covers whole keys: those a running pod cannot take live (``RESTART_KEYS``).
Every other key is taken live (``LIVE_KEYS`` says how), mostly by the reloader sidecar.
"""

from __future__ import annotations

import hashlib
import json
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
    MASTERAUTH_CONFIG_FILE,
    MASTERAUTH_CONFIG_KEY,
    MASTERAUTH_KEY,
    PROBE_PASSWORD_KEY,
    PROBE_SCRIPT_KEY,
    RELOADER_PASSWORD_KEY,
    RELOADER_SCRIPT_KEY,
    TLS_CERT_FILE,
    TLS_KEY_FILE,
)
from .pod_scripts import SCRIPTS


def server_settings(
    instance: Instance,
    upstream: valkey_conf.Upstream | None = None,
    tls: valkey_conf.TlsFiles | None = None,
    *,
    data_dir: str = DATA_DIR,
    acl_file: str = ACL_FILE,
    masterauth_file: str = MASTERAUTH_CONFIG_FILE,
) -> valkey_conf.ServerSettings:
    """What valkey.conf says for an instance; the paths are the pod's unless given."""
    return valkey_conf.ServerSettings(
        port=instance.port,
        maxmemory=server_maxmemory_bytes(instance),
        maxmemory_policy=instance.maxmemory_policy,
        repl_backlog_size=backlog_bytes(instance),
        data_dir=data_dir,
        acl_file=acl_file,
        upstream=upstream,
        tls=tls,
        persistence=instance.persistence,
        aof_rewrite_min_size=aof_rewrite_min_bytes(instance),
        masterauth_file=masterauth_file,
    )


def render_files(
    instance: Instance,
    passwords: acl.Passwords,
    upstream: valkey_conf.Upstream | None,
    ca_bundle: str | None,
    denied_commands: Sequence[str],
) -> dict[str, str]:
    """Secret keys -> file contents. ``ca_bundle`` set means TLS."""
    tls = valkey_conf.TlsFiles(TLS_CERT_FILE, TLS_KEY_FILE, CA_FILE) if ca_bundle else None
    files = {
        CONFIG_KEY: valkey_conf.render_valkey_conf(server_settings(instance, upstream, tls)),
        PROBE_PASSWORD_KEY: passwords.probe,
        RELOADER_PASSWORD_KEY: passwords.reloader,
        **SCRIPTS,
    }
    if upstream is not None:
        # The same password twice, rendered from the one value, never parsed back: a config line
        # for the server's start, the raw password for the reloader's CONFIG SET.
        files[MASTERAUTH_CONFIG_KEY] = valkey_conf.render_masterauth_conf(upstream)
        files[MASTERAUTH_KEY] = upstream.password
    if passwords.metrics:
        files[EXPORTER_PASSWORD_KEY] = exporter.password_file(
            instance.port, passwords.metrics[0], tls=ca_bundle is not None
        )
    files[ACL_KEY] = acl.render_acl(acl.server_users(passwords, denied_commands))
    if ca_bundle:
        files[CA_KEY] = ca_bundle
    return files


RESTART_KEYS = (CONFIG_KEY, RELOADER_PASSWORD_KEY, RELOADER_SCRIPT_KEY)
"""What a running pod cannot take live: valkey.conf (read at start only; it holds no password), the
reloader's own password (it logs in with it to apply everything else) and reloader.sh (a running
loop never re-reads itself)."""
LIVE_KEYS = {
    ACL_KEY: "the reloader's ACL LOAD",
    MASTERAUTH_KEY: "the reloader's CONFIG SET masterauth",
    MASTERAUTH_CONFIG_KEY: "read at start only, but the same password as MASTERAUTH_KEY, applied live",
    CA_KEY: "the reloader's TLS reload (CONFIG SET tls-ca-cert-file)",
    PROBE_PASSWORD_KEY: "read at each probe; the server takes the new one with ACL LOAD",
    PROBE_SCRIPT_KEY: "read by the kubelet at each probe",
    EXPORTER_PASSWORD_KEY: "the exporter's reload, which the reloader calls",
}
"""Keys taken without a restart, and how. A key in neither is a test failure (tests/test_scripts.py)."""


def restart_checksum(files: dict[str, str]) -> str:
    """Hash of the ``RESTART_KEYS`` of an instance's config files: its change rolls the pod."""
    restart_relevant = {key: files[key] for key in RESTART_KEYS}
    return hashlib.sha256(json.dumps(restart_relevant, sort_keys=True).encode()).hexdigest()
