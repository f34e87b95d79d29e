"""login.sh, the logins of a group that migrates by replication (render/scripts/login.sh), against
real servers: what it writes into the head's runtime config and what it sets with CONFIG SET make a
Valkey 8.1.8 replica log in to Debian's redis-server 7.0 as the source's ACL user, or with its
password alone (requirepass), for passwords holding quotes, backslashes and spaces, from Secret
files with a trailing newline; and towards any other target, with the group's own login. Run by
the host's tools and by busybox's (the image's)."""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import valkey
from migration_support import SOURCE_PASSWORD, start_source
from replies import config_value, info
from shell_tools import KINDS, tool_path
from valkey_process import VALKEY_CLI, VALKEY_SERVER, Server, free_port, wait_for

from components.render import pod_scripts

SCRIPT = Path(pod_scripts.__file__).parent / "scripts" / "login.sh"
USER, PASSWORD = "migrator", 'a "quoted" \\ back\\slash and spaces'
OWN = "the-groups-own-replication-password"
TOOLS = ("sh", "cat", "od", "tr", "sed")


@pytest.fixture(params=KINDS)
def path(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    return tool_path(request.param, tmp_path_factory, TOOLS)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    digest = hashlib.sha256(PASSWORD.encode()).hexdigest()
    server = start_source(
        tmp_path_factory.mktemp("source"),
        f"user {USER} on #{digest} +psync +replconf +ping",
        "repl-diskless-sync-delay 0",
    )
    yield server
    server.stop()


def run(path: str, tmp_path: Path, source: Server, login: bool, script: str, *, username: bool = True) -> str:
    secret = tmp_path / "secret"
    secret.mkdir(exist_ok=True)
    (secret / "password").write_text((PASSWORD if username else SOURCE_PASSWORD) + "\n")
    if username:
        (secret / "username").write_text(USER + "\n")
    (tmp_path / "upstream").write_text(f"127.0.0.1 {source.port}\n")
    (tmp_path / "masterauth").write_text(OWN)
    env = pod_scripts.migration_env(pod_scripts.MigrationLogin(login=login)) | {
        "UPSTREAM_FILE": str(tmp_path / "upstream"),
        "MASTERAUTH_FILE": str(tmp_path / "masterauth"),
        "PATH": path,
    }
    if login:
        env["SOURCE_LOGIN_DIR"] = str(secret)
    done = subprocess.run(
        ["sh", "-c", f". {SCRIPT}; {script}"], env=env, capture_output=True, text=True, check=True, timeout=20
    )
    return done.stdout


def replica(tmp_path: Path, source: Server, lines: str) -> Server:
    port = free_port()
    config = tmp_path / "replica.conf"
    config.write_text(
        f'port {port}\nbind 127.0.0.1\ndir {tmp_path}\nsave ""\nreplicaof 127.0.0.1 {source.port}\n'
        f"masteruser replication\nmasterauth wrong\n{lines}"
    )
    return Server(config, port, None, binary=VALKEY_SERVER)


def linked(server: Server) -> bool:
    return info(server.client(), "replication").get("master_link_status") == "up"


@pytest.mark.parametrize("username", [True, False], ids=["acl-user", "requirepass"])
def test_the_runtime_config_lines_log_the_head_in_to_the_source(
    path: str, tmp_path: Path, source: Server, username: bool
) -> None:
    lines = run(path, tmp_path, source, True, f'login_conf "127.0.0.1 {source.port}"', username=username)
    assert PASSWORD not in lines and SOURCE_PASSWORD not in lines  # hex-escaped, every byte
    server = replica(tmp_path, source, lines)
    try:
        wait_for(lambda: linked(server), 15, "the replica logged in to the source")
        c = server.client()
        assert config_value(c, "masteruser") == (USER if username else "")
        assert config_value(c, "masterauth") == (PASSWORD if username else SOURCE_PASSWORD)
    finally:
        server.stop()


def test_set_login_switches_between_the_source_and_the_groups_own_login(
    path: str, tmp_path: Path, source: Server
) -> None:
    server = replica(tmp_path, source, "")
    cli = f"{VALKEY_CLI} -p {server.port}"
    try:
        assert not linked(server)
        run(path, tmp_path, source, True, f'set_login "127.0.0.1 {source.port}" {cli} && echo set')
        wait_for(lambda: linked(server), 15, "the replica logged in to the source")
        # A member's target: the group's own login.
        assert run(path, tmp_path, source, True, f'set_login "sessions-0.example 6379" {cli} && echo set') == "set\n"
        c = server.client()
        assert config_value(c, "masteruser") == "replication"
        assert config_value(c, "masterauth") == OWN
        # A source that takes no login: no user, no password.
        run(path, tmp_path, source, False, f'set_login "127.0.0.1 {source.port}" {cli}')
        assert config_value(c, "masteruser") == "" and config_value(c, "masterauth") == ""
    finally:
        server.stop()


def test_nothing_applies_without_a_migration(path: str, tmp_path: Path, source: Server) -> None:
    script = f'if is_source "127.0.0.1 {source.port}"; then echo source; else echo other; fi'
    assert run(path, tmp_path, source, True, f"MIGRATING=no; {script}") == "other\n"
    assert run(path, tmp_path, source, True, script) == "source\n"
    with pytest.raises(valkey.AuthenticationError):
        valkey.Valkey(port=source.port, username=USER, password="wrong").ping()
