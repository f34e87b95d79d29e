"""promtool cases for groups: region 1's stack (groups that lead, with Sentinels) and region 2's
(groups that follow region 1, and one local group), each with the rules its stack renders.

Every pod is one exporter target with the operator's ``pod`` label, the Sentinels' exporters a
second target per pod (job ``valkey-sentinel``). A pod that has vanished has no series at all.
``stale`` ends a series the way a Prometheus staleness marker does when a role label changes.
"""

from __future__ import annotations

from rule_cases import Cases, Target, lbl

from components.config.models import AlertThresholds
from components.render.alerts import Topology
from components.render.group_alerts import GroupShape

N = "x40"
"""A value for all 40 minutes of a case."""


def domain(instance: str) -> str:
    return f"{instance}-headless.databases.svc.cluster.local"


def member_host(instance: str, n: int) -> str:
    return f"{instance}-{n}.{domain(instance)}"


def topology(region: str, groups: dict[str, bool]) -> Topology:
    """``groups``: instance -> follows; every group has 3 members."""
    return Topology(region, {name: GroupShape(3, domain(name), follows) for name, follows in groups.items()})


def pod(region: str, instance: str, n: int, dr: str = "true") -> Target:
    t = Target(region, instance, dr)
    t.extra = {"pod": f"{instance}-{n}"}
    return t


def answers(t: Target, role: str, values: str = f"1{N}") -> Target:
    t.add("up", f"1{N}").add("redis_up", f"1{N}")
    t.add("redis_instance_info", values, role=role, maxmemory_policy="allkeys-lru", redis_version="7.2.4")
    return t.add("redis_memory_used_bytes", f"1000{N}").add("redis_memory_max_bytes", f"2000{N}")


def leads(t: Target, replicas: list[str]) -> Target:
    """A primary with these replicas (their announced names) connected."""
    answers(t, "master").add("redis_connected_slaves", f"{len(replicas)}{N}")
    t.add("redis_master_repl_offset", f"5000{N}")
    for host in replicas:
        slave = {"slave_ip": host, "slave_port": "6379", "slave_state": "online"}
        t.add("redis_connected_slave_offset_bytes", f"5000{N}", **slave)
        t.add("redis_connected_slave_lag_seconds", f"0{N}", **slave)
    return t


def follows(t: Target, master_host: str, link: str = f"1{N}") -> Target:
    answers(t, "slave").add("redis_connected_slaves", f"0{N}")
    t.add("redis_master_link_up", link, master_host=master_host, master_port="6379")
    return t.add("redis_master_last_io_seconds_ago", f"1{N}", master_host=master_host, master_port="6379")


def sentinel(region: str, instance: str, n: int, quorum: str = f"1{N}") -> Target:
    """A Sentinel's exporter: CKQUORUM's answer as redis_exporter reports it."""
    t = Target(region, instance, None, None, job="valkey-sentinel")
    t.extra = {"pod": f"{instance}-{n}"}
    t.add("up", f"1{N}").add("redis_up", f"1{N}")
    return t.add("redis_sentinel_master_ckquorum_status", quorum, master_name=instance, message="OK 3 usable Sentinels")


def region2_head(instance: str) -> str:
    """What region 2's head announces to region 1 (start.sh: ``<pod>.<region>.invalid``)."""
    return f"{instance}-0.region2.invalid"


def group_of_three(region: str, instance: str) -> list[Target]:
    """A healthy leading group: pod 0 the primary with both members and region 2's head connected."""
    members = [member_host(instance, n) for n in (1, 2)]
    targets = [leads(pod(region, instance, 0), [*members, region2_head(instance)])]
    targets += [follows(pod(region, instance, n), member_host(instance, 0)) for n in (1, 2)]
    return targets + [sentinel(region, instance, n) for n in range(3)]


def region1_groups() -> Cases:
    c = Cases(
        AlertThresholds(),
        topology("region1", {g: False for g in ("sessions", "carts", "orders", "flags", "ledger", "lonely")}),
    )
    sessions = group_of_three("region1", "sessions")
    # carts-2: its exporter answers, its Valkey does not.
    carts = group_of_three("region1", "carts")
    carts[2] = Target("region1", "carts", extra={"pod": "carts-2"}).add("up", f"1{N}").add("redis_up", f"0{N}")
    # orders-1 lost its link to the primary; orders-2's is up (max by instance hid orders-1).
    orders = group_of_three("region1", "orders")
    orders[1] = follows(pod("region1", "orders", 1), member_host("orders", 0), link=f"0{N}")
    # flags-1 and flags-2 vanished (no series); flags-0's Sentinel alone cannot reach the quorum.
    flags = [leads(pod("region1", "flags", 0, "false"), []), sentinel("region1", "flags", 0, quorum=f"0{N}")]
    # ledger-0 was the primary until 10m; then ledger-1 is, and ledger-0 its replica.
    ledger = [
        leads(pod("region1", "ledger", 0), [member_host("ledger", 1), region2_head("ledger")]),
        follows(pod("region1", "ledger", 1), member_host("ledger", 0)),
        follows(pod("region1", "ledger", 2), member_host("ledger", 0)),
        *(sentinel("region1", "ledger", n) for n in range(3)),
    ]
    for target, before, after in ((ledger[0], "master", "slave"), (ledger[1], "slave", "master")):
        target.series = [s for s in target.series if s[0] != "redis_instance_info"]
        info = {"maxmemory_policy": "allkeys-lru", "redis_version": "7.2.4"}
        target.add("redis_instance_info", "1x9 stale", role=before, **info)
        target.add("redis_instance_info", "_x10 1x30", role=after, **info)
    # A DR group whose primary has only its members: region 2's copy is gone.
    lonely = group_of_three("region1", "lonely")
    lonely[0] = leads(pod("region1", "lonely", 0), [member_host("lonely", n) for n in (1, 2)])
    cache = Target("region1", "api-cache", "false", extra={"pod": "api-cache-0"})  # a single pod
    cache.add("up", f"1{N}").add("redis_up", f"0{N}")
    test = c.group("region 1's groups", [*sessions, *carts, *orders, *flags, *ledger, *lonely, cache])

    at = "15m"
    c.record(test, at, "valkey_group_members_configured", [
        (lbl("region1", g, mode="leader"), 3) for g in ("carts", "flags", "ledger", "lonely", "orders", "sessions")
    ])  # fmt: skip
    c.record(test, at, 'valkey_group_members_configured{instance="api-cache"}', [])
    c.record(test, at, "valkey_group_members_healthy", [
        (lbl("region1", "sessions"), 3), (lbl("region1", "carts"), 2), (lbl("region1", "orders"), 3),
        (lbl("region1", "flags"), 1), (lbl("region1", "ledger"), 3), (lbl("region1", "lonely"), 3),
    ])  # fmt: skip
    c.record(test, at, 'valkey_group_members_healthy{instance="api-cache"}', [])
    c.record(test, at, "valkey_group_head_link_up", [])  # nothing follows region 1
    c.alert(
        test, at, "ValkeyDown", [lbl("region1", "carts", pod="carts-2"), lbl("region1", "api-cache", pod="api-cache-0")]
    )
    c.alert(test, at, "ValkeyReplicaLinkDown", [lbl("region1", "orders", "replica", pod="orders-1")])
    c.alert(test, at, "ValkeyGroupMembersMissing", [lbl("region1", "carts"), lbl("region1", "flags")])
    c.alert(test, "4m", "ValkeyGroupMembersMissing", [])  # for: 5m
    c.alert(test, at, "ValkeySentinelNoQuorum", [lbl("region1", "flags")])
    c.alert(test, "1m", "ValkeySentinelNoQuorum", [])  # for: 2m
    c.alert(test, at, "ValkeyNoReplicaConnected", [lbl("region1", "lonely", "primary", pod="lonely-0")])
    c.alert(test, "5m", "ValkeyFailoverHappened", [])  # every group's first primary never was a replica
    c.alert(test, "12m", "ValkeyFailoverHappened", [lbl("region1", "ledger", pod="ledger-1")])
    c.alert(test, "25m", "ValkeyFailoverHappened", [])  # ledger-1's last sample as a replica is 16 m old
    c.alert(test, at, "ValkeyRegion2HeadDown", [])
    return c


def region2_groups() -> Cases:
    groups = {"sessions": True, "carts": True, "orders": True, "promoted": True, "rate": False}
    c = Cases(AlertThresholds(), topology("region2", groups))

    def upstream(instance: str) -> str:
        return f"{instance}.region1.example.com"

    # The head is pod 0, replicating from region 1; the others follow it.
    sessions = [follows(pod("region2", "sessions", 0), upstream("sessions"))]
    sessions += [follows(pod("region2", "sessions", n), member_host("sessions", 0)) for n in (1, 2)]
    # carts-0 is gone: the keeper made carts-1 the head, carts-2 follows it.
    carts = [follows(pod("region2", "carts", 1), upstream("carts"))]
    carts.append(follows(pod("region2", "carts", 2), member_host("carts", 1)))
    # orders-0 is the head, but region 1 is out of its reach; its members still follow it.
    orders = [follows(pod("region2", "orders", 0), upstream("orders"), link=f"0{N}")]
    orders += [follows(pod("region2", "orders", n), member_host("orders", 0)) for n in (1, 2)]
    # A person promoted promoted-0: nothing is to follow any more.
    promoted = [leads(pod("region2", "promoted", 0), [member_host("promoted", n) for n in (1, 2)])]
    promoted += [follows(pod("region2", "promoted", n), member_host("promoted", 0)) for n in (1, 2)]
    rate = group_of_three("region2", "rate")  # local (dr: false): it leads, with Sentinels
    rate[0] = leads(pod("region2", "rate", 0, "false"), [member_host("rate", n) for n in (1, 2)])
    test = c.group("region 2's groups", [*sessions, *carts, *orders, *promoted, *rate])

    at = "15m"
    modes = {"carts": "follower", "orders": "follower", "promoted": "follower", "sessions": "follower"}
    c.record(test, at, "valkey_group_members_configured", [
        (lbl("region2", g, mode=mode), 3) for g, mode in {**modes, "rate": "leader"}.items()
    ])  # fmt: skip
    c.record(test, at, "valkey_group_head_link_up", [
        (lbl("region2", "sessions", pod="sessions-0"), 1), (lbl("region2", "carts", pod="carts-1"), 1),
        (lbl("region2", "orders", pod="orders-0"), 0),
    ])  # fmt: skip
    c.record(test, at, 'valkey_group_members_healthy{instance="carts"}', [(lbl("region2", "carts"), 2)])
    c.alert(test, at, "ValkeyRegion2HeadDown", [lbl("region2", "orders")])
    c.alert(test, "1m", "ValkeyRegion2HeadDown", [])  # for: 2m
    c.alert(test, at, "ValkeyReplicaLinkDown", [lbl("region2", "orders", "replica", pod="orders-0")])
    c.alert(test, at, "ValkeyGroupMembersMissing", [lbl("region2", "carts")])
    # Following groups have no Sentinel: only the local group's are asked, and they have a quorum.
    c.alert(test, at, "ValkeySentinelNoQuorum", [])
    # promoted-0 was never a replica here within the window: the alert is for members that were.
    c.alert(test, at, "ValkeyFailoverHappened", [])
    # A promoted region 2 has no copy in another region: a DR primary without a replica.
    c.alert(test, at, "ValkeyNoReplicaConnected", [lbl("region2", "promoted", "primary", pod="promoted-0")])
    return c
