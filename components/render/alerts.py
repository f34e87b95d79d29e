"""Prometheus recording rules and alerts for Valkey, as the ``spec.groups`` of a PrometheusRule.

Pure functions, no Pulumi: ``rule_groups(thresholds, runbook_base, topology)`` returns plain dicts
that are both a PrometheusRule's ``spec.groups`` and, under a top-level ``groups:`` key, a
Prometheus rule file (which is how ``promtool`` tests them). The rules about nodes are here; the
rules about groups (members missing, Sentinel quorum, failovers, region 2's head) are in
``render.group_alerts``, the shared PromQL vocabulary in ``render.promql``.

What the rules assume of the scrape (the ServiceMonitor of ``components.specs.monitoring`` and the static
targets of the end-to-end test do exactly this). Every series of a Valkey pod's exporter carries:

- ``job="valkey"``: every selector below is restricted to it, so other Redis exporters in the cluster
  are never joined with ours or alerted on;
- ``region``: static, the stack's region;
- ``instance``: the Valkey instance name (``sessions``), from the pod label
  ``app.kubernetes.io/instance``. It replaces Prometheus' default ``host:port``; with the
  operator's ``pod`` label, (region, instance, pod) identifies a target (a group has several pods);
- ``dr``: ``"true"`` on instances replicated across regions, from a pod label. The only way a rule
  can tell a DR primary, which must have a replica, from a local one, which never has;
- ``eviction_policy``: the *configured* ``maxmemory-policy``, from a pod label. The exporter's
  ``redis_instance_info{maxmemory_policy}`` is the *running* policy: a server running
  ``noeviction`` cannot evict, so evictions on a ``noeviction`` instance mean the running policy
  drifted from the configured one. Both are checked.

``role`` (``primary``/``replica``) is not a scrape label: it changes at promotion, so it is joined
from the exporter's ``redis_instance_info{role}`` (``master``/``slave``, mapped to this project's
words) at evaluation time.

**Alerts are per pod.** Every node alert keeps the ``pod`` label: aggregated ``by (region,
instance)``, a group's one replica with its link down was hidden by its peer whose link is up
(``max``), and two members down made one alert. A single pod fires under exactly the conditions,
with the same ``for``, severity and annotations as before groups existed; its alert also names
its one ``pod`` (a label added, none changed: silences and routes on region and instance match).
``ValkeyNoReplicaConnected`` counts only replicas from outside the group (a connected replica
whose name is not a member's, ``group_alerts.member_hosts``): a group's primary always has its
members as replicas, which hid a lost region-2 copy; a single pod has no members, so for it
every replica counts, as before.

Recorded series (labels ``region``, ``instance``, ``role``; one series per role, for dashboards):

- ``valkey_connected_replicas``, ``valkey_used_memory`` (bytes), ``valkey_commands_processed_total``;
- ``valkey_replication_lag``: bytes, one series per connected replica (extra label ``replica`` =
  its ``ip:port`` as the primary sees it): the primary's ``master_repl_offset`` minus the offset
  the replica last acknowledged. Only a primary knows both, so only the Prometheus that scrapes
  the primary (region 1's) has it;
- replica-side local signals, what region 2's Prometheus can know on its own:
  ``valkey_replica_link_up`` (1/0) and ``valkey_replica_last_io_seconds`` (seconds since the last
  byte from the primary; absent while the link is down). The primary pings its replicas every
  10 s (``repl-ping-replica-period``), so an idle link reads up to 10 here.

A global view with bytes of lag for both regions: federate (``/federate`` with
``match[]={__name__=~"valkey_.*"}``) or remote-write both regions' recorded series into one
Prometheus/Thanos/Mimir. ``valkey_replication_lag`` from region 1 then is the lag of region 2's
replicas; for a lag computed across regions from the raw offsets, also federate
``redis_master_repl_offset`` and ``redis_slave_repl_offset`` and compute
``redis_master_repl_offset{region="region1"} - on (instance) group_right redis_slave_repl_offset{region="region2"}``.

Exporter versions: every input series used here has the same name and labels in Debian's
prometheus-redis-exporter 1.45 (run against Valkey 8.1.8) and in the exporter's current source
(read; the pinned image is v1.92.1), so no ``or`` alternatives are needed. What differs is
``redis_instance_info``'s other labels (later versions add ``master_replid``, ``valkey_version``),
which ``max by`` drops. ``role`` is mapped from ``master``/``slave`` and from ``primary``/``replica``
in case a later Valkey or exporter renames them. Sentinels are scraped by a second exporter (job
``valkey-sentinel``, ``render.exporter.sentinel_args``): its series feed the group rules only.
"""

from __future__ import annotations

from typing import Any

from ..config.models import AlertThresholds
from . import group_alerts, memory_alerts
from .group_alerts import GROUP_ALERTS, GROUP_RECORDS, Topology, member_hosts
from .pod_scripts import FENCE_HOST
from .promql import (
    JOB,
    PER_POD,
    PRIMARY_ROLES,
    WHERE,
    alert,
    duration,
    m,
    per_pod_with_role,
    runbook_anchor,
    size,
    with_role,
)

__all__ = ["ALERTS", "JOB", "RECORDS", "Topology", "duration", "rule_groups", "runbook_anchor"]

NODE_ALERTS = (
    "ValkeyDown",
    "ValkeyReplicaLinkDown",
    "ValkeyReplicationLagBytes",
    "ValkeyReplicationLagSeconds",
    "ValkeyNoReplicaConnected",
    "ValkeyMemoryNearMaxmemory",
    "ValkeyEvictionsOnNoEvictionInstance",
    "ValkeyNodeFenced",
)
NODE_RECORDS = (
    "valkey_connected_replicas",
    "valkey_replication_lag",
    "valkey_used_memory",
    "valkey_commands_processed_total",
    "valkey_replica_link_up",
    "valkey_replica_last_io_seconds",
)
ALERTS = NODE_ALERTS + GROUP_ALERTS + memory_alerts.MEMORY_ALERTS
RECORDS = NODE_RECORDS + GROUP_RECORDS + memory_alerts.MEMORY_RECORDS


def recording_rules() -> list[dict[str, Any]]:
    lag = (
        f"clamp_min({m('redis_master_repl_offset')} - on ({PER_POD}) group_right () "
        f"{m('redis_connected_slave_offset_bytes')}, 0)"
    )
    return [
        {"record": "valkey_connected_replicas", "expr": with_role(m("redis_connected_slaves"))},
        {
            "record": "valkey_replication_lag",
            "expr": with_role(
                f'label_join({lag}, "replica", ":", "slave_ip", "slave_port")', by="region, instance, role, replica"
            ),
        },
        {"record": "valkey_used_memory", "expr": with_role(m("redis_memory_used_bytes"))},
        {"record": "valkey_commands_processed_total", "expr": with_role(m("redis_commands_processed_total"))},
        {"record": "valkey_replica_link_up", "expr": with_role(m("redis_master_link_up"))},
        # The exporter reports -1 while the link is down: no value rather than a misleading one.
        {
            "record": "valkey_replica_last_io_seconds",
            "expr": with_role(f"({m('redis_master_last_io_seconds_ago')} >= 0)"),
        },
    ]


def _dr_primary_without_copy(hosts: str | None) -> str:
    """A DR primary pod with no replica from outside its group connected (a single pod: none at all),
    labelled ``role="primary"`` as ``valkey_connected_replicas`` was."""
    up = m("redis_up", dr="true")
    primary = m("redis_instance_info", role=f"~{PRIMARY_ROLES}")
    copies = m("redis_connected_slave_offset_bytes", **({"slave_ip": f"!~{hosts}"} if hosts else {}))
    lonely = f"max by ({PER_POD}) ({up} == 1) and on ({PER_POD}) {primary} unless on ({PER_POD}) {copies}"
    return f'label_replace({lonely}, "role", "primary", "", "")'


def alerting_rules(thresholds: AlertThresholds, runbook_base: str, hosts: str | None = None) -> list[dict[str, Any]]:
    window = duration(thresholds.eviction_window)
    lag_seconds = int(thresholds.replication_lag_seconds.total_seconds())
    by_pod = f"max by ({PER_POD})"
    last_io = f"({m('redis_master_last_io_seconds_ago')} >= 0)"
    return [
        alert(
            "ValkeyDown",
            # redis_up: the exporter answers but Valkey does not; up: the exporter (the pod) is gone.
            f"{by_pod} ({m('redis_up')} == 0) or {by_pod} ({m('up')} == 0)",
            for_=thresholds.down_for,
            severity="critical",
            summary=f"{WHERE} is down",
            description=f"Valkey or its exporter has not answered for {duration(thresholds.down_for)}.",
            runbook_base=runbook_base,
        ),
        alert(
            "ValkeyReplicaLinkDown",
            f"{per_pod_with_role(m('redis_master_link_up'))} == 0",
            for_=thresholds.link_down_for,
            severity="critical",
            summary=f"{WHERE} lost its link to the primary",
            description=f"The replica has not been connected to its primary for {duration(thresholds.link_down_for)}: "
            "the DR copy is not being updated.",
            runbook_base=runbook_base,
        ),
        alert(
            "ValkeyReplicationLagBytes",
            f"valkey_replication_lag > {int(thresholds.replication_lag_bytes)}",
            for_=thresholds.replication_lag_for,
            severity="warning",
            summary=f"Replica {{{{ $labels.replica }}}} of {WHERE} is behind",
            description=f"The primary has written more than {size(int(thresholds.replication_lag_bytes))} that the "
            f"replica has not acknowledged, for {duration(thresholds.replication_lag_for)}.",
            runbook_base=runbook_base,
        ),
        alert(
            "ValkeyReplicationLagSeconds",
            f"({per_pod_with_role(m('redis_connected_slave_lag_seconds'))} > {lag_seconds})"
            f" or ({per_pod_with_role(last_io)} > {lag_seconds})",
            for_=thresholds.replication_lag_for,
            severity="warning",
            summary=f"Replication of {WHERE} is stalled",
            description=f"More than {lag_seconds} s without an acknowledgement from the replica "
            f"(primary's view) or without data from the primary (replica's view), for "
            f"{duration(thresholds.replication_lag_for)}.",
            runbook_base=runbook_base,
        ),
        alert(
            "ValkeyNoReplicaConnected",
            _dr_primary_without_copy(hosts),
            for_=thresholds.no_replica_for,
            severity="critical",
            summary=f"DR primary {WHERE} has no replica",
            description=f"No replica has been connected for {duration(thresholds.no_replica_for)}: the instance has no "
            "copy in the other region.",
            runbook_base=runbook_base,
        ),
        alert(
            "ValkeyMemoryNearMaxmemory",
            # maxmemory 0 (no limit) is filtered out before dividing.
            f"{by_pod} ({m('redis_memory_used_bytes')}) / on ({PER_POD}) "
            f"{by_pod} ({m('redis_memory_max_bytes')} > 0) > {thresholds.memory_ratio}",
            for_=thresholds.memory_for,
            severity="warning",
            summary=f"{WHERE} is nearly full",
            description=f"used_memory has been above {thresholds.memory_ratio:.0%} of maxmemory for "
            f"{duration(thresholds.memory_for)}.",
            runbook_base=runbook_base,
        ),
        alert(
            "ValkeyEvictionsOnNoEvictionInstance",
            f"{by_pod} (increase({m('redis_evicted_keys_total', eviction_policy='noeviction')}"
            f"[{window}]) > 0) or {by_pod} ((increase({m('redis_evicted_keys_total')}[{window}])"
            f" > 0) and on ({PER_POD}) {m('redis_instance_info', maxmemory_policy='noeviction')})",
            for_=0,
            severity="warning",
            summary=f"{WHERE} evicted keys although its policy is noeviction",
            description=f"Keys were evicted in the last {window}: the running maxmemory-policy is not the "
            "configured noeviction (CONFIG SET at run time?), and keys the policy promises to keep are dropped.",
            runbook_base=runbook_base,
        ),
        alert(
            "ValkeyNodeFenced",
            # A fenced node replicates from FENCE_HOST, which its exporter reports as master_host.
            f"{by_pod} ({m('redis_slave_info', master_host=FENCE_HOST)}) == 1",
            for_=0,
            severity="critical",
            summary=f"{WHERE} is fenced: it started without all the data it held",
            description="The pod started on a volume without data after the instance had held data (a lost or "
            "replaced volume), or on an AOF a machine crash cut inside its last command (its log says which). It "
            "serves nothing and feeds no replica, so the other copies keep theirs, until it holds the data again: "
            "bring it back as the runbook says.",
            runbook_base=runbook_base,
        ),
    ]


def rule_groups(
    thresholds: AlertThresholds, runbook_base: str, topology: Topology | None = None
) -> list[dict[str, Any]]:
    """``spec.groups`` of the PrometheusRule; ``runbook_base`` is docs/alerts.md's URL, without ``#``;
    ``topology`` the stack's groups (none: the rules of single pods only)."""
    topology = topology or Topology(region="")
    base = runbook_base.rstrip("#")
    return [
        {
            "name": "valkey.recording",
            "rules": recording_rules()
            + group_alerts.recording_rules(topology)
            + memory_alerts.recording_rules(topology.region, topology.memory),
        },
        {
            "name": "valkey.alerts",
            "rules": alerting_rules(thresholds, base, member_hosts(topology))
            + group_alerts.alerting_rules(topology, thresholds, base)
            + memory_alerts.alerting_rules(topology.region, topology.namespace, topology.memory, base),
        },
    ]
