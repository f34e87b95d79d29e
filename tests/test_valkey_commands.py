"""``deniedCommands`` against what real Valkey servers know and do, on every supported build.

The program accepts only commands and categories listed in ``components/config/valkey_commands.json``; this
module shows that the file is what the servers report, that every default denied command is refused
to applications (NOPERM for the ``default`` user, with a working invocation of it), and that the ACL
file the program renders for a category starts the server.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import valkey
from harness import stack_file_config
from valkey_commands_dump import dump
from valkey_process import BUILDS, Server, every_build, free_port, localized

from components.config.loader import parse_stack_config
from components.config.security import DEFAULT_DENIED_COMMANDS
from components.config.valkey_commands import DATA
from components.render.acl import Passwords
from components.render.files import render_files

CLIENT, ADMIN = "client-password-1", "admin-password-1"
PASSWORDS = Passwords(client=(CLIENT,), replication=("repl",), probe="probe", reloader="reloader", admin=ADMIN)


@every_build
def test_the_command_list_is_what_the_server_reports(build: str) -> None:
    recorded = json.loads(DATA.read_text())
    assert dump(BUILDS[build]) == recorded[build], (
        f"{DATA.name} is not what Valkey {build} reports: rewrite it with `python tests/valkey_commands_dump.py`"
    )


def start_rendered(directory: Path, build: str, denied: list[str]) -> Server:
    """Region 1's sessions instance, its valkey.conf and ACL file as the program renders them."""
    cfg, problems = parse_stack_config({**stack_file_config("region1"), "deniedCommands": denied}, "region1")
    assert cfg is not None, problems
    files = render_files(cfg.instances["sessions"], PASSWORDS, None, None, cfg.denied_commands)
    (directory / "data").mkdir()
    port = free_port()
    conf = localized(files["valkey.conf"], directory, port)
    (directory / "users.acl").write_text(files["users.acl"])
    (directory / "valkey.conf").write_text(conf)
    return Server(directory / "valkey.conf", port, CLIENT, binary=BUILDS[build])


@pytest.fixture(params=sorted(BUILDS), ids=[f"valkey-{v}" for v in sorted(BUILDS)])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    started = start_rendered(tmp_path, request.param, list(DEFAULT_DENIED_COMMANDS))
    yield started
    started.stop()


def invocation(admin: valkey.Valkey, name: str) -> list[str]:
    """A call of ``name`` that passes Valkey's arity check (which comes before the ACL check), so
    the reply is the ACL's answer. A denied container is called through its first subcommand."""
    listed = admin.execute_command("COMMAND LIST")
    if "|" not in name and any(c.startswith(f"{name}|") for c in listed):
        name = min(c for c in listed if c.startswith(f"{name}|"))
    parts = name.split("|")
    (info,) = admin.execute_command("COMMAND INFO", parts[0])
    arity = int(info[1])
    if len(parts) == 2:
        (sub,) = [s for s in info[9] if s[0] == name]
        arity = int(sub[1])
    return parts + ["x"] * (abs(arity) - len(parts))


@pytest.mark.parametrize("command", DEFAULT_DENIED_COMMANDS)
def test_each_default_denied_command_is_refused_to_applications(server: Server, command: str) -> None:
    admin = server.client("admin", ADMIN)
    call = invocation(admin, command)
    verdict = admin.execute_command("ACL DRYRUN", "default", *call)
    assert "has no permissions to run" in verdict
    # Run for real it is refused too: NOPERM, or for DEBUG and MODULE, which Valkey also protects
    # by default (enable-debug-command, enable-module-command), that refusal first.
    with pytest.raises(valkey.exceptions.ResponseError, match=r"no permissions to run|command not allowed"):
        server.client().execute_command(*call)
    # The admin user may: the refusal is the ACL's, not an error in the call itself.
    assert admin.execute_command("ACL DRYRUN", "admin", *call) == "OK"
    # And applications keep their commands.
    assert server.client().set("k", "v") and server.client().get("k") == "v"


@every_build
def test_a_denied_category_starts_and_is_enforced(tmp_path: Path, build: str) -> None:
    started = start_rendered(tmp_path, build, ["@dangerous"])
    try:
        with pytest.raises(valkey.exceptions.NoPermissionError):
            started.client().execute_command("FLUSHALL")
        assert started.client().ping() and started.client().set("k", "v")
    finally:
        started.stop()
