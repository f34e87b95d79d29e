"""Drills of a Sentinel group (instances.sessions.replicas: 3) on real processes: the pods the program
renders, started by the pod runner as a StatefulSet of three pods with per-pod DNS names, a
Kubernetes API the label updaters patch their pods through, and Services that follow the pods'
current labels and readiness. Once per Valkey version (8.1.8 and 9.1.2).

Applications write through the ``host`` endpoint, the client Service, exactly as they would: its
name resolves to the pod labelled ``valkey.io/node-role=primary`` (a ClusterIP emulated by DNS;
connections are not cut when an endpoint leaves, as with kube-proxy).

Rendering differs from the stack files only by ``harness.NO_TLS`` and the group size.
"""

from __future__ import annotations

import functools
import time
from typing import Any

import harness
import needs
import pytest
import valkey
from drills_support import Report, admin, app, dump, holds_for, link_up, missing_keys, node, replication_password
from group_support import (
    EXTERNAL1,
    EXTERNAL2,
    IMAGES,
    LABEL_STALL_SECONDS,
    REGION1_STACK,
    REGION2_STACK,
    WRITE_RATE,
    ReconnectingWriter,
    another_primary,
    attached,
    follows,
    group_config,
    host_client,
    logged,
    longest_pause,
    master_name,
    node_role,
    primary_pod,
    region2_ahead,
    region2_of,
    replicated,
    resyncs,
    sentinel,
    settled,
    start_group,
    start_region2_head,
)
from podrunner import PodRunner
from podrunner.pod import Pod
from replies import info
from valkey_process import wait_for

from components.config.models import Failover
from components.render.pod_scripts import KEEPER_CONFIRMATIONS, KEEPER_INTERVAL_SECONDS
from components.specs.labels import NODE_ROLE_LABEL
from ops.switchover import switchover

pytestmark = needs.root

GROUP_MAX_REPLICA_LAG_SECONDS = Failover().max_replica_lag.total_seconds()
"""failover.maxReplicaLag as the stack files leave it (min-replicas-max-lag)."""


def replicaof_requests(pod: Pod) -> list[str]:
    """Log lines of a node told to replicate from elsewhere by a client (a Sentinel, a keeper, a
    person); Valkey redacts who it was. A node's start-up configuration is not one of them."""
    return [line for line in pod.logs("valkey").splitlines() if "REPLICAOF" in line and "user request" in line]


def unreachable_from_region1(rendered: harness.Rendered, pods: list[Pod]) -> bool:
    """Every region 1 Sentinel lists region 2's nodes only by the names they announce, under
    .invalid, and as disconnected: they can neither resolve nor reach them."""
    for pod in pods:
        with sentinel(rendered, pod) as s:
            listed = s.execute_command("SENTINEL", "REPLICAS", master_name(rendered))
            replicas = [dict(zip(r[::2], r[1::2], strict=True)) for r in listed]
        foreign = [r for r in replicas if ".sessions-headless." not in str(r["name"])]
        if not foreign or not all(
            str(r["name"]).endswith(".region2.invalid:6379") and "disconnected" in str(r["flags"]) for r in foreign
        ):
            return False
    return True


@pytest.mark.parametrize("version", sorted(IMAGES))
def test_group_drill1_kill9_of_the_primary_fails_over_through_the_host_endpoint(
    runner: PodRunner, version: str, report: Report
) -> None:
    rendered = harness.render("region1", group_config(IMAGES[version]))
    r2 = region2_of(rendered, IMAGES[version])
    pods = start_group(runner, rendered)
    old = primary_pod(pods)
    assert old is not None and old.name == "sessions-0"
    wait_for(lambda: all(node_role(rendered, p) == "slave" for p in pods if p is not old), 30, "two replicas")
    dr, link = start_region2_head(runner, r2, old)
    assert resyncs(dr) == (1, 0)
    with sentinel(rendered, old) as s:
        # The application user reads where the primary is, and may change nothing.
        name = master_name(rendered)
        assert s.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", name)[0] == old.fqdn
        for command in (("FAILOVER", name), ("SET", name, "quorum", "1"), ("RESET", "*")):
            with pytest.raises(valkey.exceptions.NoPermissionError):
                s.execute_command("SENTINEL", *command)
    writer = ReconnectingWriter(lambda: host_client(runner, rendered), f"kill-{version}")
    writer.start()
    try:
        wait_for(lambda: len(writer.acked) > 1000, 20, "writes flowing")
        killed_at = time.monotonic()
        old.kill_container("valkey")
        new = logged(pods, lambda: wait_for(lambda: another_primary(pods, old), 30, "a new primary labelled"))
        assert new is not None
        wait_for(lambda: writer.acked and writer.acked[-1][1] > killed_at + 0.5, 30, "writes succeed again")
        time.sleep(2)
    finally:
        writer.stop()
    recovered_s = next(t for _, t in writer.acked if t > killed_at + 0.2) - killed_at
    wait_for(lambda: node_role(rendered, old) == "slave", 60, "the killed pod back as a replica")
    replica_again_s = time.monotonic() - killed_at
    attached(r2, dr, 30, "region 2 re-attached")
    with app(rendered, "sessions", new.address) as c:
        lost = missing_keys(c, writer.keys())
    with app(r2, "sessions", dr.address) as c:
        wait_for(lambda: not missing_keys(c, writer.keys()[-100:]), 20, "region 2 has the last writes")
        lost_in_region2 = missing_keys(c, writer.keys())
    # Region 1's Sentinels saw region 2's replica in their new primary's INFO: they could not log in
    # (region 2's nodes do not know their password) and never reconfigured it.
    (third,) = [p for p in pods if p not in (old, new)]
    assert replicaof_requests(third), "the detector sees the Sentinels re-point region 1's other replica"
    assert replicaof_requests(dr) == []
    assert follows(r2, dr) == "sessions.region1.example.com"
    # They find it in their primary's INFO (every 10 s), under a name that resolves nowhere.
    wait_for(lambda: unreachable_from_region1(rendered, pods), 60, "region 1's Sentinels cannot reach region 2")
    assert replicaof_requests(dr) == [] and follows(r2, dr) == "sessions.region1.example.com"
    report.add(
        f"group-1-kill9-{version}",
        keys_acked=len(writer.keys()),
        keys_lost=len(lost),
        writes_back_after_s=recovered_s,
        longest_write_outage_s=writer.longest_outage(),
        killed_pod_replica_again_after_s=replica_again_s,
        new_primary=new.name,
        region2_resyncs_full_partial=list(resyncs(dr)),
        region2_ahead_of_the_new_primary_by=[asked - can for _, asked, can in region2_ahead(new)],
        region2_keys_missing=len(lost_in_region2),
    )
    # The target is under 10 s (about 6.3 s measured); 20 s bounds a failover whose first election
    # round failed (seen once in about a dozen runs: 16 s), which must still end without a person.
    link.stop()
    assert recovered_s < 20, writer.errors[:5]
    assert len(lost) <= WRITE_RATE * 1.0
    # Region 2 followed the external endpoint to the new primary without copying everything again,
    # unless it had been ahead of the promoted member: then the new primary refused to continue its
    # history and copied it anew (seen once on 9.1; in that run no acknowledged write was missing
    # anywhere: what region 2 was ahead by had not been acknowledged yet).
    ahead = region2_ahead(new)
    assert resyncs(dr) == ((1, 1) if not ahead else (2, 0)), ahead
    assert lost_in_region2 == lost


def start_both_groups(
    runner: PodRunner, version: str
) -> tuple[harness.Rendered, harness.Rendered, list[Pod], list[Pod]]:
    """Region 1's group and region 2's whole following group, settled: region 2's head (pod 0)
    follows region 1's external endpoint, the members follow the head, and the labels say so."""
    r1 = harness.render("region1", group_config(IMAGES[version]))
    r2 = harness.render("region2", group_config(IMAGES[version]), references={REGION1_STACK: r1})
    region1_pods = start_group(runner, r1)
    members = runner.start_statefulset(r2, "sessions", region="region2")
    head, second, third = members
    wait_for(lambda: follows(r2, head) == EXTERNAL1, 20, "region 2's head follows region 1")
    wait_for(lambda: {follows(r2, p) for p in (second, third)} == {head.fqdn}, 30, "members follow the head")
    # The head is what region 2's host reaches; each label follows its node's ROLE within a second.
    logged(
        members,
        lambda: wait_for(
            lambda: (head.labels.get(NODE_ROLE_LABEL), second.labels.get(NODE_ROLE_LABEL)) == ("primary", "replica"),
            LABEL_STALL_SECONDS,
            "region 2's head labelled primary, a member replica",
        ),
    )
    return r1, r2, region1_pods, members


def full_syncs_served(rendered: harness.Rendered, pods: list[Pod]) -> int:
    """Full copies of the dataset these pods have sent to replicas (INFO stats sync_full), together."""
    total = 0
    for pod in pods:
        with admin(rendered, "sessions", pod.address) as c:
            total += int(info(c, "stats")["sync_full"])
    return total


@pytest.mark.parametrize("version", sorted(IMAGES))
def test_group_drill3_region2s_head_restarts_then_its_node_dies_and_region2_keeps_replicating(
    runner: PodRunner, version: str, report: Report
) -> None:
    """Region 2's head, twice on one start of both groups: (3b) its Valkey crashes and restarts,
    and the one full copy that needs comes from inside region 2; (3) then the new head's node is
    lost, and a member takes over with a partial resync from region 1."""
    r1, r2, region1_pods, members = start_both_groups(runner, version)
    head = members[0]
    writer = ReconnectingWriter(lambda: host_client(runner, r1), f"head-{version}", rate=1000.0)
    writer.start()
    try:
        wait_for(lambda: len(writer.acked) > 200, 20, "writes flowing")
        # 3b. Only the head's Valkey crashes (an OOM kill): the kubelet starts it again within a
        # second, with nothing it can resume replication from. The member with the most data
        # becomes the head; the restarted pod follows it.
        # The head's own counters start again at its restart: count what the others served.
        others = [p for p in members if p is not head]
        across_before = full_syncs_served(r1, region1_pods)
        in_region_before = full_syncs_served(r2, others)
        killed_at = time.monotonic()
        head.kill_container("valkey")
        restart_head = follow_each_other(r2, members, EXTERNAL1, 60)
        assert restart_head is not head
        restart_took_over_s = time.monotonic() - killed_at
        with admin(r2, "sessions", head.address) as c:
            wait_for(lambda: link_up(c), 30, "the restarted pod copied the dataset")
        mark = f"after-head-restart-{version}"
        with host_client(runner, r1) as c:
            c.set(mark, "1")
        wait_for(lambda: all(replicated(r2, p, mark) for p in members), 10, "every member replicating")
        logged(
            members,
            lambda: wait_for(
                lambda: (
                    [p.labels.get(NODE_ROLE_LABEL) for p in members]
                    == ["primary" if p is restart_head else "replica" for p in members]
                ),
                LABEL_STALL_SECONDS,
                "region 2's new head labelled primary",
            ),
        )
        with app(r2, "sessions", head.address) as c:
            wait_for(lambda: not missing_keys(c, writer.keys()[-50:]), 20, "the restarted pod has the last writes")
            missing_on_restarted = missing_keys(c, writer.keys())
        across = full_syncs_served(r1, region1_pods) - across_before
        in_region = full_syncs_served(r2, others) - in_region_before

        # 3. The new head's node is lost: every container of the pod dies and nothing restarts it.
        # The member with the most data takes its place (either one: that depends on the moment).
        survivors = [p for p in members if p is not restart_head]
        before = {p.name: resyncs(p) for p in survivors}
        killed_at = time.monotonic()
        restart_head.kill9()
        new_head = follow_each_other(r2, survivors, EXTERNAL1, 30)
        took_over_s = time.monotonic() - killed_at
        # Region 2 still serves reads and keeps replicating while its head is away.
        mark = f"while-head-down-{version}"
        with host_client(runner, r1) as c:
            c.set(mark, "1")
        wait_for(lambda: all(replicated(r2, p, mark) for p in survivors), 10, "members still replicating")
        took_over = resyncs(new_head)
    finally:
        writer.stop()
    before_new_head = before[new_head.name]
    with app(r2, "sessions", new_head.address) as c:
        wait_for(lambda: not missing_keys(c, writer.keys()[-50:]), 20, "region 2 has the last writes")
        missing = missing_keys(c, writer.keys())
    # Region 1's Sentinels know region 2's members only by names that resolve nowhere.
    wait_for(lambda: unreachable_from_region1(r1, region1_pods), 60, "region 1's Sentinels cannot reach region 2")
    report.add(
        f"group-3b-region2-head-restart-{version}",
        new_head=restart_head.name,
        new_head_follows_region1_after_s=restart_took_over_s,
        full_copies_across_regions=across,
        full_copies_inside_region2=in_region,
        keys_missing_on_restarted_pod=len(missing_on_restarted),
    )
    report.add(
        f"group-3-region2-head-{version}",
        member_follows_region1_after_s=took_over_s,
        new_head=new_head.name,
        member_resyncs_full_partial_before=list(before_new_head),
        member_resyncs_full_partial_after_takeover=list(took_over),
        keys_missing_in_region2=len(missing),
    )
    # 3b: the one full copy the restart needs came from inside region 2; region 1 sent none.
    assert (across, in_region) == (0, 1)
    assert missing_on_restarted == []
    # 3: the member that took over resumed from region 1 with a partial resync, not a full copy.
    assert took_over[0] == before_new_head[0] and took_over[1] > before_new_head[1]
    assert missing == []


@pytest.mark.parametrize("version", sorted(IMAGES))
def test_group_drill2_a_rolling_restart_hands_over_and_copies_nothing_across_regions_again(
    runner: PodRunner, version: str, report: Report
) -> None:
    rendered = harness.render("region1", group_config(IMAGES[version]))
    r2 = region2_of(rendered, IMAGES[version])
    pods = start_group(runner, rendered)
    first = primary_pod(pods)
    assert first is not None
    dr, link = start_region2_head(runner, r2, first)
    writer = ReconnectingWriter(lambda: host_client(runner, rendered), f"roll-{version}")
    writer.start()
    try:
        wait_for(lambda: len(writer.acked) > 1000, 20, "writes flowing")
        # The StatefulSet controller's RollingUpdate: highest ordinal first, each pod deleted
        # (its preStop hook runs) and recreated. The next one as soon as every Sentinel has seen it
        # back as a healthy replica, which is what a handover needs: sooner than production's
        # minReadySeconds (GROUP_MIN_READY_SECONDS), so a harsher rollout.
        for pod in sorted(pods, key=lambda p: p.ordinal, reverse=True):
            pod.restart()
            logged(pods, lambda: wait_for(lambda: all(settled(rendered, p) for p in pods), 30, "the group settled"))
        wait_for(lambda: primary_pod(pods) is not None, 20, "one pod labelled primary")
        time.sleep(2)
    finally:
        writer.stop()
    new = primary_pod(pods)
    assert new is not None and new.name != "sessions-0"
    hooks = {p.name: p.prestop_results["valkey"] for p in pods}
    assert all(h.exit_code == 0 and h.completed for h in hooks.values()), hooks
    with app(rendered, "sessions", new.address) as c:
        lost = missing_keys(c, writer.keys())
    attached(r2, dr, 30, "region 2 attached")
    report.add(
        f"group-2-rolling-restart-{version}",
        keys_acked=len(writer.keys()),
        keys_lost=len(lost),
        longest_write_pause_s=longest_pause(writer),
        handover_hook_s=hooks["sessions-0"].duration,
        region2_resyncs_full_partial=list(resyncs(dr)),
    )
    link.stop()
    assert lost == []
    # Region 2 copied everything once, at its start; the handover only resumed it.
    assert resyncs(dr)[0] == 1


ISOLATED_WRITES = """
password="$(cat)"
end=$(($(date +%s) + {seconds}))
n=0
while [ "$(date +%s)" -lt "$end" ]; do
  reply="$(REDISCLI_AUTH="$password" valkey-cli --no-auth-warning -h 127.0.0.1 -p 6379 SET isolated:$n x 2>&1)"
  echo "$(date +%s.%N) $reply"
  n=$((n + 1))
  sleep 0.2
done
"""


@pytest.mark.parametrize("version", sorted(IMAGES))
def test_group_drill4_an_isolated_primary_stops_taking_writes_within_the_replica_lag_bound(
    runner: PodRunner, version: str, report: Report
) -> None:
    rendered = harness.render("region1", group_config(IMAGES[version]))
    pods = start_group(runner, rendered)
    old = primary_pod(pods)
    assert old is not None
    password = rendered.secret_data("sessions-credentials")["password"]
    isolated_at = time.time()
    old.isolate()
    try:
        # An application in the isolated pod's own network, writing over loopback every 0.2 s.
        done = old.exec(
            ["sh", "-c", ISOLATED_WRITES.format(seconds=20)], container="valkey", timeout=40, input=password
        )
    finally:
        old.rejoin()
    replies = [line.split(" ", 1) for line in done.stdout.splitlines() if " " in line]
    accepted = [float(t) - isolated_at for t, reply in replies if reply == "OK"]
    refused = [reply for _, reply in replies if reply.startswith("NOREPLICAS")]
    new = logged(pods, lambda: wait_for(lambda: another_primary(pods, old), 30, "a new primary labelled"))
    assert new is not None
    wait_for(lambda: node_role(rendered, old) == "slave", 60, "the isolated pod rejoined as a replica")
    with app(rendered, "sessions", new.address) as c:
        lost = missing_keys(c, [f"isolated:{n}" for n in range(len(accepted))])
    report.add(
        f"group-4-isolated-primary-{version}",
        writes_accepted_while_isolated=len(accepted),
        last_accepted_after_s=max(accepted, default=0.0),
        refused_with_noreplicas=len(refused),
        accepted_and_lost=len(lost),
        new_primary=new.name,
    )
    lag = GROUP_MAX_REPLICA_LAG_SECONDS
    # The bound: no replica acknowledged for maxReplicaLag (replicas acknowledge once a second).
    assert accepted and max(accepted) <= lag + 2, replies[:3]
    assert refused, "the isolated primary never refused a write"


def labelled_primary(pods: list[Pod]) -> Pod:
    """The pod the runbooks act on: the one labelled valkey.io/node-role=primary."""
    pod = wait_for(lambda: primary_pod(pods), LABEL_STALL_SECONDS, "one pod labelled primary")
    assert pod is not None
    return pod


def promote_node(rendered: harness.Rendered, pod: Pod) -> None:
    """The promotion runbook's step 1 (and failback's step 3): REPLICAOF NO ONE as admin."""
    with admin(rendered, "sessions", pod.address) as c:
        assert c.execute_command("REPLICAOF", "NO", "ONE") in (b"OK", "OK", True)


def roll_out(rendered: harness.Rendered, pods: list[Pod], *, sentinels: bool) -> None:
    """``pulumi up`` of a changed StatefulSet template: its RollingUpdate, highest ordinal first, each
    pod deleted (its preStop hook runs) and recreated. Before the next pod, the restarted one must be
    what a handover needs: with ``sentinels`` (the new revision leads), known as a healthy replica by
    every Sentinel of the pods restarted so far; else replicating with its link up. That takes 1 to
    10 s (a Sentinel's INFO period), shorter than the StatefulSet's minReadySeconds: a faster
    rollout than production's, so a harsher one."""
    # Pulumi updates the config Secret with the StatefulSet; the kubelet refreshes every running
    # pod's copy within about a minute (here at once): its reloader applies what is live (the ACL).
    for pod in pods:
        if pod.running:
            pod.update_volumes(rendered, rollout_pending=True)
    restarted: list[Pod] = []
    for pod in sorted(pods, key=lambda p: p.ordinal, reverse=True):
        pod.restart(objects=rendered)
        restarted.append(pod)
        logged(pods, functools.partial(ready_for_the_next, rendered, pod, restarted, sentinels))


def ready_for_the_next(rendered: harness.Rendered, pod: Pod, restarted: list[Pod], sentinels: bool) -> None:
    if sentinels:
        wait_for(
            lambda: all(knows_replica(rendered, s, p) for s in restarted for p in restarted),
            30,
            f"the Sentinels know {pod.name} as a healthy replica",
        )
    else:
        with admin(rendered, "sessions", pod.address) as c:
            wait_for(lambda: link_up(c), 60, f"{pod.name} replicating")


def knows_replica(rendered: harness.Rendered, sentinel_pod: Pod, pod: Pod) -> bool:
    """``sentinel_pod``'s Sentinel lists ``pod`` as a healthy replica (or monitors it as the primary)."""
    with sentinel(rendered, sentinel_pod) as s:
        master = s.execute_command("SENTINEL", "MASTER", master_name(rendered))
        replicas = s.execute_command("SENTINEL", "REPLICAS", master_name(rendered))
    fields = {str(k): str(v) for k, v in zip(master[::2], master[1::2], strict=True)}
    if fields["ip"] == pod.fqdn:
        return True
    flags = {str(r[r.index("name") + 1]): str(r[r.index("flags") + 1]) for r in replicas}
    return flags.get(f"{pod.fqdn}:6379") == "slave"


def follow_each_other(rendered: harness.Rendered, pods: list[Pod], upstream: str, timeout: float) -> Pod:
    """A following group settled: one head follows ``upstream`` with its link up, the others it."""

    def head() -> Pod | None:
        heads = [p for p in pods if follows(rendered, p) == upstream]
        if len(heads) != 1:
            return None
        if not all(follows(rendered, p) == heads[0].fqdn for p in pods if p is not heads[0]):
            return None
        with admin(rendered, "sessions", heads[0].address) as c:
            return heads[0] if link_up(c) else None

    found = logged(pods, lambda: wait_for(head, timeout, f"a group following {upstream}"))
    assert found is not None
    return found


def listed_replicas(rendered: harness.Rendered, pod: Pod) -> list[str]:
    """The names ``pod`` lists its replicas under (what each announced), sorted."""
    with admin(rendered, "sessions", pod.address) as c:
        replication = info(c, "replication")
    return sorted(str(v["ip"]) for k, v in replication.items() if k.startswith("slave") and isinstance(v, dict))


def offsets_equal(a: harness.Rendered, pa: Pod, b: harness.Rendered, pb: Pod) -> bool:
    with admin(a, "sessions", pa.address) as ca, admin(b, "sessions", pb.address) as cb:
        return bool(info(ca, "replication")["master_repl_offset"] == info(cb, "replication")["master_repl_offset"])


@pytest.mark.parametrize("version", sorted(IMAGES))
def test_group_drill6_promotion_promotes_region2s_group_and_failback_returns_it(
    runner: PodRunner, version: str, report: Report
) -> None:
    """docs/runbooks.md, "promote region 2" and "failback to region 1", on groups, step by step."""
    image = IMAGES[version]
    r1, r2, region1_pods, members = start_both_groups(runner, version)
    writer = ReconnectingWriter(lambda: host_client(runner, r1), f"before-{version}", rate=1000.0)
    writer.start()
    try:
        wait_for(lambda: len(writer.acked) > 300, 20, "writes flowing")
        for pod in region1_pods:  # region 1 is lost
            pod.kill9()
    finally:
        writer.stop()

    # Promotion, step 1: the head, writable at once; the members follow it.
    head = labelled_primary(members)
    promote_node(r2, head)
    # They did already; their keepers now see no head (nobody replicates from region 1) and must
    # keep them on the promoted one rather than elect a new head among themselves.
    keeper_reaction = KEEPER_INTERVAL_SECONDS * (KEEPER_CONFIRMATIONS + 1)
    holds_for(
        lambda: all(follows(r2, p) == head.fqdn for p in members if p is not head),
        keeper_reaction,
        "the members follow the promoted head",
        interval=0.5,
    )
    with app(r2, "sessions", head.address) as c:
        lost_at_promotion = missing_keys(c, writer.keys())

    # Step 2: pulumi up of region 2 as a primary stack, under writes through region 2's host.
    promoted = harness.render(
        "region2", {**group_config(image), "role": "primary", "primaryStack": None}, references={}
    )
    during = ReconnectingWriter(lambda: host_client(runner, promoted, "region2"), f"promoted-{version}", rate=1000.0)
    during.start()
    try:
        wait_for(lambda: len(during.acked) > 200, 20, "writes to region 2 flowing")
        roll_out(promoted, members, sentinels=True)
        # The group fails over on its own now: the promoted pod's own restart, last, was handed over
        # by the new Sentinels (prestop.sh: SENTINEL FAILOVER), and every Sentinel knows the group.
        logged(members, lambda: wait_for(lambda: all(settled(promoted, p) for p in members), 60, "Sentinels"))
        new = labelled_primary(members)
        with app(promoted, "sessions", new.address) as c:
            lost_in_rollout = missing_keys(c, during.keys())
    finally:
        during.stop()
    handover = head.prestop_results["valkey"]
    assert handover.completed and f"handed the primary over to {new.fqdn}" in handover.output, handover.output

    # Failback, step 1: region 1 comes back as a following group of region 2 (its own old data is
    # discarded by the full copy); step 2: it catches up.
    failback = harness.render(
        "region1",
        {**group_config(image), "role": "replica", "primaryStack": REGION2_STACK},
        references={REGION2_STACK: promoted},
    )
    for pod in sorted(region1_pods, key=lambda p: p.ordinal):
        pod.restart(objects=failback)
    region1_head = follow_each_other(failback, region1_pods, EXTERNAL2, 60)
    primary2 = labelled_primary(members)
    wait_for(lambda: offsets_equal(promoted, primary2, failback, region1_head), 30, "region 1 caught up")

    # Step 3: the planned switchover back (ops/switchover.py) under writes through region 2's host,
    # which the applications leave for region 1's once it is done; then both stacks re-rendered.
    target: dict[str, Any] = {"rendered": promoted, "region": "region2"}
    swap = ReconnectingWriter(
        lambda: host_client(runner, target["rendered"], target["region"]), f"swap-{version}", rate=WRITE_RATE
    )
    swap.start()
    lines: list[str] = []
    try:
        wait_for(lambda: len(swap.acked) > 2000, 20, "writes to region 2 flowing")
        others = [node(promoted, p) for p in members if p is not primary2]
        result = switchover(
            node(promoted, primary2),
            node(failback, region1_head),
            (EXTERNAL1, 6379),
            replication_password(failback),
            old_members=others,
            old_region="region2",
            log=lines.append,
        )
        target.update(rendered=failback, region="region1")
        swap_started = time.monotonic()
        roll_out(r1, region1_pods, sentinels=True)
        target.update(rendered=r1)
        logged(region1_pods, lambda: wait_for(lambda: all(settled(r1, p) for p in region1_pods), 60, "region 1"))
        # Region 1's primary lists its two members by their names, and region 2's old primary by
        # a name under .invalid: its pod name is also a pod of region 1's group, which region 1's
        # Sentinels would take it for (and once told to replicate itself).
        primary1 = labelled_primary(region1_pods)
        expected = sorted([*(p.fqdn for p in region1_pods if p is not primary1), f"{primary2.name}.region2.invalid"])
        wait_for(lambda: listed_replicas(r1, primary1) == expected, 30, f"{primary1.name} lists {expected}")
        roll_out(r2, members, sentinels=False)
        follow_each_other(r2, members, EXTERNAL1, 60)
        swapped_s = time.monotonic() - swap_started
        wait_for(lambda: swap.acked[-1][1] > time.monotonic() - 0.5, 10, "writes to region 1 flowing")
    finally:
        swap.stop()
    primary1 = labelled_primary(region1_pods)
    with app(r1, "sessions", primary1.address) as c1:
        lost_in_swap = missing_keys(c1, swap.keys())
        lost_before_swap = missing_keys(c1, during.keys())
    mark = f"after-swap-{version}"

    def write_mark() -> bool:
        with host_client(runner, r1) as c:
            return bool(c.set(mark, "1"))

    wait_for(write_mark, LABEL_STALL_SECONDS, "a write through region 1's host")
    wait_for(lambda: all(replicated(r2, p, mark) for p in members), 10, "region 2 replicates again")
    with app(r2, "sessions", labelled_primary(members).address) as c2, pytest.raises(valkey.ReadOnlyError):
        c2.set("x", "1")
    with admin(r1, "sessions", primary1.address) as a1, admin(r2, "sessions", labelled_primary(members).address) as a2:
        region1_data = dump(a1)
        region2_after = dump(a2)
    report.add(
        f"group-6-promotion-failback-{version}",
        acked_in_region1_lost_at_promotion=len(lost_at_promotion),
        acked_lost_in_promotion_rollout=len(lost_in_rollout),
        handed_over_by_sentinels_to=new.name,
        handover_s=handover.duration,
        longest_write_pause_in_rollout_s=longest_pause(during),
        switchover_write_pause_s=result.write_pause_s,
        switchover_keys_acked=len(swap.keys()),
        switchover_keys_lost=len(lost_in_swap),
        longest_write_outage_in_switchover_s=swap.longest_outage(),
        longest_write_pause_in_switchover_s=longest_pause(swap),
        rollouts_after_switchover_s=swapped_s,
        region1_primary_after=primary1.name,
    )
    # Region 1 died by kill -9 of its processes: their kernels still sent what was written.
    assert len(lost_at_promotion) <= 1000
    assert lost_in_rollout == []
    # No acknowledged write lost in the switchover and the rollouts after it, and both regions hold
    # the same data.
    assert lost_in_swap == [] and lost_before_swap == [], lines
    # Writes wait for the switchover (milliseconds) and for each primary's handover in the
    # rollouts (about 2 s). With the old primary announcing its pod name to the new region, whose
    # Sentinels then told their own pod of that name to replicate itself, they waited 29 s (8.1)
    # or the rollout never finished (9.1).
    assert longest_pause(swap) < 20, lines
    assert region2_after == region1_data
