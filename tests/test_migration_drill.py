"""The live-replication migration (instances.<name>.migration, method replication) on real
processes, once per Valkey version: Debian's redis-server 7.0 holding data of every core type in
two databases, under writes, is the source; region 1's group, rendered with the migration and
started by the pod runner, replicates it (its head logs in as the source's own ACL user, from that
server's Secret), region 2's head follows region 1 as usual; the cut-over is the runbook's
(``python -m ops.cutover promote``), then the migration is removed from the stack config and the
``pulumi up`` rollout makes the group lead. Every key, value and TTL (within 1 s) must match the
source's, every acknowledged write be there, and the write pause is reported.

On one version's run (``FAULTS_ON``), faults in between: the head is lost, the source's password
rotated, the promoted pod restarts before the pulumi up while the source takes writes again; and
after it, the guard: the instance holds data of its own, and a pod started again from the migrating
render must not replicate the source but keep its data, fenced.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import harness
import needs
import pytest
import valkey
from drills_support import Report, admin, link_up, missing_keys
from group_support import (
    IMAGES,
    ReconnectingWriter,
    group_config,
    host_client,
    logged,
    primary_pod,
    region2_of,
    start_region2_head,
)
from migration_support import SOURCE_PASSWORD, Writers, differences, fill, oracle, start_source
from podrunner import PodRunner
from podrunner.pod import Pod
from replies import config_value, info, sync
from valkey_process import Server, wait_for

pytestmark = needs.root

SOURCE_HOST = "redis.legacy.example.com"
SOURCE_USER = "migrator"
SOURCE_USER_PASSWORD = 'the-source\'s "migrator" login'
"""Quotes and spaces: the head's runtime config must carry it intact (login.sh's \\x escapes)."""
LOGIN_SECRET = "legacy-login"
BUILD = {"8.1": "8.1.8", "9.1": "9.1.2"}


def migration(secret: str = LOGIN_SECRET) -> dict[str, Any]:
    return {
        "method": "replication",
        "source": {"host": SOURCE_HOST, "port": 6379, "credentialsSecret": secret, "cidrs": ["10.0.0.0/8"]},
    }


def login_secret(password: str) -> dict[str, Any]:
    """The source's Secret as its owner made it (the program never creates nor reads it)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": LOGIN_SECRET, "namespace": "databases"},
        "stringData": {"username": SOURCE_USER, "password": password + "\n"},
    }


@dataclass
class WithSourceSecret:
    """A render plus the source's own Secret, which exists in the cluster beside it."""

    rendered: harness.Rendered
    password: str = SOURCE_USER_PASSWORD

    def manifests(self) -> list[dict[str, Any]]:
        return [*self.rendered.manifests(), login_secret(self.password)]

    def first_rollout(self) -> list[dict[str, Any]]:
        return [*self.rendered.first_rollout(), login_secret(self.password)]


@dataclass
class Address:
    port: int


def head_of(pods: list[Pod]) -> Pod:
    head = primary_pod(pods)
    assert head is not None
    return head


def cutover(source_port: int, head: Pod, rendered: harness.Rendered) -> subprocess.CompletedProcess[str]:
    admin_password = rendered.secret_data("sessions-admin-credentials")["password"]
    env = {**os.environ, "SOURCE_PASSWORD": SOURCE_PASSWORD, "TARGET_PASSWORD": admin_password}
    return subprocess.run(
        [
            sys.executable,
            *("-m", "ops.cutover", "promote"),
            *("--source", f"127.0.0.1:{source_port}", "--target", f"{head.address}:6379"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=harness.ROOT,
        timeout=120,
        check=False,
    )


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    """Servers a test starts outside the pod runner, stopped afterwards whatever happened."""
    started: list[Server] = []
    yield started
    for server in started:
        server.stop()


@pytest.mark.parametrize("version", sorted(IMAGES))
def test_a_live_replication_migration_cuts_over_with_every_key_and_write(
    runner: PodRunner, version: str, report: Report, tmp_path: Path, servers: list[Server]
) -> None:
    source = start_source(
        tmp_path / "source", f"user {SOURCE_USER} on #{_sha256(SOURCE_USER_PASSWORD)} +psync +replconf +ping"
    )
    servers.append(source)
    fill(source)
    runner.add_host(SOURCE_HOST, runner.proxy(("127.0.0.1", source.port), port=6379).host, region="region1")
    writers = Writers(source.port, SOURCE_PASSWORD)
    writers.start()
    rendered = harness.render("region1", {**group_config(IMAGES[version]), "instances.sessions.migration": migration()})
    pods = runner.start_statefulset(WithSourceSecret(rendered), "sessions", region="region1", wait_ready=60)
    logged(pods, lambda: wait_for(lambda: primary_pod(pods) is not None, 30, "the head labelled primary"))
    head = head_of(pods)
    with admin(rendered, "sessions", head.address) as c:
        replication = info(c, "replication")
        assert replication["master_host"] == SOURCE_HOST and link_up(c)
    # The members follow the head with the group's own login; none talks to the source.
    for pod in pods:
        if pod is not head:
            with admin(rendered, "sessions", pod.address) as c:
                assert info(c, "replication")["master_host"] == head.fqdn
    r2 = region2_of(rendered, IMAGES[version])
    dr, link = start_region2_head(runner, r2, head)
    time.sleep(2)  # writes flow through all three levels

    source_admin = valkey.Valkey(port=source.port, password=SOURCE_PASSWORD)
    password, new_head_s = SOURCE_USER_PASSWORD, None
    if version == FAULTS_ON:
        head, new_head_s = _lose_the_head(rendered, pods, head)
        password = _rotate_the_source_password(rendered, pods, head, source_admin)

    # The runbook promotes pod 0, which replicates the head (the same history): the rollout that
    # follows restarts it last, once the others run the group's Sentinels, which hand it over.
    promoted = next(p for p in pods if p.ordinal == 0)
    result = cutover(source.port, promoted, rendered)
    writers.stop()
    print(result.stdout, result.stderr)
    assert result.returncode == 0, result.stderr
    # The source refuses writes now (a replica of a name that resolves nowhere), and keeps its data.
    with pytest.raises(valkey.ReadOnlyError):
        valkey.Valkey(port=source.port, password=SOURCE_PASSWORD).set("late", "1")

    wait_for(lambda: all(_record(runner, p) == "cut-over" for p in pods), 20, "the cut-over on every volume")
    members = [p for p in pods if p is not promoted]
    again = lambda: all(_follows(rendered, p) == promoted.fqdn for p in members)  # noqa: E731
    logged(pods, lambda: wait_for(again, 30, "the members follow the promoted pod"))
    if version == FAULTS_ON:
        _restart_after_the_cut_over(rendered, pods, promoted, source_admin, password)

    # The applications move to the instance's host; then the migration leaves the stack config and
    # `pulumi up` rolls the group to a leading one.
    app_writer = ReconnectingWriter(lambda: host_client(runner, rendered), f"after-{version}")
    app_writer.start()
    wait_for(lambda: len(app_writer.acked) > 100, 30, "the applications write to the instance")
    leading = harness.render("region1", group_config(IMAGES[version]))
    started = time.monotonic()
    pods = logged(pods, lambda: runner.rolling_restart(pods, leading, wait_ready=90))
    rollout_s = time.monotonic() - started
    logged(pods, lambda: wait_for(lambda: primary_pod(pods) is not None, 30, "one primary after the rollout"))
    time.sleep(1)
    app_writer.stop()
    primary = head_of(pods)

    copy = oracle(tmp_path / "oracle", BUILD[version], 6379, host=primary.address, password=_replication(leading))
    servers.append(copy)
    with admin(leading, "sessions", primary.address) as c:
        acked = list(writers.acknowledged.items())
        values = c.mget([k for k, _ in acked]) if acked else []
        lost_acked = [k for (k, v), held in zip(acked, values, strict=True) if held != v.encode()]
        lost_after = missing_keys(c, app_writer.keys())
        written_after = app_writer.keys()  # after the cut-over: not on the source
        for i in range(0, len(written_after), 1000):
            c.delete(*written_after[i : i + 1000])
        offset = int(info(c, "replication")["master_repl_offset"])
    copied = valkey.Valkey(port=copy.port)
    wait_for(lambda: int(info(copied, "replication").get("master_repl_offset", -1)) >= offset, 60, "the oracle in sync")
    found = differences(source, Address(6379), copy, _admin(leading), target_host=primary.address)
    assert found == [] and lost_acked == [] and lost_after == []
    with admin(r2, "sessions", dr.address) as c:
        wait_for(lambda: link_up(c), 30, "region 2 attached to the new primary")
    link.stop()

    if version == FAULTS_ON:
        _guard(pods, primary, leading, source_admin, IMAGES[version])
    report.add(
        f"migration-replication-{version}",
        source_writes_acked=len(writers.acknowledged),
        output=result.stdout.strip().splitlines()[-3:],
        new_head_after_loss_s=new_head_s and round(new_head_s, 1),
        rollout_s=round(rollout_s, 1),
        app_writes_during_rollout=len(app_writer.keys()),
        longest_app_write_outage_s=round(app_writer.longest_outage(), 2),
    )


FAULTS_ON = "8.1"
"""The faults during the migration (a lost head, a rotated source password, a restart between the
cut-over and the pulumi up, the guard) exercise the pods' scripts, the same on either build: they run
on one version's drill; the other runs the migration and cut-over themselves."""


def _lose_the_head(rendered: harness.Rendered, pods: list[Pod], head: Pod) -> tuple[Pod, float]:
    """The head is lost: a keeper points the member holding the most data at the source, with the
    source's login; the old head, back, follows it with the group's. The new head, and how long."""
    head.kill_container("valkey")
    lost_at = time.monotonic()
    elected = logged(pods, lambda: wait_for(lambda: _new_head(rendered, pods, head), 40, "a new head on the source"))
    assert elected is not None
    new_head_s = time.monotonic() - lost_at
    logged(pods, lambda: wait_for(lambda: _follows(rendered, head) == elected.fqdn, 60, "the old head follows"))
    return elected, new_head_s


def _rotate_the_source_password(
    rendered: harness.Rendered, pods: list[Pod], head: Pod, source_admin: valkey.Valkey
) -> str:
    """The source's owner rotates its password: the new one in the Secret, the old one dropped on
    the source. The reloader sets it on the head, which resumes with it (a partial resync)."""
    rotated = "rotated " + SOURCE_USER_PASSWORD
    source_admin.execute_command("ACL", "SETUSER", SOURCE_USER, f"#{_sha256(rotated)}")
    for pod in pods:
        pod.update_volumes(WithSourceSecret(rendered, rotated))
    with admin(rendered, "sessions", head.address) as c:
        wait_for(lambda: config_value(c, "masterauth") == rotated, 30, "the reloader set the new login")
    for pod in pods:
        if pod is not head:
            with admin(rendered, "sessions", pod.address) as c:
                assert config_value(c, "masteruser") == "replication"
    source_admin.execute_command("ACL", "SETUSER", SOURCE_USER, f"!{_sha256(SOURCE_USER_PASSWORD)}")
    resumed = int(info(source_admin, "stats")["sync_partial_ok"])
    source_admin.execute_command("CLIENT", "KILL", "TYPE", "replica")
    logged(
        pods,
        lambda: wait_for(
            lambda: int(info(source_admin, "stats")["sync_partial_ok"]) > resumed,
            30,
            "the head back, with the new login",
        ),
    )
    return rotated


def _restart_after_the_cut_over(
    rendered: harness.Rendered, pods: list[Pod], promoted: Pod, source_admin: valkey.Valkey, password: str
) -> None:
    """Before the pulumi up that ends the migration, the source takes writes again (its own
    failover, say) and the promoted pod restarts: no node replicates the source any more (the
    keepers recorded the cut-over on every volume); the pod keeps its data, and the runbook's
    remedy, REPLICAOF NO ONE on it, brings the group back."""
    members = [p for p in pods if p is not promoted]
    again = lambda: all(_follows(rendered, p) == promoted.fqdn for p in members)  # noqa: E731
    source_admin.replicaof("NO", "ONE")
    syncs = _syncs(source_admin)
    with admin(rendered, "sessions", promoted.address) as c:
        held = int(sync(c.dbsize()))
    promoted.restart(objects=WithSourceSecret(rendered, password), wait_ready=None)
    wait_for(lambda: "keeper: not pointing this node at the source" in _logs(pods, "keeper"), 30, "a keeper refusing")
    assert _syncs(source_admin) == syncs
    with admin(rendered, "sessions", promoted.address) as c:
        assert int(sync(c.dbsize())) == held
        c.replicaof("NO", "ONE")
    logged(pods, lambda: wait_for(again, 30, "the members follow the promoted pod again"))
    assert _syncs(source_admin) == syncs


def _guard(pods: list[Pod], primary: Pod, leading: harness.Rendered, source_admin: valkey.Valkey, image: str) -> None:
    """The source takes writes; a pod started from the migrating render on a volume that holds the
    instance's own data keeps it, fenced, and never asks the source for a sync."""
    syncs = _syncs(source_admin)
    member = next(p for p in pods if p is not primary)
    with admin(leading, "sessions", member.address) as c:
        held = c.dbsize()
    migrating = harness.render("region1", {**group_config(image), "instances.sessions.migration": migration()})
    member.restart(objects=WithSourceSecret(migrating), wait_ready=None)
    wait_for(lambda: "this volume holds the instance's own data" in member.logs("valkey"), 30, "the fence's log line")
    time.sleep(5)
    assert not member.ready
    with admin(leading, "sessions", member.address) as c:
        assert info(c, "replication")["master_host"] == "fenced.invalid"
        assert c.dbsize() == held
    assert _syncs(source_admin) == syncs


def _follows(rendered: harness.Rendered, pod: Pod) -> str | None:
    try:
        with admin(rendered, "sessions", pod.address) as c:
            replication = info(c, "replication")
    except (valkey.ConnectionError, valkey.TimeoutError, valkey.ResponseError):
        return None
    return str(replication.get("master_host")) if replication.get("master_link_status") == "up" else None


def _new_head(rendered: harness.Rendered, pods: list[Pod], old: Pod) -> Pod | None:
    labelled = primary_pod(pods)
    if labelled is None or labelled is old or _follows(rendered, labelled) != SOURCE_HOST:
        return None
    return labelled


def _record(runner: PodRunner, pod: Pod) -> str:
    """The data volume's migration record (render/scripts/login.sh), or "none"."""
    path = runner.claim_path("region1", "databases", f"data-{pod.name}") / "migration-source"
    return path.read_text().strip() if path.exists() else "none"


def _syncs(source: valkey.Valkey) -> int:
    stats = info(source, "stats")
    return int(stats["sync_full"]) + int(stats["sync_partial_ok"])


def _logs(pods: list[Pod], container: str) -> str:
    return "".join(p.logs(container) for p in pods)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _replication(rendered: harness.Rendered) -> str:
    return str(rendered.exports["replicationCredentials"]["sessions"]["password"])


def _admin(rendered: harness.Rendered) -> str:
    return rendered.secret_data("sessions-admin-credentials")["password"]
