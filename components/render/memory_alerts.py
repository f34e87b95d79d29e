"""The rules that keep the memory model honest (components/sizing.py, README "Sizing"): each
instance's limit and fork budget as constant series, an alert when a pod's working set nears its
limit while a fork runs, and one when a fork copied more than the model gave it.

Pure functions, no Pulumi. Inputs: the exporter's ``redis_rdb_bgsave_in_progress``,
``redis_aof_rewrite_in_progress``, ``redis_rdb_last_cow_size_bytes`` and
``redis_aof_last_cow_size_bytes`` (Debian's 1.45 and the pinned image name them alike; neither
1.45 nor INFO's ``current_cow_size`` gives the copy while the fork runs, so that alert reads the
kubelet's cAdvisor series instead, ``container_memory_working_set_bytes`` of the ``valkey``
container: what the memory cgroup is charged, shared pages once, page cache that cannot be
reclaimed included, which is what the OOM killer goes by).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .promql import PER_POD, WHERE, alert, m

MEMORY_ALERTS = ("ValkeyForkNearMemoryLimit", "ValkeyForkCopiedMoreThanSized")
MEMORY_RECORDS = ("valkey_memory_limit_bytes", "valkey_fork_copy_budget_bytes")
WORKING_SET = "container_memory_working_set_bytes"
NEAR_LIMIT = 0.9
"""The share of the limit a working set may reach during a fork before the alert fires."""


@dataclass(frozen=True)
class MemoryShape:
    """One instance's memory model, as the rules see it."""

    limit: int
    """The container memory limit, bytes."""
    fork_copy: int
    """What the model lets a fork copy, bytes (``MemoryModel.fork_copy``)."""


def recording_rules(region: str, memory: dict[str, MemoryShape]) -> list[dict[str, Any]]:
    return [
        rule
        for name, shape in sorted(memory.items())
        for rule in (
            {"record": "valkey_memory_limit_bytes", "expr": f"vector({shape.limit})", "labels": _labels(region, name)},
            {
                "record": "valkey_fork_copy_budget_bytes",
                "expr": f"vector({shape.fork_copy})",
                "labels": _labels(region, name),
            },
        )
    ]


def alerting_rules(
    region: str, namespace: str, memory: dict[str, MemoryShape], runbook_base: str
) -> list[dict[str, Any]]:
    """Both alerts fire at once (``for: 0``): a fork lives seconds to a minute. Evaluated by the
    region's own Prometheus (cAdvisor's series carry no region: the namespace selects them)."""
    if not memory:
        return []
    pods = "|".join(sorted(memory))
    # cAdvisor's series name the pod, not the instance: the instance is the StatefulSet's name.
    working_set = (
        f'label_replace(max by (namespace, pod) ({WORKING_SET}{{container="valkey", namespace="{namespace}", '
        f'pod=~"({pods})-[0-9]+"}}), "instance", "$1", "pod", "(.+)-[0-9]+")'
    )
    limit = f'valkey_memory_limit_bytes{{region="{region}"}}'
    forking = (
        f"max by ({PER_POD}) ({m('redis_rdb_bgsave_in_progress')} == 1 or {m('redis_aof_rewrite_in_progress')} == 1)"
    )
    near = (
        f"max by ({PER_POD}) (({working_set} / on (instance) group_left (region) {limit}) > {NEAR_LIMIT} "
        f"and on ({PER_POD}) {forking})"
    )
    budget = f'on (region, instance) group_left () valkey_fork_copy_budget_bytes{{region="{region}"}}'
    copied = (
        f"(max by ({PER_POD}) ({m('redis_rdb_last_cow_size_bytes')}) > {budget}) or "
        f"(max by ({PER_POD}) ({m('redis_aof_last_cow_size_bytes')}) > {budget})"
    )
    return [
        alert(
            "ValkeyForkNearMemoryLimit",
            near,
            for_=0,
            severity="critical",
            summary=f"{WHERE}: pod {{{{ $labels.pod }}}} nears its memory limit during a fork",
            description=f"While an AOF rewrite or a full sync runs, the valkey container's working set is above "
            f"{NEAR_LIMIT:.0%} of its memory limit: the fork copies more than the memory model allows, and an OOM "
            "kill of the server is near. Raise replication.writeRate to the real write load, or set "
            "resources.forkHeadroom: dataset.",
            runbook_base=runbook_base,
        ),
        alert(
            "ValkeyForkCopiedMoreThanSized",
            copied,
            for_=0,
            severity="warning",
            summary=f"{WHERE}: a fork of pod {{{{ $labels.pod }}}} copied more than the memory model allows",
            description="The last AOF rewrite or full sync made the kernel copy more memory than the limit "
            "keeps for a fork (twice the declared replication.writeRate while the fork lives). The next one under the "
            "same load may be OOM-killed: raise replication.writeRate to the real write load, or set "
            "resources.forkHeadroom: dataset.",
            runbook_base=runbook_base,
        ),
    ]


def _labels(region: str, instance: str) -> dict[str, str]:
    return {"region": region, "instance": instance}
