"""Prometheus recording rules and alerts for Valkey, as the ``spec.groups`` of a PrometheusRule.

Pure functions, no Pulumi: ``rule_groups(thresholds, runbook_base)`` returns plain dicts that are
both a PrometheusRule's ``spec.groups`` and, under a top-level ``groups:`` key, a Prometheus rule
file (which is how ``promtool`` tests them).

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

Recorded series (labels ``region``, ``instance``, ``role``):

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
in case a later Valkey or exporter renames them.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from ..config.models import AlertThresholds

JOB = "valkey"

ALERTS = (
    "ValkeyDown",
    "ValkeyReplicaLinkDown",
    "ValkeyReplicationLagBytes",
    "ValkeyReplicationLagSeconds",
    "ValkeyNoReplicaConnected",
    "ValkeyMemoryNearMaxmemory",
    "ValkeyEvictionsOnNoEvictionInstance",
)
RECORDS = (
    "valkey_connected_replicas",
    "valkey_replication_lag",
    "valkey_used_memory",
    "valkey_commands_processed_total",
    "valkey_replica_link_up",
    "valkey_replica_last_io_seconds",
)


def duration(length: timedelta | int) -> str:
    """A Prometheus duration: ``2m`` rather than ``120s`` where it divides evenly."""
    seconds = int(length.total_seconds()) if isinstance(length, timedelta) else length
    return _duration(seconds)


def _duration(seconds: int) -> str:
    for unit, length in (("h", 3600), ("m", 60)):
        if seconds and seconds % length == 0:
            return f"{seconds // length}{unit}"
    return f"{seconds}s"


def size(n: int) -> str:
    """Bytes the way docs/alerts.md writes them: ``64MiB``."""
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= factor and n % factor == 0:
            return f"{n // factor}{unit}"
    return f"{n} bytes"


def runbook_anchor(alert: str) -> str:
    """An alert's runbook anchor in docs/alerts.md: the heading ``Alert: ValkeyDown`` becomes ``alert-valkeydown``."""
    return f"alert-{alert.lower()}"


def _m(metric: str, **matchers: str) -> str:
    """A selector of our exporters' series only."""
    inner = ", ".join(f'{k}="{v}"' for k, v in {"job": JOB, **matchers}.items())
    return f"{metric}{{{inner}}}"


# One series per pod (region, instance, and the ``pod`` label the Prometheus Operator adds) with
# the role in this project's words; `max by` drops the exporter's version, run_id, ... labels, and
# staleness drops the old role at promotion or failover. A group has several pods per (region,
# instance), one primary and replicas: joins are per pod, and the recorded series then aggregate
# the pods of one role (a single pod's series are the same as before groups existed).
ROLE = (
    "label_replace(label_replace("
    f"max by (region, instance, pod, role) ({_m('redis_instance_info')}), "
    '"role", "primary", "role", "master|primary"), '
    '"role", "replica", "role", "slave|replica")'
)


def _with_role(expr: str, by: str = "region, instance, role") -> str:
    return f"max by ({by}) ({expr} * on (region, instance, pod) group_left (role) {ROLE})"


def recording_rules() -> list[dict[str, Any]]:
    lag = (
        f"clamp_min({_m('redis_master_repl_offset')} - on (region, instance, pod) group_right () "
        f"{_m('redis_connected_slave_offset_bytes')}, 0)"
    )
    return [
        {"record": "valkey_connected_replicas", "expr": _with_role(_m("redis_connected_slaves"))},
        {
            "record": "valkey_replication_lag",
            "expr": _with_role(
                f'label_join({lag}, "replica", ":", "slave_ip", "slave_port")', by="region, instance, role, replica"
            ),
        },
        {"record": "valkey_used_memory", "expr": _with_role(_m("redis_memory_used_bytes"))},
        {"record": "valkey_commands_processed_total", "expr": _with_role(_m("redis_commands_processed_total"))},
        {"record": "valkey_replica_link_up", "expr": _with_role(_m("redis_master_link_up"))},
        # The exporter reports -1 while the link is down: no value rather than a misleading one.
        {
            "record": "valkey_replica_last_io_seconds",
            "expr": _with_role(f"({_m('redis_master_last_io_seconds_ago')} >= 0)"),
        },
    ]


def _alert(
    name: str, expr: str, *, for_: timedelta | int, severity: str, summary: str, description: str
) -> dict[str, Any]:
    return {
        "alert": name,
        "expr": expr,
        "for": duration(for_),
        "labels": {"severity": severity},
        "annotations": {"summary": summary, "description": description},
    }


def alerting_rules(thresholds: AlertThresholds, runbook_base: str) -> list[dict[str, Any]]:
    """Annotations template only ``$labels`` (never ``$value``), so a test can predict them exactly."""
    where = "Valkey {{ $labels.instance }} in {{ $labels.region }}"
    window = duration(thresholds.eviction_window)
    lag_seconds = int(thresholds.replication_lag_seconds.total_seconds())
    rules = [
        _alert(
            "ValkeyDown",
            # redis_up: the exporter answers but Valkey does not; up: the exporter (the pod) is gone.
            f"max by (region, instance) ({_m('redis_up')} == 0) or max by (region, instance) ({_m('up')} == 0)",
            for_=thresholds.down_for,
            severity="critical",
            summary=f"{where} is down",
            description=f"Valkey or its exporter has not answered for {duration(thresholds.down_for)}.",
        ),
        _alert(
            "ValkeyReplicaLinkDown",
            "valkey_replica_link_up == 0",
            for_=thresholds.link_down_for,
            severity="critical",
            summary=f"{where} lost its link to the primary",
            description=f"The replica has not been connected to its primary for {duration(thresholds.link_down_for)}: "
            "the DR copy is not being updated.",
        ),
        _alert(
            "ValkeyReplicationLagBytes",
            f"valkey_replication_lag > {int(thresholds.replication_lag_bytes)}",
            for_=thresholds.replication_lag_for,
            severity="warning",
            summary=f"Replica {{{{ $labels.replica }}}} of {where} is behind",
            description=f"The primary has written more than {size(int(thresholds.replication_lag_bytes))} that the "
            f"replica has not acknowledged, for {duration(thresholds.replication_lag_for)}.",
        ),
        _alert(
            "ValkeyReplicationLagSeconds",
            f"({_with_role(_m('redis_connected_slave_lag_seconds'))} > {lag_seconds})"
            f" or (valkey_replica_last_io_seconds > {lag_seconds})",
            for_=thresholds.replication_lag_for,
            severity="warning",
            summary=f"Replication of {where} is stalled",
            description=f"More than {lag_seconds} s without an acknowledgement from the replica "
            f"(primary's view) or without data from the primary (replica's view), for "
            f"{duration(thresholds.replication_lag_for)}.",
        ),
        _alert(
            "ValkeyNoReplicaConnected",
            f'(valkey_connected_replicas{{role="primary"}} == 0) and on (region, instance) '
            f"({_m('redis_up', dr='true')} == 1)",
            for_=thresholds.no_replica_for,
            severity="critical",
            summary=f"DR primary {where} has no replica",
            description=f"No replica has been connected for {duration(thresholds.no_replica_for)}: the instance has no "
            "copy in the other region.",
        ),
        _alert(
            "ValkeyMemoryNearMaxmemory",
            # maxmemory 0 (no limit) is filtered out before dividing.
            f"max by (region, instance) ({_m('redis_memory_used_bytes')}) / on (region, instance) "
            f"max by (region, instance) ({_m('redis_memory_max_bytes')} > 0) > {thresholds.memory_ratio}",
            for_=thresholds.memory_for,
            severity="warning",
            summary=f"{where} is nearly full",
            description=f"used_memory has been above {thresholds.memory_ratio:.0%} of maxmemory for "
            f"{duration(thresholds.memory_for)}.",
        ),
        _alert(
            "ValkeyEvictionsOnNoEvictionInstance",
            f"max by (region, instance) (increase({_m('redis_evicted_keys_total', eviction_policy='noeviction')}"
            f"[{window}]) > 0) or max by (region, instance) ((increase({_m('redis_evicted_keys_total')}[{window}])"
            f" > 0) and on (region, instance) {_m('redis_instance_info', maxmemory_policy='noeviction')})",
            for_=0,
            severity="warning",
            summary=f"{where} evicted keys although its policy is noeviction",
            description=f"Keys were evicted in the last {window}: the running maxmemory-policy is not the "
            "configured noeviction (CONFIG SET at run time?), and keys the policy promises to keep are dropped.",
        ),
    ]
    for rule in rules:
        rule["annotations"]["runbook_url"] = f"{runbook_base}#{runbook_anchor(rule['alert'])}"
    return rules


def rule_groups(thresholds: AlertThresholds, runbook_base: str) -> list[dict[str, Any]]:
    """``spec.groups`` of the PrometheusRule; ``runbook_base`` is docs/alerts.md's URL, without ``#``."""
    return [
        {"name": "valkey.recording", "rules": recording_rules()},
        {"name": "valkey.alerts", "rules": alerting_rules(thresholds, runbook_base.rstrip("#"))},
    ]
