"""Drills of an upgrade from Valkey 8.1 to 9.1 and of its rollback, on the rendered groups of both
regions (instances.sessions: a group of 3 in each), started by the pod runner on real Valkey 8.1.8
and 9.1.2. Each runs once: a mixed group is both versions at once.

The order is docs/runbooks.md's "Upgrading Valkey 8.1 to 9.1": region 2 first (its nodes are
replicas, a newer replica of an older primary is the direction every Valkey supports), then region
1, each region as its StatefulSet's RollingUpdate does it (highest ordinal first), so region 1's
primary, pod 0, goes last and hands over with its preStop hook. The upgrade drill moves to the next
pod as soon as the last one is in place (region 2: every link up; region 1: every Sentinel knows
the group), sooner than production's minReadySeconds: a harsher rollout. Applications write
through the ``host`` endpoint all along.

Two revisions are rendered per region, differing only by ``image``; a pod restarted with the other
revision's manifests is what the StatefulSet controller does with a new template.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping
from functools import partial
from typing import Any

import harness
import needs
from drills_support import Report, absent_keys, admin, app, caught_up, seed_every_type, typed_snapshot
from group_support import (
    EXTERNAL1,
    IMAGES,
    CrossRegionLink,
    ReconnectingWriter,
    group_config,
    host_client,
    logged,
    longest_pause,
    primary_pod,
    refused_ahead,
    region2_of,
    settled,
    start_group,
)
from podrunner import PodRunner
from podrunner.pod import Pod
from replies import info, sync
from valkey_process import wait_for

from components.config.models import Failover

pytestmark = needs.root

PING_BYTES = len(b"*1\r\n$4\r\nPING\r\n")
"""A replication PING in the stream: what a paused primary still adds to its replicas' history."""

OLD, NEW = "8.1", "9.1"
NAMESPACE = "databases"
DATASET = "rich"
"""Prefix of the dataset of every data type (drills_support.seed_every_type)."""
HANDOVER_BOUND_SECONDS = Failover().down_after.total_seconds()
"""Sentinel's down-after as the stack files leave it: a write pause this long means the primary
stopped without handing over (the Sentinels then first wait this long to call it down)."""
RDB_OF_8_1 = 11
"""The newest RDB version Valkey 8.1 loads with its default ``rdb-version-check strict``; its own."""


def release(image: str) -> str:
    """``X.Y.Z`` of a valkey/valkey image tag: what its server reports as valkey_version."""
    match = re.search(r":(\d+\.\d+\.\d+)", image)
    assert match, image
    return match.group(1)


def leaves(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(path, value) of every leaf of a manifest."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from leaves(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from leaves(item, f"{path}[{i}]")
    else:
        yield path, value


def differences(a: harness.Rendered, b: harness.Rendered) -> set[str]:
    """Paths (``<kind>/<namespace>/<name><path>``) at which two renders' objects differ."""

    def flat(r: harness.Rendered) -> dict[str, Any]:
        return {
            f"{m['kind']}/{m['metadata'].get('namespace')}/{m['metadata']['name']}{p}": v
            for m in r.manifests()
            for p, v in leaves(m)
        }

    la, lb = flat(a), flat(b)
    return {p for p in la.keys() | lb.keys() if la.get(p) != lb.get(p)}


def node_version(rendered: harness.Rendered, pod: Pod) -> str:
    with admin(rendered, "sessions", pod.address) as c:
        return str(info(c, "server")["valkey_version"])


def started_versions(log: str) -> list[str]:
    """The version each start of a server or Sentinel logged, in order."""
    return re.findall(r"Valkey version=(\d+\.\d+\.\d+)", log)


def sentinel_version(pod: Pod) -> str:
    """The version the pod's running Sentinel logged at its start (its users may not ask INFO)."""
    return started_versions(pod.logs("sentinel"))[-1]


SYNC_LINE = re.compile(
    r"Valkey version=(?P<version>\d+\.\d+\.\d+)"
    r"|onnecting to PRIMARY (?P<source>\S+):\d+"
    r"|(?P<full>Full resync from primary)"
    r"|(?P<partial>Successful partial resynchronization)"
)


def sync_events(pod: Pod) -> list[tuple[int, str, str, str]]:
    """Every resynchronization a node's log shows, in order: (the server's start it belongs to, 0
    first; that server's version; the primary it connected to; ``full`` or ``partial``)."""
    events: list[tuple[int, str, str, str]] = []
    start, version, source = -1, "", ""
    for match in SYNC_LINE.finditer(pod.logs("valkey")):
        if match["version"]:
            start, version, source = start + 1, match["version"], ""
        elif match["source"]:
            source = match["source"]
        else:
            events.append((start, version, source, "full" if match["full"] else "partial"))
    return events


def aof_base_rdb_version(runner: PodRunner, region: str, pod: Pod) -> int:
    """The RDB version in the header of the pod's AOF base file (``REDIS0011``, ``VALKEY080``)."""
    directory = runner.claim_path(region, NAMESPACE, f"data-{pod.name}") / "appendonlydir"
    (base,) = directory.glob("*.base.rdb")
    header = base.read_bytes()[:9]
    match = re.match(rb"(REDIS|VALKEY)(\d+)", header)
    assert match, header
    return int(match.group(2))


def min_ready(rendered: harness.Rendered) -> float:
    """The StatefulSet's minReadySeconds: the controller's pause after each updated pod is Ready."""
    return float(rendered.statefulset("sessions")["spec"].get("minReadySeconds", 0))


def region2_in_place(r2: harness.Rendered, pods: list[Pod]) -> Pod | None:
    """Region 2 as its keepers keep it: its head (whichever member was elected) replicates from
    region 1's external endpoint, the members from the head, every link up. Returns the head."""
    replication = {}
    for pod in pods:
        with admin(r2, "sessions", pod.address) as c:
            replication[pod.name] = info(c, "replication")
    if any(r.get("master_link_status") != "up" for r in replication.values()):
        return None
    heads = [p for p in pods if replication[p.name].get("master_host") == EXTERNAL1]
    if len(heads) != 1 or any(
        replication[p.name].get("master_host") != heads[0].fqdn for p in pods if p is not heads[0]
    ):
        return None
    return heads[0]


def same_dataset(primary: tuple[harness.Rendered, Pod], replica: tuple[harness.Rendered, Pod]) -> bool:
    """The replica holds exactly the primary's keys of the dataset of every type. Each node as its
    own region's application logs in (the regions' passwords differ)."""
    (r1, p1), (r2, p2) = primary, replica
    with app(r1, "sessions", p1.address) as p, app(r2, "sessions", p2.address) as r:
        return typed_snapshot(p, f"{DATASET}:*") == typed_snapshot(r, f"{DATASET}:*")


def full_syncs_after_the_first(pod: Pod) -> list[tuple[int, str, str, str]]:
    """Full syncs of a node that were not the first sync of its server's start: those a partial
    one could have replaced."""
    events = sync_events(pod)
    return [e for i, e in enumerate(events) if e[3] == "full" and any(prev[0] == e[0] for prev in events[:i])]


def test_upgrade_8_1_to_9_1_region2_first_then_region1_pod_by_pod_keeps_replicating(
    runner: PodRunner, report: Report
) -> None:
    old, new = release(IMAGES[OLD]), release(IMAGES[NEW])
    r1_old, r1_new = (harness.render("region1", group_config(IMAGES[v])) for v in (OLD, NEW))
    r2_old, r2_new = (region2_of(r1_old, IMAGES[v]) for v in (OLD, NEW))
    # The two revisions differ by their containers' images only: the config Secret (valkey.conf,
    # sentinel.conf, the scripts) is one for both, so a pod of either revision, restarted at any
    # point of the rollout, reads the same files.
    for a, b in ((r1_old, r1_new), (r2_old, r2_new)):
        changed = differences(a, b)
        assert changed and all(re.search(r"^StatefulSet/.*\.containers\[\d+\]\.image$", p) for p in changed), changed

    began = time.monotonic()
    region1 = start_group(runner, r1_old)
    primary = primary_pod(region1)
    assert primary is not None and primary.name == "sessions-0"
    link = CrossRegionLink(runner, primary)
    region2 = runner.start_statefulset(r2_old, "sessions", region="region2")
    logged(region2, lambda: wait_for(lambda: region2_in_place(r2_old, region2), 60, "region 2 follows region 1"))
    with host_client(runner, r1_old) as c:
        seeded = seed_every_type(c, DATASET)
    writer = ReconnectingWriter(lambda: host_client(runner, r1_old), "upgrade")
    writer.start()
    region2_before = {p.name: len(sync_events(p)) for p in region2}
    try:
        wait_for(lambda: len(writer.acked) > 1000, 20, "writes flowing")
        phases = {"started_s": time.monotonic() - began}

        # 1. Region 2, pod by pod: 9.1 replicas of region 1's 8.1 primary.
        for pod in sorted(region2, key=lambda p: p.ordinal, reverse=True):
            pod.restart(objects=r2_new)
            logged(region2, lambda: wait_for(lambda: region2_in_place(r2_new, region2), 60, "region 2 in place"))
            assert node_version(r2_new, pod) == new
        phases["region2_rolled_s"] = time.monotonic() - began
        region2_rollout = {p.name: sync_events(p)[region2_before[p.name] :] for p in region2}
        region2_mid = {p.name: len(sync_events(p)) for p in region2}
        # An 8.1 primary's full syncs to 9.1 replicas, across regions and within region 2, carried
        # every type of data whole.
        for replica in region2:
            holds = partial(same_dataset, (r1_old, primary), (r2_new, replica))
            wait_for(holds, 20, f"{replica.name} holds the dataset")

        # 2. Region 1, pod by pod, the primary last.
        mixed: list[dict[str, tuple[str, str]]] = []
        for pod in sorted(region1, key=lambda p: p.ordinal, reverse=True):
            pod.restart(objects=r1_new)
            logged(region1, lambda: wait_for(lambda: all(settled(r1_new, p) for p in region1), 30, "group settled"))
            mixed.append({p.name: (node_version(r1_new, p), sentinel_version(p)) for p in region1})
        wait_for(lambda: primary_pod(region1) is not None, 20, "one pod labelled primary")
        logged(region2, lambda: wait_for(lambda: region2_in_place(r2_new, region2), 30, "region 2 in place"))
        time.sleep(2)
    finally:
        writer.stop()
    phases["region1_rolled_s"] = time.monotonic() - began
    region1_rollout = {p.name: sync_events(p)[region2_mid[p.name] :] for p in region2}
    final = primary_pod(region1)
    assert final is not None and final.name != "sessions-0"
    hook = region1[0].prestop_results["valkey"]

    # Region 2 ends with region 1's dataset: every acknowledged write, every key of every type.
    with admin(r1_new, "sessions", final.address) as p:
        for pod in region2:
            with admin(r2_new, "sessions", pod.address) as r:
                wait_for(lambda: caught_up(p, r), 30, f"region 2's {pod.name} caught up")
    with app(r1_new, "sessions", final.address) as c:
        lost = absent_keys(c, writer.keys())
        keys = sync(c.dbsize())
    region2_missing = {}
    for pod in region2:
        with app(r2_new, "sessions", pod.address) as c:
            region2_missing[pod.name] = len(absent_keys(c, writer.keys()))
            assert sync(c.dbsize()) == keys, pod.name
        assert same_dataset((r1_new, final), (r2_new, pod)), pod.name
    cross_region_full = {
        phase: [(name, e) for name, events in syncs.items() for e in events if e[2] == EXTERNAL1 and e[3] == "full"]
        for phase, syncs in (("region2", region2_rollout), ("region1", region1_rollout))
    }
    phases["checked_s"] = time.monotonic() - began
    report.add(
        "upgrade-8.1-to-9.1",
        **phases,
        keys_acked=len(writer.keys()),
        keys_lost=len(lost),
        dataset_keys=seeded,
        longest_write_pause_s=longest_pause(writer),
        handover_hook_s=hook.duration,
        region2_keys_missing=sum(region2_missing.values()),
        region2_syncs_during_region2_rollout={k: [e[1:] for e in v] for k, v in region2_rollout.items()},
        region2_syncs_during_region1_rollout={k: [e[1:] for e in v] for k, v in region1_rollout.items()},
        region1_nodes_and_sentinels_after_each_step=mixed,
        aof_base_rdb_version={
            **{f"region1/{p.name}": aof_base_rdb_version(runner, "region1", p) for p in region1},
            **{f"region2/{p.name}": aof_base_rdb_version(runner, "region2", p) for p in region2},
        },
    )
    link.stop()
    assert lost == [], writer.errors[:5]
    assert set(region2_missing.values()) == {0}
    # The primary handed over to a 9.1 replica while every write waited (its hook, on 8.1).
    assert hook.completed and f"handed the primary over to {final.fqdn}" in hook.output, hook.output
    # Writes waited only while the primary handed over (about 2 s; the five other restarts: none).
    assert longest_pause(writer) < HANDOVER_BOUND_SECONDS

    # Mixed groups, step by step: after pod 2, a 9.1 Sentinel and node among 8.1 ones; after pod 1,
    # 8.1 ones among 9.1 ones; each time every Sentinel knew both others and two healthy replicas.
    assert [sorted(step.values()).count((new, new)) for step in mixed] == [1, 2, 3], mixed
    assert [sorted(step.values()).count((old, old)) for step in mixed] == [2, 1, 0], mixed
    # While it handed over, region 1's 8.1 pod 0 replicated from the new 9.1 primary, partially;
    # unless the replication PING the paused old primary still sends (every 10 s) was in pod 0's
    # history but had not reached the new primary before its promotion. Then pod 0 was that PING
    # ahead, the new primary refused to continue it (logged) and copied it anew: no write was in
    # between, writes were paused (seen once in CI).
    pod0 = [e for e in sync_events(region1[0]) if e[1] == old]
    ahead = [asked - can for name, asked, can in refused_ahead(final) if name.startswith(f"{region1[0].fqdn}:")]
    assert pod0[-1][2:] == (final.fqdn, "full" if ahead else "partial"), (pod0, ahead)
    assert all(gap <= PING_BYTES for gap in ahead), ahead

    # Across regions, no full copy at all: region 2's restarted head (pod 0, last) copied from the
    # member elected in its place, which resumed from region 1 partially (a restarted node cannot
    # resume from its AOF; a member that kept running can). Region 1's rollout copied nothing across.
    head = region2_in_place(r2_new, region2)
    assert head is not None and head.name != "sessions-0"
    assert cross_region_full == {"region2": [], "region1": []}
    assert any(e[2] == EXTERNAL1 and e[3] == "partial" for e in region2_rollout[head.name])
    assert any(e[2] == EXTERNAL1 and e[3] == "partial" for e in region1_rollout[head.name])
    # Within region 2, beyond each restarted node's first copy: at most one more from the head per
    # member. Region 1's rollout made no full sync anywhere in region 2.
    members = [p for p in region2 if p is not head]
    assert full_syncs_after_the_first(head) == []
    for member in members:
        assert [e[2] for e in full_syncs_after_the_first(member)] in ([], [head.fqdn]), sync_events(member)
    assert [e for events in region1_rollout.values() for e in events if e[3] == "full"] == []

    # Every pod ends on 9.1.
    assert {node_version(r1_new, p) for p in region1} | {node_version(r2_new, p) for p in region2} == {new}
    assert {sentinel_version(p) for p in region1} == {new}


def replaced(runner: PodRunner, pods: list[Pod], pod: Pod, rendered: harness.Rendered) -> Pod:
    """``kubectl delete pvc data-<pod>`` then ``kubectl delete pod <pod>``: the pod stops as any
    deleted pod does (its preStop hook first), its volume goes with it, and the StatefulSet
    controller creates it again, from ``rendered``'s template, on a new empty volume."""
    pod.delete()
    new = runner.start_pod(rendered, "sessions", pod.ordinal, region="region1", wait_ready=None)
    pods[pods.index(pod)] = new
    return new


def test_rolling_back_9_1_to_8_1_needs_emptied_volumes_and_no_9_1_only_data(runner: PodRunner, report: Report) -> None:
    old, new = release(IMAGES[OLD]), release(IMAGES[NEW])
    r1_old, r1_new = (harness.render("region1", group_config(IMAGES[v])) for v in (OLD, NEW))
    began = time.monotonic()
    pods = start_group(runner, r1_new)
    first = primary_pod(pods)
    assert first is not None and first.name == "sessions-0"
    with host_client(runner, r1_new) as c:
        seed_every_type(c, DATASET)
    writer = ReconnectingWriter(lambda: host_client(runner, r1_new), "rollback")
    writer.start()
    try:
        wait_for(lambda: len(writer.acked) > 1000, 20, "writes flowing")
        started_s = time.monotonic() - began

        # 1. The old revision's rollout restarts pod 2 on the volume 9.1 wrote: 8.1 cannot read its
        # AOF, exits, and stays not Ready, so the rollout stops there.
        third = pods[2]
        written = aof_base_rdb_version(runner, "region1", third)
        third.restart(objects=r1_old, wait_ready=None)
        refusal = f"Can't handle RDB format version {written}"
        wait_for(lambda: refusal in third.logs("valkey").rsplit(f"Valkey version={old}", 1)[-1], 30, "8.1 refuses")
        crashed_ready = third.ready
        acked_while_crashed = len(writer.acked)

        # 2. Its volume emptied: 8.1 copies everything from the 9.1 primary (which sends it RDB 11,
        # the version the replica announced), every type of data whole.
        third = replaced(runner, pods, third, r1_old)
        third.wait_ready(30)
        time.sleep(min_ready(r1_old))
        logged(pods, lambda: wait_for(lambda: all(settled(r1_old, p) for p in pods), 30, "group settled"))
        # An 8.1 Sentinel among 9.1 ones, monitoring a 9.1 primary: all three see the same group.
        mixed = {p.name: (node_version(r1_old, p), sentinel_version(p)) for p in pods}
        copied = same_dataset((r1_new, first), (r1_old, third))

        # 3. A 9.1-only command while an 8.1 node replicates: the 8.1 replica cannot apply it, says
        # so in its log only, and stays connected, one key short.
        with host_client(runner, r1_new) as c:
            c.execute_command("HSETEX", "field-ttl", "EX", 3600, "FIELDS", 1, "f", "v")
            marker = f"after-field-ttl-{time.monotonic_ns()}"
            c.set(marker, 1)
        with app(r1_old, "sessions", third.address) as c:
            wait_for(lambda: sync(c.exists(marker)) == 1, 10, "the 8.1 replica applied the next write")
            diverged = (sync(c.exists("field-ttl")), "unknown command 'hsetex'" in third.logs("valkey").lower())
        with admin(r1_old, "sessions", third.address) as c:
            diverged_link = info(c, "replication")["master_link_status"]

        # 4. With a hash with field expiry on the primary, a new 8.1 replica cannot copy it at all:
        # RDB 11 has no encoding for it. Pod 1's volume emptied shows what it does meanwhile.
        second = replaced(runner, pods, pods[1], r1_old)
        second.wait_running("valkey")
        time.sleep(5)
        with admin(r1_old, "sessions", second.address) as c:
            blocked = (info(c, "replication")["master_link_status"], sync(c.dbsize()), second.ready)
        # Once nothing 8.1 cannot store is left, its next attempt copies everything.
        with host_client(runner, r1_new) as c:
            c.delete("field-ttl")
        with admin(r1_old, "sessions", second.address) as c:
            wait_for(lambda: info(c, "replication")["master_link_status"] == "up", 30, "pod 1 copied")
        time.sleep(min_ready(r1_old))
        logged(pods, lambda: wait_for(lambda: all(settled(r1_old, p) for p in pods), 30, "group settled"))

        # 5. The primary last: its deletion hands over to an 8.1 replica; back on an empty volume,
        # it copies from that one.
        zeroth = replaced(runner, pods, pods[0], r1_old)
        hook = first.prestop_results["valkey"]
        zeroth.wait_ready(30)
        time.sleep(min_ready(r1_old))
        logged(pods, lambda: wait_for(lambda: all(settled(r1_old, p) for p in pods), 30, "group settled"))
        wait_for(lambda: primary_pod(pods) is not None, 20, "one pod labelled primary")
        time.sleep(2)
    finally:
        writer.stop()
    final = primary_pod(pods)
    assert final is not None
    with app(r1_old, "sessions", final.address) as c:
        lost = absent_keys(c, writer.keys())
    report.add(
        "rollback-9.1-to-8.1",
        started_s=started_s,
        total_s=time.monotonic() - began,
        aof_base_rdb_version_written_by_9_1=written,
        ready_while_8_1_refused_the_volume=crashed_ready,
        sentinels_and_nodes_mixed=mixed,
        hsetex_key_on_8_1_replica=diverged[0],
        replica_link_after_hsetex=diverged_link,
        new_8_1_replica_beside_field_ttl_link_dbsize_ready=list(blocked),
        keys_acked=len(writer.keys()),
        keys_lost=len(lost),
        longest_write_pause_s=longest_pause(writer),
        handover_hook_s=hook.duration,
    )
    assert written > RDB_OF_8_1
    assert not crashed_ready and len(writer.acked) > acked_while_crashed  # the others kept serving
    assert copied
    assert sorted(mixed.values()) == sorted([(new, new), (new, new), (old, old)]), mixed
    assert diverged == (0, True) and diverged_link == "up"
    assert blocked[:2] == ("down", 0)
    assert hook.completed and f"handed the primary over to {final.fqdn}" in hook.output, hook.output
    assert lost == [], writer.errors[:5]
    assert longest_pause(writer) < HANDOVER_BOUND_SECONDS
    assert {node_version(r1_old, p) for p in pods} == {sentinel_version(p) for p in pods} == {old}
