"""The PromQL and rule-file vocabulary the node rules (``render.alerts``) and the group rules
(``render.group_alerts``) share: selectors of our exporters, the role join, durations, alert rules.

Pure functions, no Pulumi.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

JOB = "valkey"
"""The ``job`` of every Valkey node's exporter (the ``metrics`` port)."""
SENTINEL_JOB = "valkey-sentinel"
"""The ``job`` of every Sentinel's exporter (the ``sentinelmetrics`` port). Its own job: a
Sentinel's ``redis_instance_info`` and ``redis_up`` must never be joined with a node's."""
PER_POD = "region, instance, pod"
"""What identifies one exporter: the Prometheus Operator adds ``pod``. Alerts about a node keep
it, so one member of a group down is one alert, whatever its peers report; a single pod's alert
is the one it always was, with ``pod`` naming its only pod."""


def duration(length: timedelta | int) -> str:
    """A Prometheus duration: ``2m`` rather than ``120s`` where it divides evenly."""
    seconds = int(length.total_seconds()) if isinstance(length, timedelta) else length
    for unit, unit_seconds in (("h", 3600), ("m", 60)):
        if seconds and seconds % unit_seconds == 0:
            return f"{seconds // unit_seconds}{unit}"
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


def m(metric: str, job: str = JOB, **matchers: str) -> str:
    """A selector of our exporters' series only; a value starting with ``~`` or ``!~`` is a regex."""
    parts = [f'job="{job}"']
    for key, value in matchers.items():
        if value.startswith("!~"):
            parts.append(f'{key}!~"{value[2:]}"')
        elif value.startswith("~"):
            parts.append(f'{key}=~"{value[1:]}"')
        else:
            parts.append(f'{key}="{value}"')
    return f"{metric}{{{', '.join(parts)}}}"


PRIMARY_ROLES = "master|primary"
REPLICA_ROLES = "slave|replica"
"""``redis_instance_info{role}`` as Valkey 8/9 and the exporter spell it, and as a later release
might rename it."""

# One series per pod (region, instance, and the ``pod`` label the Prometheus Operator adds) with
# the role in this project's words; `max by` drops the exporter's version, run_id, ... labels, and
# staleness drops the old role at promotion or failover. A group has several pods per (region,
# instance), one primary and replicas: joins are per pod.
ROLE = (
    "label_replace(label_replace("
    f"max by ({PER_POD}, role) ({m('redis_instance_info')}), "
    f'"role", "primary", "role", "{PRIMARY_ROLES}"), '
    f'"role", "replica", "role", "{REPLICA_ROLES}")'
)


def with_role(expr: str, by: str = "region, instance, role") -> str:
    """``expr`` (series of one pod each) with that pod's role, aggregated ``by``."""
    return f"max by ({by}) ({expr} * on ({PER_POD}) group_left (role) {ROLE})"


def per_pod_with_role(expr: str) -> str:
    """``expr`` with its pod's role, one series per pod."""
    return with_role(expr, by=f"{PER_POD}, role")


def alert(
    name: str,
    expr: str,
    *,
    for_: timedelta | int,
    severity: str,
    summary: str,
    description: str,
    runbook_base: str,
) -> dict[str, Any]:
    """Annotations template only ``$labels`` (never ``$value``), so a test can predict them exactly."""
    return {
        "alert": name,
        "expr": expr,
        "for": duration(for_),
        "labels": {"severity": severity},
        "annotations": {
            "summary": summary,
            "description": description,
            "runbook_url": f"{runbook_base}#{runbook_anchor(name)}",
        },
    }


WHERE = "Valkey {{ $labels.instance }} in {{ $labels.region }}"
