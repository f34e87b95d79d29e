"""Recording rules and alerts about a stack's groups (``replicas`` 3, 5 or 7): who is missing, whether
the Sentinels can still fail over, whether a failover happened, and in a group that follows the
other region whether its head still replicates from there.

Pure functions, no Pulumi; ``render.alerts.rule_groups`` puts them beside the node rules.

What the rules know from the stack (``Topology``, built by ``specs.monitoring`` from the config),
because no series can say it when the pods are gone: each group's configured size, whether it
leads (its Sentinels fail over; region 1, and local groups everywhere) or follows the other
region (a head, members replicating from it, no Sentinel), and the DNS domain its members'
names end in. ``valkey_group_members_configured`` carries the first two as a constant series per
group, so the alerts are plain joins and a single pod (not a group) is in none of them.

Decisions, each with the reason:

- **A healthy member** is a pod whose Valkey answers its exporter (``redis_up 1``) and, in a leading
  group, whose Sentinel does not report down (``redis_up`` or ``up`` 0 of job ``valkey-sentinel``).
  Counted against the configured size, a pod that has vanished (Pending, deleted, its node gone)
  is missing too, which ``ValkeyDown`` cannot see (it has no series left). Replication links are
  not part of it: ``ValkeyReplicaLinkDown`` is per pod, and a region-2 head whose upstream is lost
  would otherwise count as missing in every region-2 group during a region-1 outage.
- **No Sentinel quorum**: no Sentinel of a leading group answers ``SENTINEL CKQUORUM`` with OK
  (enough reachable Sentinels for the quorum *and* for a majority to authorise a failover), or
  none could be scraped. One Sentinel cut off from its peers reports NOQUORUM while the others
  still have one: that is not a group without quorum, so one OK is enough to stay quiet.
- **A failover happened**: a member that is the primary now was a replica within
  ``failoverWindow`` (the nodes' ``redis_instance_info{role}``, per pod). Node metrics rather than
  Sentinel's: the exporter 1.45 has no config-epoch metric, a restarted Sentinel relearns its
  epoch from zero (a false failover), and a promotion in region 2 (no Sentinel) shows alike. It
  fires for planned handovers too (a rollout, a drain: ``prestop.sh``): it says the primary moved,
  not that something broke. A group's first primary (a new group, pod 0) never was a replica.
- **Region 2's head down**: in a following group, no member replicates from a host outside the
  group with its link up, and no member is a primary (a person promoted one: then there is
  nothing to follow). The head is whichever member the keeper made it, ordinal 0 or another:
  the one whose ``master_host`` is not a member's name (``<pod>.<domain>``), as the label updater
  decides it too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..config.models import AlertThresholds
from .memory_alerts import MemoryShape
from .promql import (
    PER_POD,
    PRIMARY_ROLES,
    REPLICA_ROLES,
    SENTINEL_JOB,
    WHERE,
    alert,
    duration,
    m,
)

LEADER, FOLLOWER = "leader", "follower"
"""The ``mode`` label of ``valkey_group_members_configured``: the words of the pods' GROUP_MODE."""


@dataclass(frozen=True)
class GroupShape:
    """One group as the stack configures it."""

    members: int
    """``instances.<name>.replicas``."""
    domain: str
    """``<headless>.<namespace>.svc.<cluster domain>``: every member is ``<pod>.<domain>``."""
    follows: bool
    """It follows the other region: a head and its members, no Sentinel."""


@dataclass(frozen=True)
class Topology:
    """The stack's instances as the rules see them: the groups, and every instance's memory model."""

    region: str
    groups: dict[str, GroupShape] = field(default_factory=dict)
    """Instance name -> its group; single pods are not here."""
    namespace: str = ""
    """Where the pods run (the memory rules select cAdvisor's series by it)."""
    memory: dict[str, MemoryShape] = field(default_factory=dict)
    """Instance name -> its memory model, every instance; none: no memory rules."""


GROUP_ALERTS = (
    "ValkeyGroupMembersMissing",
    "ValkeySentinelNoQuorum",
    "ValkeyFailoverHappened",
    "ValkeyRegion2HeadDown",
)
GROUP_RECORDS = (
    "valkey_group_members_configured",
    "valkey_group_members_healthy",
    "valkey_group_head_link_up",
)


def member_hosts(topology: Topology) -> str | None:
    """An RE2 regex of every group member's DNS name in this stack, or None without groups. A
    replica's ``master_host`` and a primary's ``slave_ip`` are these names inside a group
    (``replica-announce-ip``); anything else is the other region."""
    domains = sorted({shape.domain for shape in topology.groups.values()})
    if not domains:
        return None
    # DNS names hold only [a-z0-9.-]: a dot is the only character to escape.
    return "[^.]+[.](" + "|".join(d.replace(".", "[.]") for d in domains) + ")"


def recording_rules(topology: Topology) -> list[dict[str, Any]]:
    if not topology.groups:
        return []
    configured = [
        {
            "record": "valkey_group_members_configured",
            "expr": f"vector({shape.members})",
            "labels": {"region": topology.region, "instance": name, "mode": FOLLOWER if shape.follows else LEADER},
        }
        for name, shape in sorted(topology.groups.items())
    ]
    groups = "max by (region, instance) (valkey_group_members_configured)"
    sentinel_down = f"({m('redis_up', SENTINEL_JOB)} == 0 or {m('up', SENTINEL_JOB)} == 0)"
    healthy = f"(({m('redis_up')} == 1) unless on ({PER_POD}) {sentinel_down})"
    hosts = member_hosts(topology)
    return [
        *configured,
        {
            "record": "valkey_group_members_healthy",
            # Zero, not absent, when every member is gone.
            "expr": f"(count by (region, instance) ({healthy}) and on (region, instance) {groups}) or (0 * {groups})",
        },
        {
            "record": "valkey_group_head_link_up",
            "expr": f"max by ({PER_POD}) ({m('redis_master_link_up', master_host=f'!~{hosts}')})"
            f' and on (region, instance) valkey_group_members_configured{{mode="{FOLLOWER}"}}',
        },
    ]


def alerting_rules(topology: Topology, thresholds: AlertThresholds, runbook_base: str) -> list[dict[str, Any]]:
    if not topology.groups:
        return []
    leaders = f'max by (region, instance) (valkey_group_members_configured{{mode="{LEADER}"}})'
    followers = f'max by (region, instance) (valkey_group_members_configured{{mode="{FOLLOWER}"}})'
    window = duration(thresholds.failover_window)
    primary_now = f"max by ({PER_POD}) ({m('redis_instance_info', role=f'~{PRIMARY_ROLES}')})"
    replica_lately = (
        f"max by ({PER_POD}) (max_over_time({m('redis_instance_info', role=f'~{REPLICA_ROLES}')}[{window}]))"
    )
    return [
        alert(
            "ValkeyGroupMembersMissing",
            "valkey_group_members_healthy < on (region, instance) "
            "max by (region, instance) (valkey_group_members_configured)",
            for_=thresholds.members_missing_for,
            severity="warning",
            summary=f"{WHERE} has fewer healthy members than configured",
            description=f"Fewer members than configured have answered (Valkey, and its Sentinel where it has one) "
            f"for {duration(thresholds.members_missing_for)}: the group survives fewer losses.",
            runbook_base=runbook_base,
        ),
        alert(
            "ValkeySentinelNoQuorum",
            f"{leaders} unless on (region, instance) ({m('redis_sentinel_master_ckquorum_status', SENTINEL_JOB)} == 1)",
            for_=thresholds.no_quorum_for,
            severity="critical",
            summary=f"The Sentinels of {WHERE} cannot fail over",
            description=f"No Sentinel of the group has reported a quorum (SENTINEL CKQUORUM) for "
            f"{duration(thresholds.no_quorum_for)}: if the primary is lost now, nobody replaces it.",
            runbook_base=runbook_base,
        ),
        alert(
            "ValkeyFailoverHappened",
            f"({primary_now} and on ({PER_POD}) {replica_lately}) and on (region, instance) "
            "valkey_group_members_configured",
            for_=0,
            severity="warning",
            summary="{{ $labels.pod }} became the primary of " + WHERE,
            description=f"This member was a replica within the last {window} and is the primary now: a failover "
            "or a planned handover happened.",
            runbook_base=runbook_base,
        ),
        alert(
            "ValkeyRegion2HeadDown",
            f"{followers} unless on (region, instance) (valkey_group_head_link_up == 1)"
            f" unless on (region, instance) {m('redis_instance_info', role=f'~{PRIMARY_ROLES}')}",
            for_=thresholds.head_down_for,
            severity="critical",
            summary=f"No member of {WHERE} replicates from its upstream",
            description="No member has had an up link to the group's upstream (the primary region, or a migration "
            f"source) for {duration(thresholds.head_down_for)}: the group's copy is not being updated.",
            runbook_base=runbook_base,
        ),
    ]
