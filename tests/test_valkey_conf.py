"""The pure renderer of valkey.conf and the ACL file, without Pulumi."""

from __future__ import annotations

import re

import pytest

from components.render.acl import AclUser, Passwords, password_hash, render_acl, server_users
from components.render.valkey_conf import (
    ServerSettings,
    TlsFiles,
    Upstream,
    quote,
    render_masterauth_conf,
    render_valkey_conf,
)

PRIMARY = ServerSettings(
    port=6380,
    maxmemory=1073741824,
    maxmemory_policy="volatile-ttl",
    repl_backlog_size=64 * 1024**2,
    replica_buffer_limit=80 * 1024**2,
    clients_memory=64 * 1024**2,
    data_dir="/data",
    acl_file="/etc/valkey/users.acl",
)
REPLICA = ServerSettings(
    **{**PRIMARY.__dict__, "upstream": Upstream("cache.region1.example.com", 6380, "replication", 'p"w\\d')}
)


def directives(text: str) -> dict[str, str]:
    pairs = [line.split(" ", 1) for line in text.splitlines() if line and not line.startswith("#")]
    names = [p[0] for p in pairs]
    assert len(names) == len(set(names)), "a directive is set twice"
    return {p[0]: p[1] for p in pairs}


def test_primary_config() -> None:
    d = directives(render_valkey_conf(PRIMARY))
    assert d["port"] == "6380"
    assert d["maxmemory"] == "1073741824"
    assert d["maxmemory-policy"] == "volatile-ttl"
    assert (d["appendonly"], d["appendfsync"]) == ("yes", "everysec")
    assert d["dir"] == '"/data"' and d["aclfile"] == '"/etc/valkey/users.acl"'
    assert (d["repl-diskless-sync"], d["repl-diskless-sync-delay"]) == ("yes", "0")
    assert d["repl-backlog-size"] == str(64 * 1024**2)
    assert "replicaof" not in d and "masterauth" not in d and "requirepass" not in d


def test_replica_config_points_at_the_upstream_with_the_replication_user() -> None:
    d = directives(render_valkey_conf(REPLICA))
    assert d["replicaof"] == "cache.region1.example.com 6380"
    assert d["masteruser"] == '"replication"'
    assert REPLICA.upstream is not None
    # The password is in the included file only, and the include is the last line: nothing overrides it.
    assert "masterauth" not in d and 'p"w' not in render_valkey_conf(REPLICA)
    assert render_valkey_conf(REPLICA).splitlines()[-1] == 'include "/etc/valkey/masterauth.conf"'
    assert directives(render_masterauth_conf(REPLICA.upstream))["masterauth"] == '"p\\"w\\\\d"'
    assert d["replica-read-only"] == "yes"
    # A replica keeps serving (stale) reads while its primary is unreachable.
    assert d["replica-serve-stale-data"] == "yes"


def test_quote_refuses_line_breaks() -> None:
    assert quote("plain") == '"plain"'
    with pytest.raises(ValueError):
        quote("two\nlines")


PASSWORDS = Passwords(
    client=("client-pw", "client-pw-old"), replication=("repl-pw",), probe="probe-pw", reloader="rl-pw", admin="adm-pw"
)


def test_acl_holds_hashes_not_passwords() -> None:
    text = render_acl(server_users(PASSWORDS, ["flushall", "config"]))
    for password in ("client-pw", "client-pw-old", "repl-pw", "probe-pw", "rl-pw", "adm-pw"):
        assert password not in text
        assert f"#{password_hash(password)}" in text
    lines = {line.split()[1]: line for line in text.splitlines()}
    assert set(lines) == {"default", "replication", "probe", "reloader", "admin"}
    assert lines["replication"].endswith("-@all +psync +replconf")
    assert lines["probe"].endswith("-@all +ping +info")
    assert lines["reloader"].endswith("-@all +acl|load +config|set +role")
    assert lines["default"].endswith("~* &* +@all -flushall -config")
    assert lines["admin"].endswith("~* &* +@all")
    for user in ("replication", "probe", "reloader"):
        assert "~" not in lines[user]


def test_tls_closes_the_plaintext_port() -> None:
    tls = TlsFiles("/etc/valkey-tls/tls.crt", "/etc/valkey-tls/tls.key", "/etc/valkey/ca-bundle.crt")
    d = directives(render_valkey_conf(ServerSettings(**{**REPLICA.__dict__, "tls": tls})))
    assert d["port"] == "0" and d["tls-port"] == "6380"
    assert d["tls-cert-file"] == '"/etc/valkey-tls/tls.crt"' and d["tls-ca-cert-file"] == '"/etc/valkey/ca-bundle.crt"'
    assert d["tls-replication"] == "yes"
    assert "tls-port" not in directives(render_valkey_conf(PRIMARY))


def test_persistence_can_be_off() -> None:
    d = directives(render_valkey_conf(ServerSettings(**{**PRIMARY.__dict__, "persistence": False})))
    assert d["appendonly"] == "no" and d["save"] == '""'
    assert "appendfsync" not in d


def test_acl_user_may_hold_two_passwords_and_needs_one() -> None:
    text = render_acl([AclUser("app", ("old", "new"), "+get")])
    assert len(re.findall(r"#[0-9a-f]{64}", text)) == 2
    with pytest.raises(ValueError):
        render_acl([AclUser("app", (), "+get")])
