"""6. Group: throughput through the ``host`` endpoint vs the primary's own address, and failover time
over repeated ``kill -9`` of the primary.

The stack files' ``sessions`` group (3 pods: Valkey, Sentinel, label updater, exporter) is started as
the group drills start it (tests/test_group_drills.py ``start_group``: one pod labelled primary, every
Sentinel knowing both replicas and both other Sentinels).

Throughput: redis-benchmark runs in a replica pod's network namespace (an application pod on the
bridge), either against the ``host`` name, resolved by redis-benchmark itself from that pod's
/etc/hosts (a private mount namespace binds the pod's hosts file over the host's), or against the
primary pod's IP. The runner emulates a Service by name resolution: the Service name resolves to the
Ready pods its selector matches, following their labels. There is no proxy between client and server,
so both paths carry the same packets and the ratio is expected at the noise floor (a second run direct
to the pod, same rotation). See ``NOTE_EMULATION`` for what a cluster's ClusterIP adds.

Failover: the drills' ReconnectingWriter (retry loop, resolves ``host`` again on every reconnect)
writes through ``host``; the primary's Valkey container is killed with SIGKILL (the kubelet restarts
it, with its back-off); per kill: when writes succeed again for good, how many acknowledged writes the
new primary lacks, when the Sentinels switched (+sdown / +switch-master in their logs), and when the
group settled again (killed pod a replica with its link up, every Sentinel knowing both replicas)
before the next kill: a Sentinel that has not yet seen a just-rejoined replica would abort the next
failover (-failover-abort-no-good-slave) and wait 2 × failover-timeout.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import valkey
from drills_support import app, link_up, missing_keys
from group_support import (
    HOST,
    WRITE_RATE,
    ReconnectingWriter,
    another_primary,
    host_client,
    logged,
    node_role,
    primary_pod,
    settled,
    start_group,
)
from podrunner import Pod, PodRunner

from bench.common import (
    Results,
    admin,
    client_password,
    in_netns,
    log,
    median,
    percentile,
    render_pair,
    rendered_conf,
    run,
    secret,
    spread,
    stack_instances,
    wait_for,
)
from bench.throughput import Settings as ThroughputSettings
from bench.throughput import benchmark_argv, rps_of, wait_idle
from components.specs.labels import NODE_ROLE_LABEL

INSTANCE = "sessions"
REGION = "region1"
SECTION = "6 group"

NOTE_EMULATION = (
    "What `host` is here: the pod runner emulates a Service by name resolution only — the Service's "
    "name is in each pod's /etc/hosts with the addresses of the Ready pods its selector matches, "
    "rewritten when a label or readiness changes (a ClusterIP emulated by DNS). A client connects "
    "straight to the primary pod's IP: no proxy, no NAT, the same packets as the direct run, so the "
    "ratio measures only name resolution at connect time and lands at the noise floor. On a cluster "
    "the client Service is a ClusterIP: kube-proxy (iptables/IPVS, or an eBPF dataplane) DNATs the "
    "connection's first packet to the pod and conntrack translates the rest in the kernel; there is "
    "no userspace hop, so the cost per request is a conntrack lookup (microseconds against a ~100 µs "
    "round trip) and the ratio on a cluster is expected near this one; a pod-to-pod round trip across "
    "nodes is not measured here (both paths would share it). What the emulation does not show: "
    "existing connections to a pod that lost the label are not cut (neither does kube-proxy's "
    "conntrack), and Service endpoint propagation (EndpointSlice -> kube-proxy on every node, "
    "typically < 1 s) is instantaneous here, so failover times below lack that delay."
)


@dataclass(frozen=True)
class Settings:
    repetitions: int = 10
    requests: tuple[tuple[int, int], ...] = ((1, 20_000), (16, 150_000))
    """(pipeline, requests per run), as section 1: ~0.3 s runs, many of them."""
    kills: int = 10
    write_rate: float = WRITE_RATE
    """Writes/s through ``host`` during the kills (the drills' rate)."""
    warm_writes: int = 5000
    """Acknowledged writes before each kill."""
    settle_timeout: float = 300.0
    """Per kill: the kubelet's back-off (0, 10, 20, 40 s … for one container) plus a full resync."""


# ----- throughput --------------------------------------------------------------------------------------


def through_name(client: Pod, argv: list[str]) -> list[str]:
    """``argv`` in ``client``'s network namespace with the pod's /etc/hosts, so that the name is
    resolved as the pod resolves it (a private mount namespace: nothing changes on the host)."""
    assert client.network is not None
    hosts = client.dir / "etc" / "hosts"
    script = f'mount --bind {hosts} /etc/hosts && exec "$@"'
    return ["nsenter", f"--net={client.network.path}", "--", "unshare", "--mount", "sh", "-c", script, "sh", *argv]


def throughput(results: Results, runner: PodRunner, r1: Any, pods: list[Pod], s: Settings) -> dict[str, Any]:
    primary = primary_pod(pods)
    assert primary is not None
    client = next(p for p in pods if p is not primary)
    password = client_password(r1, INSTANCE)
    tsettings = ThroughputSettings(requests=s.requests)
    controls = [admin(r1, INSTANCE, p.address, p.port) for p in pods]

    def argv(variant: str, pipeline: int, requests: int, test: str) -> list[str]:
        host = HOST if variant == "host" else primary.address
        a = benchmark_argv(host, primary.port, password, pipeline=pipeline, requests=requests, test=test, s=tsettings)
        return through_name(client, a) if variant == "host" else in_netns(client, a)

    resolved: list[list[str]] = []
    variants = ["host", "direct", "direct-b"]
    rps: dict[tuple[str, int, str], list[float]] = {}
    ratios: dict[tuple[str, int, str], list[float]] = {}
    for variant in variants:  # warm-up: connections, allocator, first AOF writes
        rps_of(run(argv(variant, 16, 50_000, "set")))
    for rep in range(s.repetitions):
        for pipeline, requests in s.requests:
            for test in ("SET", "GET"):
                order = variants[rep % 3 :] + variants[: rep % 3]
                got = {}
                for variant in order:
                    wait_idle(controls)
                    resolved.append(runner.resolve(HOST, REGION))
                    got[variant] = rps_of(run(argv(variant, pipeline, requests, test.lower())))
                    rps.setdefault((variant, pipeline, test), []).append(got[variant])
                ratios.setdefault(("host", pipeline, test), []).append(got["host"] / got["direct"])
                ratios.setdefault(("A/A", pipeline, test), []).append(got["direct-b"] / got["direct"])
        log(f"group: throughput repetition {rep + 1}/{s.repetitions} done")
    for c in controls:
        c.close()
    elsewhere = sum(1 for r in resolved if r != [primary.address])
    for pipeline, _ in s.requests:
        for test in ("SET", "GET"):
            host, direct = rps[("host", pipeline, test)], rps[("direct", pipeline, test)]
            ratio = median(ratios[("host", pipeline, test)])
            aa = ratios[("A/A", pipeline, test)]
            results.check(
                SECTION,
                f"{test} -P {pipeline}: req/s through `host` vs direct to the primary pod",
                f"{median(host):,.0f} [{spread(host)}]; ratio {ratio:.2f}",
                f"{median(direct):,.0f} [{spread(direct)}]; noise floor (direct vs direct) {median(aa):.2f}",
                "ratio ≥ 0.90",
                ok=ratio >= 0.90,
            )
    results.add(
        SECTION,
        f"`{HOST}` resolved to the primary pod's address before each run",
        f"{len(resolved) - elsewhere} of {len(resolved)}",
    )
    results.note(
        f"Group throughput: the stack files' `{INSTANCE}` group (3 pods); "
        f"`redis-benchmark -c {tsettings.clients} -d {tsettings.size} -r {tsettings.keyspace} -P 1|16 -t set|get` "
        f"in the network namespace of replica pod {client.name} (an application pod on the same bridge), "
        f"against `{HOST}` (resolved by redis-benchmark from that pod's /etc/hosts) or the primary pod's IP; "
        f"runs of {', '.join(f'{n:,} requests at -P {p}' for p, n in s.requests)}, {s.repetitions} "
        "repetitions, the three runs (host, direct, direct again) back to back in rotating order, none "
        "started while a server had a fork child; ratio = median of per-repetition ratios. " + NOTE_EMULATION
    )
    return {
        "rps": {f"{v} P{p} {t}": x for (v, p, t), x in rps.items()},
        "ratios": {
            f"{'direct-b/direct' if v == 'A/A' else 'host/direct'} P{p} {t}": x for (v, p, t), x in ratios.items()
        },
        "resolved_elsewhere": elsewhere,
    }


# ----- failover ----------------------------------------------------------------------------------------

# Valkey's log line: "<pid>:X 05 Jan 2025 18:56:25.123 # +switch-master sessions <old> 6379 <new> 6379"
LOG_LINE = re.compile(r"^\d+:[A-Z] (\d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2}\.\d{3}) [.\-*#] (.*)$")


def sentinel_events(pods: list[Pod], offsets: dict[str, int], event: str) -> list[float]:
    """Wall-clock times (epoch s) of ``event`` lines (e.g. ``+switch-master``) in every pod's Sentinel
    log after ``offsets`` (its length at the kill). The containers have no /etc/localtime: UTC."""
    times = []
    for pod in pods:
        for line in pod.logs("sentinel")[offsets[pod.name] :].splitlines():
            m = LOG_LINE.match(line)
            if m and m.group(2).startswith(event):
                stamp = datetime.strptime(m.group(1), "%d %b %Y %H:%M:%S.%f").replace(tzinfo=UTC)
                times.append(stamp.timestamp())
    return times


class Timeline(threading.Thread):
    """Every 50 ms: each pod's role label and readiness and what ``host`` resolves to, kept when it
    changes. Printed for a kill whose write pause is well beyond the Sentinels' switch, to say why."""

    def __init__(self, runner: PodRunner, pods: list[Pod], since: float):
        super().__init__(name="group-timeline", daemon=True)
        self.runner, self.pods, self.since = runner, pods, since
        self.changes: list[tuple[float, str]] = []
        self._stop_event = threading.Event()
        self.start()

    def run(self) -> None:
        last = None
        while not self._stop_event.wait(0.05):
            now = " ".join(
                f"{p.name}={p.labels.get(NODE_ROLE_LABEL, '-')}{'' if p.ready else '(not ready)'}" for p in self.pods
            )
            now += f" host->{','.join(self.runner.resolve(HOST, REGION)) or 'none'}"
            if now != last:
                self.changes.append((round(time.monotonic() - self.since, 2), now))
                last = now

    def stop(self) -> list[tuple[float, str]]:
        self._stop_event.set()
        self.join(5)
        return self.changes


@dataclass
class Kill:
    killed: str
    new_primary: str
    writes_back_s: float
    """Until the end of the last write outage of the cycle: writes succeed again for good."""
    outages: int
    acked: int
    lost: int
    labelled_s: float
    """Until another pod alone carries the primary label."""
    sdown_s: float | None
    """First Sentinel's +sdown of the master (down-after-milliseconds)."""
    switch_s: float | None
    """First Sentinel's +switch-master: the failover done, as Sentinel sees it."""
    restarted_s: float
    """Until the kubelet started the killed container again (its crash-loop back-off)."""
    replica_s: float
    """Until the killed pod is a replica with its link up."""
    settled_s: float
    """Until every Sentinel knows both replicas (healthy) and both other Sentinels."""
    ready_s: float
    """Until the killed pod is Ready again (its readiness probe)."""
    errors: list[str] = field(default_factory=list)
    timeline: list[tuple[float, str]] = field(default_factory=list)


def error_kinds(errors: list[str]) -> list[str]:
    """The writer's errors without addresses and numbers: what kinds of refusal a client saw."""
    return sorted({re.sub(r"[\d.:]+", "#", e)[:70] for e in errors})


def kill_once(runner: PodRunner, r1: Any, pods: list[Pod], s: Settings, n: int) -> Kill:
    old = primary_pod(pods)
    assert old is not None
    writer = ReconnectingWriter(lambda: host_client(runner, r1), f"failover-{n}", rate=s.write_rate)
    writer.start()
    try:
        wait_for(lambda: len(writer.acked) * writer.batch >= s.warm_writes, 60, "writes flowing", interval=0.05)
        restarts = old.restart_count("valkey")
        offsets = {p.name: len(p.logs("sentinel")) for p in pods}
        killed_wall, killed_at = time.time(), time.monotonic()
        timeline = Timeline(runner, pods, killed_at)
        old.kill_container("valkey")

        def is_replica() -> bool:
            with contextlib.suppress(valkey.ValkeyError, OSError):
                if node_role(r1, old) == "slave":
                    with admin(r1, INSTANCE, old.address, old.port) as c:
                        return link_up(c)
            return False

        def group_settled() -> bool:
            with contextlib.suppress(valkey.ValkeyError, OSError):
                return all(settled(r1, p) for p in pods)
            return False

        # Milestones, polled together so that none is timed after another's wait. Settled is only
        # asked once the others are reached: before the Sentinels notice the kill (down-after),
        # they still describe the old group as healthy.
        at: dict[str, float] = {}
        checks = {
            "labelled": lambda: another_primary(pods, old) is not None,
            "restarted": lambda: old.restart_count("valkey") > restarts,
            "replica": lambda: "restarted" in at and is_replica(),
            "ready": lambda: "restarted" in at and old.ready,
            "settled": lambda: {"labelled", "replica", "ready"} <= at.keys() and group_settled(),
        }

        def reached() -> bool:
            for name, check in checks.items():
                if name not in at and check():
                    at[name] = time.monotonic() - killed_at
            return len(at) == len(checks)

        logged(pods, lambda: wait_for(reached, s.settle_timeout, f"kill {n + 1}: settled again", 0.05))
        assert writer.is_alive(), "the writer stopped"
    finally:
        writer.stop()
        changes = timeline.stop()
    current = primary_pod(pods)
    assert current is not None
    after = [o for o in writer.outages if o.started >= killed_at]
    back = max((o.ended or time.monotonic() for o in after), default=killed_at) - killed_at
    keys = writer.keys()
    with app(r1, INSTANCE, current.address) as c:
        lost = len(missing_keys(c, keys))
        for i in range(0, len(keys), 5000):  # keep the dataset (and every later resync) small
            c.unlink(*keys[i : i + 5000])
    sdown = [t for t in sentinel_events(pods, offsets, "+sdown master") if t >= killed_wall]
    switch = [t for t in sentinel_events(pods, offsets, "+switch-master") if t >= killed_wall]
    return Kill(
        killed=old.name,
        new_primary=current.name,
        writes_back_s=back,
        outages=len(after),
        acked=len(keys),
        lost=lost,
        labelled_s=at["labelled"],
        sdown_s=min(sdown) - killed_wall if sdown else None,
        switch_s=min(switch) - killed_wall if switch else None,
        restarted_s=at["restarted"],
        replica_s=at["replica"],
        ready_s=at["ready"],
        settled_s=at["settled"],
        errors=error_kinds(writer.errors),
        timeline=changes,
    )


def dist(values: list[float]) -> str:
    if not values:
        return "n/a"
    return f"{min(values):.2f} / {median(values):.2f} / {percentile(values, 90):.2f} / {max(values):.2f}"


def failover(results: Results, runner: PodRunner, r1: Any, pods: list[Pod], s: Settings) -> list[Kill]:
    kills = []
    for n in range(s.kills):
        k = kill_once(runner, r1, pods, s, n)
        kills.append(k)
        if k.switch_s is None or k.writes_back_s > k.switch_s + 2:
            log(f"group: kill {n + 1}: writes back {k.writes_back_s:.1f} s, +switch-master {k.switch_s} s; timeline:")
            for at, state in k.timeline:
                log(f"  {at:7.2f} s  {state}")
            for pod in pods:
                log(f"----- {pod.name} labeler\n{pod.logs('labeler')[-1500:]}")
        if k.replica_s > k.restarted_s + 30:  # seen in 2 of 10 kills: labelled replica at once, link up ~45 s later
            killed = next(p for p in pods if p.name == k.killed)
            log(
                f"group: kill {n + 1}: {k.killed} restarted after {k.restarted_s:.1f} s, "
                f"link up after {k.replica_s:.1f} s"
            )
            log(f"----- {k.killed} valkey\n{killed.logs('valkey')[-3000:]}")
        log(
            f"group: kill {n + 1}/{s.kills} of {k.killed}: writes back {k.writes_back_s:.2f} s, lost {k.lost} "
            f"of {k.acked}, +switch-master {k.switch_s if k.switch_s is None else round(k.switch_s, 2)} s, "
            f"restarted {k.restarted_s:.1f} s, settled {k.settled_s:.1f} s"
        )
    conf = rendered_conf(r1, INSTANCE)
    sentinel_conf = secret(r1, f"{INSTANCE}-config")["sentinel-master.conf"]
    down_after = re.search(r"down-after-milliseconds \S+ (\d+)", sentinel_conf)
    timeout = re.search(r"failover-timeout \S+ (\d+)", sentinel_conf)
    sync_delay = conf.get("repl-diskless-sync-delay", "5 (Valkey's default)")
    lost = sum(k.lost for k in kills)
    acked = sum(k.acked for k in kills)
    n = len(kills)
    label = f"{n} × kill -9 of the primary"
    results.check(
        SECTION,
        f"{label}: writes through `host` succeed again after, s (min / median / p90 / max)",
        dist([k.writes_back_s for k in kills]),
        f"+switch-master after {dist([k.switch_s for k in kills if k.switch_s is not None])}",
        "< 10 s",
        ok=max(k.writes_back_s for k in kills) < 10,
    )
    results.check(
        SECTION,
        f"{label}: acknowledged writes lost (total / worst kill)",
        f"{lost} of {acked:,} / {max(k.lost for k in kills)}",
        f"{s.write_rate:,.0f} writes/s through `host`",
        "≤ 1 s of writes per kill",
        ok=max(k.lost for k in kills) <= s.write_rate,
    )
    for metric, values in (
        ("Sentinel +sdown (detection)", [k.sdown_s for k in kills if k.sdown_s is not None]),
        ("Sentinel +switch-master (failover done)", [k.switch_s for k in kills if k.switch_s is not None]),
        ("new primary alone labelled primary", [k.labelled_s for k in kills]),
        ("killed container started again (kubelet back-off)", [k.restarted_s for k in kills]),
        ("killed pod a replica, link up", [k.replica_s for k in kills]),
        ("killed pod Ready", [k.ready_s for k in kills]),
        ("group settled (every Sentinel knows both replicas)", [k.settled_s for k in kills]),
    ):
        results.add(SECTION, f"{label}: {metric} after, s (min / median / p90 / max)", dist(values))
    results.add(
        SECTION,
        f"{label}: write outages per kill (1 = one pause, no flapping)",
        f"{dist([float(k.outages) for k in kills])}",
    )
    results.note(
        f"Group failover: {n} cycles on the same group; in each, the drills' ReconnectingWriter (valkey-py, "
        f"pipelines of 10 SETs of new keys, {s.write_rate:,.0f}/s, on any error resolve `{HOST}` again and "
        f"reconnect) runs through `host` from {s.warm_writes:,} acknowledged writes before the kill until the "
        "group settled; SIGKILL to the current primary's Valkey container (the kubelet stand-in restarts it "
        "with the kubelet's back-off: at once, then 10, 20, 40 s … per container, so a pod killed again waits "
        "longer). Writes back = kill to the end of the cycle's last write outage. Lost = acknowledged keys the "
        "primary lacks after the cycle (the cycle's keys are then unlinked). Sentinel times: first +sdown / "
        "+switch-master in the three Sentinels' logs (ms timestamps, UTC) minus the kill's wall clock. "
        "Settled = the killed pod is Ready and a replica with its link up, and every Sentinel lists both "
        "replicas with "
        "flags exactly `slave` and both other Sentinels; the next kill waits for it: a Sentinel that has not "
        "seen a rejoined replica yet (it learns replicas from the primary's INFO every 10 s) aborts the "
        "failover (-failover-abort-no-good-slave) and the group waits 2 × failover-timeout. Rendered "
        f"down-after-milliseconds {down_after.group(1) if down_after else '?'}, failover-timeout "
        f"{timeout.group(1) if timeout else '?'}, repl-diskless-sync-delay {sync_delay}."
    )
    return kills


# ----- the section --------------------------------------------------------------------------------------


def measure(results: Results, s: Settings) -> None:
    replicas = stack_instances()[INSTANCE].get("replicas")
    if replicas != 3:
        raise AssertionError(f"the stack files' {INSTANCE} has replicas {replicas}; this section needs a group of 3")
    r1, _ = render_pair()
    with PodRunner() as runner:
        log("group: starting the sessions group (3 pods)")
        pods = start_group(runner, r1)
        raw: dict[str, Any] = {"throughput": throughput(results, runner, r1, pods, s)}
        kills = failover(results, runner, r1, pods, s)
        raw["kills"] = [k.__dict__ for k in kills]
    results.raw["group"] = raw


__all__ = ["Settings", "measure"]
