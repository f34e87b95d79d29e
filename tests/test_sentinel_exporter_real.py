"""The Sentinel's exporter against a real Sentinel: Debian's prometheus-redis-exporter 1.45 with the
rendered flags and password file (``render.exporter.sentinel_args``), logged in as the Sentinel's
``metrics`` user with the rendered rules (``render.sentinel_conf.METRICS_RULES``), on a Sentinel
started from the rendered sentinel.conf the way sentinel.sh assembles it, watching a real primary
and replica. On both Valkey builds: every series the group rules read is there, and the
Sentinel's ACL LOG stays empty; each grant is shown necessary, and the user can change nothing.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import needs
import pytest
import valkey
from monitoring_support import Exporter
from replies import acl_log
from test_valkey_real import passwords, sessions_settings, start
from valkey_process import BUILDS, Server, free_port, stop_process, wait_for

from components.render.acl import server_users
from components.render.sentinel_conf import (
    METRICS_RULES,
    METRICS_USER,
    SentinelSettings,
    render_sentinel_conf,
    render_sentinel_master_conf,
)
from components.render.valkey_conf import Upstream

pytestmark = needs.debian({"prometheus-redis-exporter": ["prometheus-redis-exporter"]})

METRICS_PASSWORD = "sentinel-metrics-password-that-must-not-leak"
NODE_SENTINEL_PASSWORD = "node-sentinel-pw"
TEST_ADMIN = "test-admin"
"""Not rendered: a user the test reads the Sentinel's ACL LOG as (the rendered users cannot)."""
INPUTS = (
    "redis_up 1",
    'redis_sentinel_master_ckquorum_status{master_name="sessions"',
    'redis_sentinel_master_ok_sentinels{master_address="127.0.0.1:',
    'redis_sentinel_master_ok_slaves{master_address="127.0.0.1:',
    'redis_sentinel_master_status{master_address="127.0.0.1:',
    "redis_sentinel_tilt 0",
)
"""What the group rules and their runbooks read from a Sentinel's exporter."""


@dataclass
class Sentinel:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def admin(self) -> valkey.Valkey:
        return valkey.Valkey(port=self.port, username=TEST_ADMIN, password="adm", decode_responses=True)

    def refused(self) -> set[str]:
        return {e["object"] for e in acl_log(self.admin()) if e["username"] == METRICS_USER}


def start_sentinel(directory: Path, binary: Path, primary_port: int, quorum: int) -> Sentinel:
    directory.mkdir()
    port = free_port()
    settings = SentinelSettings(
        port=port, master_name="sessions", down_after_ms=5000, failover_timeout_ms=30000,
        peer_password="peer-pw", client_password="client-pw", node_password=NODE_SENTINEL_PASSWORD,
        data_dir=str(directory), metrics_password=METRICS_PASSWORD,
    )  # fmt: skip
    conf = directory / "sentinel.conf"
    conf.write_text(
        render_sentinel_conf(settings)
        + f"user {TEST_ADMIN} on >adm ~* &* +@all\n"
        + f"sentinel myid {'5' * 40}\n"
        + f"sentinel monitor sessions 127.0.0.1 {primary_port} {quorum}\n"
        + render_sentinel_master_conf(settings)
    )
    log = directory / "sentinel.log"
    with log.open("wb") as out:
        process = subprocess.Popen([str(binary), str(conf), "--sentinel"], stdout=out, stderr=subprocess.STDOUT)
    sentinel = Sentinel(process, port, log)
    wait_for(lambda: sentinel.admin().ping(), what=f"Sentinel answering ({log})")
    return sentinel


@dataclass
class Watched:
    primary: Server
    replica: Server
    sentinel: Sentinel


def watched(tmp_path: Path, build: str, quorum: int = 1) -> Iterator[Watched]:
    users = server_users(replace(passwords("client-pw", "replication-pw", "probe-pw"), sentinel=NODE_SENTINEL_PASSWORD))
    primary = start(tmp_path / "primary", sessions_settings(tmp_path / "primary", free_port()), users, "client-pw")
    upstream = Upstream("127.0.0.1", primary.port, "replication", "replication-pw")
    replica = start(
        tmp_path / "replica", sessions_settings(tmp_path / "replica", free_port(), upstream), users, "client-pw"
    )
    sentinel = start_sentinel(tmp_path / "sentinel", BUILDS[build], primary.port, quorum)
    try:
        yield Watched(primary, replica, sentinel)
    finally:
        stop_process(sentinel.process)
        replica.stop()
        primary.stop()


@pytest.fixture
def group(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Watched]:
    yield from watched(tmp_path, request.param)


def value(text: str, prefix: str) -> float | None:
    """The value of the one series of ``text`` whose line starts with ``prefix``."""
    lines = [line for line in text.splitlines() if line.startswith(prefix)]
    assert len(lines) <= 1, lines
    return float(lines[0].rsplit(" ", 1)[1]) if lines else None


def scrape_until_replica_seen(exporter: Exporter) -> str:
    """A Sentinel learns the primary's replicas from its INFO, every 10 s: the first within a second."""

    def seen() -> str | None:
        text = exporter.metrics()
        return text if value(text, "redis_sentinel_master_ok_slaves{") == 1 else None

    text = wait_for(seen, timeout=20, what="the Sentinel reporting the replica")
    assert text is not None
    return text


@pytest.mark.parametrize("group", sorted(BUILDS), ids=[f"valkey-{v}" for v in sorted(BUILDS)], indirect=True)
def test_the_sentinel_exporter_gets_every_input_and_nothing_is_refused(group: Watched, tmp_path: Path) -> None:
    exporter = Exporter(tmp_path / "exporter", group.sentinel.port, METRICS_PASSWORD, sentinel=True)
    try:
        assert METRICS_PASSWORD.encode() not in exporter.cmdline()
        group.sentinel.admin().acl_log_reset()
        text = scrape_until_replica_seen(exporter)
        missing = [line for line in INPUTS if line not in text]
        assert missing == [], f"{missing}\n{text}"
        status = [line for line in text.splitlines() if line.startswith("redis_sentinel_master_ckquorum_status{")]
        assert len(status) == 1 and status[0].endswith(" 1") and 'message="OK 1 usable Sentinels' in status[0]
        assert group.sentinel.refused() == set()
    finally:
        exporter.stop()


LOST = {
    "+info": ("redis_up ", 0.0),
    "+sentinel|masters": ("redis_sentinel_master_ckquorum_status{", None),
    "+sentinel|ckquorum": ("redis_sentinel_master_ckquorum_status{", 0.0),
    # Refused, the exporter counts the Sentinel itself only: with one Sentinel, as many as granted.
    "+sentinel|sentinels": ("redis_sentinel_master_ok_sentinels{", 1.0),
    "+sentinel|slaves": ("redis_sentinel_master_ok_slaves{", 0.0),
}
"""What a scrape reports without each grant: (series, value; None = absent)."""


@pytest.mark.parametrize("grant", METRICS_RULES.split()[1:])
def test_each_grant_of_the_sentinel_metrics_user_is_needed(tmp_path: Path, grant: str) -> None:
    """Without each grant the Sentinel logs a refusal at the next scrape, and what the exporter
    reports changes: redis_up 0 without INFO, no quorum without CKQUORUM, no replica without SLAVES."""
    assert set(LOST) == set(METRICS_RULES.split()[1:])
    for w in watched(tmp_path, "8.1.8"):
        exporter = Exporter(tmp_path / "exporter", w.sentinel.port, METRICS_PASSWORD, sentinel=True)
        try:
            scrape_until_replica_seen(exporter)
            command = grant.removeprefix("+")
            w.sentinel.admin().execute_command("ACL", "SETUSER", METRICS_USER, f"-{command}")
            w.sentinel.admin().acl_log_reset()
            text = exporter.metrics()
            assert command in w.sentinel.refused()
            series, expected = LOST[grant]
            assert value(text, series) == expected, text
        finally:
            exporter.stop()


def test_the_sentinel_metrics_user_changes_nothing(tmp_path: Path) -> None:
    for w in watched(tmp_path, "8.1.8"):
        metrics = valkey.Valkey(port=w.sentinel.port, username=METRICS_USER, password=METRICS_PASSWORD)
        for command in (
            ("SENTINEL", "FAILOVER", "sessions"), ("SENTINEL", "SET", "sessions", "quorum", "2"),
            ("SENTINEL", "RESET", "*"), ("SENTINEL", "REMOVE", "sessions"), ("SENTINEL", "CONFIG", "GET", "*"),
            ("ACL", "LIST"), ("SUBSCRIBE", "+switch-master"), ("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "sessions"),
        ):  # fmt: skip
            with pytest.raises(valkey.exceptions.NoPermissionError):
                metrics.execute_command(*command)


def test_a_sentinel_without_quorum_reports_status_0(tmp_path: Path) -> None:
    """The shape ValkeySentinelNoQuorum reads: one Sentinel where the quorum is 2 answers NOQUORUM."""
    for w in watched(tmp_path, "8.1.8", quorum=2):
        exporter = Exporter(tmp_path / "exporter", w.sentinel.port, METRICS_PASSWORD, sentinel=True)
        try:
            text = exporter.metrics()
            status = [line for line in text.splitlines() if line.startswith("redis_sentinel_master_ckquorum_status{")]
            assert len(status) == 1 and status[0].endswith(" 0") and "NOQUORUM" in status[0], status
            assert w.sentinel.refused() == set()
        finally:
            exporter.stop()
