"""The ServiceMonitor and PrometheusRule specs of a stack, from its settings.

The scrape labels the rules rely on (see ``render.alerts``) are set here: ``job="valkey"``,
``region`` (static), ``instance`` from the pod label ``app.kubernetes.io/instance``, ``dr`` and
``eviction_policy`` from the pod labels of ``labels.scrape_labels()``, which the pod template carries.
A second endpoint scrapes the Sentinels' exporters (port ``sentinelmetrics``, job
``valkey-sentinel``) with the same labels. What the group rules know of the stack's groups
(``render.group_alerts.Topology``) is taken from the config here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..config.models import StackConfig, following_instances, replication_migrations
from ..object_names import InstanceNames
from ..render.alerts import JOB, Topology, rule_groups
from ..render.group_alerts import GroupShape
from ..render.memory_alerts import MemoryShape
from ..render.promql import SENTINEL_JOB
from ..sizing import memory_model
from .exporter import PORT_NAME, SENTINEL_PORT_NAME
from .labels import APP_NAME, DR_LABEL, INSTANCE_LABEL, NAME_LABEL, POLICY_POD_LABEL

API_VERSION = "monitoring.coreos.com/v1"


def meta_label(pod_label: str) -> str:
    """Prometheus' Kubernetes discovery label for a pod label (characters outside [a-zA-Z0-9_] become _)."""
    return "__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", pod_label)


def relabelings(region: str, job: str = JOB) -> list[dict[str, Any]]:
    """The endpoint's relabelings, in the CRD's camelCase. They run after the operator's own (which
    set job to the Service name, namespace, pod, ...), so job is overridden here."""
    return [
        {"action": "replace", "targetLabel": "job", "replacement": job},
        {"action": "replace", "targetLabel": "region", "replacement": region},
        {"action": "replace", "sourceLabels": [meta_label(INSTANCE_LABEL)], "targetLabel": "instance"},
        {"action": "replace", "sourceLabels": [meta_label(DR_LABEL)], "targetLabel": "dr"},
        {"action": "replace", "sourceLabels": [meta_label(POLICY_POD_LABEL)], "targetLabel": "eviction_policy"},
    ]


@dataclass
class MonitoringArgs:
    namespace: str
    """Namespace of the Valkey Services, and of the ServiceMonitor and PrometheusRule."""
    region: str
    """Value of the ``region`` label on every series."""
    selector: dict[str, str]
    """Labels that select the Services carrying the ``metrics`` port. Exactly one Service per pod may
    have that port (the headless one), or every series is scraped twice and the rules' joins fail."""
    rule_groups: list[dict[str, Any]]
    """``spec.groups`` of the PrometheusRule: ``render.alerts.rule_groups(...)``."""
    labels: dict[str, str] = field(default_factory=dict)
    """Extra labels on both objects, e.g. ``release: prometheus``, by which a Prometheus selects them."""
    scrape_interval_seconds: int = 30
    """How often Prometheus scrapes each exporter."""


def topology(cfg: StackConfig) -> Topology:
    """The stack's groups as the rules see them: ``following_instances`` follow the other region
    (``__main__`` gives exactly those an upstream) and ``replication_migrations`` their migration
    source; every other group leads."""
    following = following_instances(cfg) | replication_migrations(cfg)
    return Topology(
        region=cfg.region or "",
        namespace=cfg.namespace,
        memory={
            name: MemoryShape(limit=model.limit, fork_copy=model.fork_budget)
            for name, model in ((name, memory_model(inst)) for name, inst in cfg.instances.items())
        },
        groups={
            name: GroupShape(
                members=inst.replicas,
                domain=InstanceNames(name).member_domain(cfg.namespace, cfg.cluster_domain),
                follows=name in following,
            )
            for name, inst in cfg.instances.items()
            if inst.replicas > 1
        },
    )


def monitoring_args(cfg: StackConfig) -> MonitoringArgs:
    """The stack's monitoring settings, as the Monitoring component's arguments."""
    monitoring = cfg.monitoring
    return MonitoringArgs(
        namespace=cfg.namespace,
        region=cfg.region or "",
        selector={NAME_LABEL: APP_NAME},
        rule_groups=rule_groups(monitoring.thresholds, monitoring.runbook_url, topology(cfg)),
        labels=monitoring.labels,
        scrape_interval_seconds=int(monitoring.scrape_interval.total_seconds()),
    )


def service_monitor_spec(args: MonitoringArgs) -> dict[str, Any]:
    interval = args.scrape_interval_seconds

    def endpoint(port: str, job: str) -> dict[str, Any]:
        return {
            "port": port,
            "path": "/metrics",
            "interval": f"{interval}s",
            # Prometheus refuses a timeout longer than the interval.
            "scrapeTimeout": f"{min(interval, 10)}s",
            "relabelings": relabelings(args.region, job),
        }

    return {
        "selector": {"matchLabels": args.selector},
        "namespaceSelector": {"matchNames": [args.namespace]},
        # A Service without the port (a single pod's, a following group's) gives that endpoint no target.
        "endpoints": [endpoint(PORT_NAME, JOB), endpoint(SENTINEL_PORT_NAME, SENTINEL_JOB)],
    }
