"""The rendered probes against a real server that is loading its dataset, on every supported build.

A pod restarting on a large AOF answers ``LOADING`` for as long as the load takes: it must stay alive
(a liveness failure would restart the load from the beginning) and must not be Ready (a Service would
send it traffic it can only refuse). The probes are run exactly as rendered in region 1's sessions
StatefulSet (TLS off: these builds have none), their command and the container's environment, with
two substitutions: the port (the test's free port) and the config directory (the test's, where the
rendered probe.sh and probe password are written). The server is the rendered
valkey.conf with two test settings added, ``key-load-delay`` (loading 100,000 keys lasts seconds
instead of milliseconds) and ``loading-process-events-interval-bytes`` (the server answers every
kilobyte of the load, as it does every 2 MB at its normal loading speed).
"""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path
from typing import Any

import valkey
from harness import NO_TLS, SINGLE_PODS, Rendered, render
from replies import info
from valkey_process import BUILDS, VALKEY_CLI, every_build, free_port, localized, stop_process, wait_for

KEYS = 100_000


# These builds have no TLS: region 1 rendered with TLS off (the probes then call valkey-cli without it),
# harness.NO_TLS.


@functools.cache
def region1() -> Rendered:
    """Rendered once for the module; the accessors hand out copies."""
    return render("region1", {**NO_TLS, **SINGLE_PODS})


def server_container() -> dict[str, Any]:
    return region1().container("sessions", "valkey")


def probes() -> dict[str, list[str]]:
    container = server_container()
    return {kind: container[f"{kind}Probe"]["exec"]["command"] for kind in ("startup", "liveness", "readiness")}


def files() -> dict[str, str]:
    secret = region1().config_files("sessions")
    return {key: secret[key] for key in ("valkey.conf", "users.acl", "probe-password", "probe.sh")}


def run_probe(command: list[str], port: int, password_file: Path) -> tuple[int, str]:
    """``command`` in the server container's environment, /etc/valkey/ being ``password_file``'s directory."""
    here = f"{password_file.parent}/"
    # Plain values only: the marker's DATA_EXPECTED (valueFrom) and the fence's files do not matter
    # to a server that is not fenced.
    env = {e["name"]: e["value"].replace("/etc/valkey/", here) for e in server_container()["env"] if "value" in e}
    assert env.pop("VALKEY_PORT") == "6379"
    env |= {"VALKEY_PORT": str(port), "PATH": f"{VALKEY_CLI.parent}:{os.environ['PATH']}"}
    argv = [part.replace("/etc/valkey/", here) for part in command]
    done = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, **env}, timeout=10, check=False)
    return done.returncode, done.stdout.strip()


@every_build
def test_a_loading_server_is_alive_but_not_ready(tmp_path: Path, build: str) -> None:
    rendered, port = files(), free_port()
    conf = localized(rendered["valkey.conf"], tmp_path, port)
    (tmp_path / "data").mkdir()
    (tmp_path / "users.acl").write_text(rendered["users.acl"])
    (tmp_path / "valkey.conf").write_text(conf + "\n")
    password_file = tmp_path / "probe-password"
    password_file.write_text(rendered["probe-password"])
    (tmp_path / "probe.sh").write_text(rendered["probe.sh"])
    probe_commands = probes()
    # A test-only user to fill and count the dataset; the rendered users are unchanged.
    (tmp_path / "users.acl").write_text(rendered["users.acl"] + f"user testadmin on >{ADMIN} ~* &* +@all\n")

    def start(config: str) -> subprocess.Popen[bytes]:
        (tmp_path / "valkey.conf").write_text(config)
        with (tmp_path / "valkey.log").open("ab") as log:
            process = subprocess.Popen([str(BUILDS[build]), str(tmp_path / "valkey.conf")], stdout=log, stderr=log)
        try:
            wait_for(lambda: admin(port).ping(), 10, f"valkey {build} answering")
        except BaseException:
            stop_process(process, timeout=20)
            raise
        return process

    # A dataset on disk: keys written, then the AOF rewritten (its RDB preamble is what a restart loads).
    process = start(conf + "\n")
    try:
        pipe = admin(port).pipeline(transaction=False)
        for i in range(KEYS):
            pipe.set(f"session:{i}", "x" * 64)
        pipe.execute()
        admin(port).bgrewriteaof()
        wait_for(lambda: info(admin(port), "persistence")["aof_rewrite_in_progress"] == 0, 30, "AOF rewritten")
        assert run_probe(probe_commands["readiness"], port, password_file)[0] == 0
    finally:
        stop_process(process, timeout=20)

    # Restart: loading now takes about KEYS x 50 us; ping answers LOADING meanwhile.
    (tmp_path / "valkey.conf").write_text(conf + "\nkey-load-delay 50\nloading-process-events-interval-bytes 1024\n")
    with (tmp_path / "valkey.log").open("ab") as log:
        process = subprocess.Popen([str(BUILDS[build]), str(tmp_path / "valkey.conf")], stdout=log, stderr=log)
    try:
        wait_for(
            # The probes print the reply only when they fail: readiness shows the LOADING.
            lambda: run_probe(probe_commands["readiness"], port, password_file)[1].startswith("LOADING"),
            10,
            "the server answering LOADING",
        )
        seen = {kind: run_probe(command, port, password_file) for kind, command in probe_commands.items()}
        assert seen["readiness"][0] != 0 and seen["readiness"][1].startswith("LOADING"), seen
        assert seen["liveness"][0] == 0 and seen["startup"][0] == 0, seen
        # Once loaded, every probe passes, and nothing was lost.
        wait_for(lambda: run_probe(probe_commands["readiness"], port, password_file)[0] == 0, 60, "loaded")
        assert all(run_probe(command, port, password_file)[0] == 0 for command in probe_commands.values())
        assert admin(port).dbsize() == KEYS
    finally:
        stop_process(process, timeout=20)


ADMIN = "admin-password-of-this-test"


def admin(port: int) -> valkey.Valkey:
    return valkey.Valkey(port=port, username="testadmin", password=ADMIN, socket_timeout=30)
