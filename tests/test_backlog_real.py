"""The replication backlog outlives a long cut of the DR link: ``repl-backlog-ttl 0``, on real servers.

Valkey frees a primary's backlog once no replica has been connected for ``repl-backlog-ttl`` seconds
(default 3600); the next reconnect then copies the whole dataset again. The rendered primary keeps it
forever, so region 2 resumes with a partial resync however long region 1 went without a replica
(within what the backlog holds). An hour cannot be waited in a test: the primary runs under
libfaketime (Debian's ``faketime``), whose clock the test moves two hours ahead while the link is
down. Only the wall clock moves (``FAKETIME_DONT_FAKE_MONOTONIC``): Valkey's timers run as usual,
and it reads the idle time of its backlog from the wall clock.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import valkey
from harness import stack_file_config
from monitoring_support import Proxy
from replies import config_value, info, sync
from valkey_process import BUILDS, Server, every_build, free_port, wait_for, write_config

from components.config.loader import parse_stack_config
from components.config.models import Instance
from components.render.acl import Passwords, render_acl, server_users
from components.render.files import server_settings
from components.render.valkey_conf import Upstream
from components.sizing import replica_buffer_limit_bytes

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
CLIENT, REPLICATION, ADMIN = "client-password-1", "replication-password-1", "admin-password-1"
PASSWORDS = Passwords(client=(CLIENT,), replication=(REPLICATION,), probe="probe", reloader="reloader", admin=ADMIN)


def start(directory: Path, build: str, upstream: Upstream | None = None, env: dict[str, str] | None = None) -> Server:
    """Region 1's sessions instance as rendered (TLS off: these builds have none), in ``directory``."""
    cfg, problems = parse_stack_config(stack_file_config("region1"), "region1")
    assert cfg is not None, problems
    (directory / "data").mkdir(parents=True)
    settings = server_settings(
        cfg.instances["sessions"], upstream, data_dir=str(directory / "data"), acl_file=str(directory / "users.acl")
    )
    port = free_port()
    (directory / "users.acl").write_text(render_acl(server_users(PASSWORDS)))
    return Server(write_config(directory, replace(settings, port=port)), port, CLIENT, binary=BUILDS[build], env=env)


@every_build
def test_a_link_down_longer_than_valkeys_default_backlog_ttl_still_heals_partially(tmp_path: Path, build: str) -> None:
    if not LIBFAKETIME.exists():
        pytest.fail(f"{LIBFAKETIME} is missing: install Debian's faketime (.ci/run does)")
    clock = tmp_path / "clock-offset"
    clock.write_text("+0\n")
    faked = {
        "LD_PRELOAD": str(LIBFAKETIME),
        "FAKETIME_TIMESTAMP_FILE": str(clock),
        "FAKETIME_NO_CACHE": "1",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }
    primary = start(tmp_path / "primary", build, env=faked)
    replica = start(tmp_path / "replica", build, Upstream("127.0.0.1", primary.port, "replication", REPLICATION))
    try:
        p, r = primary.client("admin", ADMIN), replica.client("admin", ADMIN)
        wait_for(lambda: info(r, "replication")["master_link_status"] == "up", what="link up")
        for i in range(1000):
            p.set(f"session:{i}", "x" * 100)
        wait_for(lambda: r.dbsize() == 1000, what="replicated")
        before = info(p, "stats")

        # The DR link goes down: the replica can no longer log in.
        r.config_set("masterauth", "not-the-password")
        p.execute_command("CLIENT KILL", "TYPE", "replica")
        wait_for(lambda: info(p, "replication")["connected_slaves"] == 0, what="no replica connected")
        for i in range(1000, 1100):
            p.set(f"session:{i}", "y" * 100)
        clock.write_text("+2h\n")  # past Valkey's default repl-backlog-ttl of 3600 s
        wait_for(lambda: sync(p.time())[0] - time.time() > 7000, 10, "the primary's clock two hours ahead")
        # replicationCron runs once a second: give it three chances to free the backlog.
        for _ in range(30):
            assert info(p, "replication")["repl_backlog_active"] == 1, "the backlog was freed"
            time.sleep(0.1)

        r.config_set("masterauth", REPLICATION)
        wait_for(lambda: info(r, "replication")["master_link_status"] == "up", 15, "link up again")
        wait_for(lambda: r.dbsize() == 1100, what="writes made during the cut replicated")
        after = info(p, "stats")
        assert after["sync_partial_ok"] == before["sync_partial_ok"] + 1
        assert after["sync_full"] == before["sync_full"]
    finally:
        replica.stop()
        primary.stop()


BIG_BACKLOG: dict[str, Any] = {"replication": {"writeRate": "256KiB", "outageTolerance": "30s"}}
"""A backlog of 8.75 MiB (256 KiB/s x 35 s): small enough to fill in a test."""


def start_instance(directory: Path, build: str, config: dict[str, Any], upstream: Upstream | None = None) -> Server:
    """``config`` as one instance's stack config, rendered (TLS off), in ``directory``."""
    (directory / "data").mkdir(parents=True)
    settings = server_settings(
        Instance.model_validate(config),
        upstream,
        data_dir=str(directory / "data"),
        acl_file=str(directory / "users.acl"),
    )
    port = free_port()
    (directory / "users.acl").write_text(render_acl(server_users(PASSWORDS)))
    return Server(write_config(directory, replace(settings, port=port)), port, CLIENT, binary=BUILDS[build])


def write_for(client: valkey.Valkey, seconds: float, prefix: str) -> int:
    """SETs of 1000 B at about 1 MiB/s for ``seconds``; returns how many."""
    n, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        pipe = client.pipeline(transaction=False)
        for _ in range(50):
            pipe.set(f"{prefix}:{n}", "w" * 1000)
            n += 1
        pipe.execute()
        time.sleep(0.05)
    return n


@pytest.mark.parametrize(
    ("limit", "build"),
    [("rendered", "8.1.8"), ("rendered", "9.1.2"), ("a soft limit", "8.1.8")],
    ids=["rendered-valkey-8.1.8", "rendered-valkey-9.1.2", "soft-limit-valkey-8.1.8"],
)
def test_a_slow_full_sync_under_writes_is_not_cut_by_a_soft_limit(tmp_path: Path, build: str, limit: str) -> None:
    """A fresh replica's full sync of 16 MiB through a 2 MiB/s link while about 1 MiB/s is written:
    the stream the primary holds for the replica stays above 1 MiB for most of the 8 s it takes.
    Valkey's default replica limit (``256mb 64mb 60``) has a soft limit: more than 64 MiB for more
    than 60 s cuts the replica, and its next sync starts over. At the stack files' ``sessions`` size
    a sync over a 400 Mbit/s link (2 GiB: about 40 s of transfer, as long again to load) holds about
    160 MiB at the declared 2 MiB/s for over 80 s: cut every time. Here the default's shape scaled
    down (``1mb`` for ``1`` s) cuts and repeats the sync; the rendered limit (no soft limit, a hard
    one of components/sizing.py) lets it complete in one. The mechanism is Valkey's, so the cut is
    shown on one build."""
    primary = start_instance(tmp_path / "primary", build, BIG_BACKLOG)
    link = Proxy(primary.port, rate=2 * 1024**2)
    replica: Server | None = None
    try:
        p = primary.client("admin", ADMIN)
        pipe = p.pipeline(transaction=False)
        for i in range(16_000):  # incompressible: the RDB is as large as the data
            pipe.set(f"data:{i}", os.urandom(500).hex())
        pipe.execute()
        rendered = replica_buffer_limit_bytes(Instance.model_validate(BIG_BACKLOG))
        assert f"slave {rendered} 0 0" in config_value(p, "client-output-buffer-limit")
        if limit != "rendered":
            p.config_set("client-output-buffer-limit", f"replica {rendered} 1mb 1")
        upstream = Upstream("127.0.0.1", link.port, "replication", REPLICATION)
        before = info(p, "stats")
        replica = start_instance(tmp_path / "replica", build, BIG_BACKLOG, upstream)
        r = replica.client("admin", ADMIN)
        written = write_for(p, 8.0, "during")
        stats = info(p, "stats")
        cut = primary.log.read_text().count("overcoming of output buffer limits")
        if limit == "rendered":
            wait_for(lambda: r.dbsize() == 16_000 + written, 30, "every key and write on the replica")
            assert (stats["sync_full"] - before["sync_full"], cut) == (1, 0)
        else:
            assert cut >= 1 and stats["sync_full"] - before["sync_full"] >= 2, (cut, stats["sync_full"])
    finally:
        if replica is not None:
            replica.stop()
        link.close()
        primary.stop()
