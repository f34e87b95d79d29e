"""Prometheus Operator objects of one stack: a ServiceMonitor that scrapes every Valkey exporter
sidecar in the namespace, and a PrometheusRule with the recording rules and alerts.

One of each per stack, not per instance: the rules aggregate over instances by label, so a copy per
instance would evaluate the same rules N times and raise every alert N times. Both are custom
resources: create this component only where the Prometheus Operator's CRDs are installed.

The scrape labels the rules rely on (see ``components.monitoring_rules``) are set here:
``job="valkey"``, ``region`` (static), ``instance`` from the pod label ``app.kubernetes.io/instance``,
``dr`` and ``eviction_policy`` from the pod labels of ``pod_labels()``, which the pod template must carry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from .config import StackConfig
from .exporter import PORT_NAME
from .monitoring_rules import JOB, Thresholds, rule_groups

API_VERSION = "monitoring.coreos.com/v1"
INSTANCE_POD_LABEL = "app.kubernetes.io/instance"
# The same DR label the policy pack (policy/dr.py) reads on the StatefulSet.
DR_POD_LABEL = "valkey.io/dr"
POLICY_POD_LABEL = "valkey.io/maxmemory-policy"


def pod_labels(dr: bool, maxmemory_policy: str) -> dict[str, str]:
    """Labels the Valkey pod template carries for the scrape: whether the instance is replicated to
    the other region, and its configured eviction policy."""
    return {DR_POD_LABEL: "true" if dr else "false", POLICY_POD_LABEL: maxmemory_policy}


def meta_label(pod_label: str) -> str:
    """Prometheus' Kubernetes discovery label for a pod label (characters outside [a-zA-Z0-9_] become _)."""
    return "__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", pod_label)


def relabelings(region: str) -> list[dict[str, Any]]:
    """The endpoint's relabelings, in the CRD's camelCase. They run after the operator's own (which
    set job to the Service name, namespace, pod, ...), so job is overridden here."""
    return [
        {"action": "replace", "targetLabel": "job", "replacement": JOB},
        {"action": "replace", "targetLabel": "region", "replacement": region},
        {"action": "replace", "sourceLabels": [meta_label(INSTANCE_POD_LABEL)], "targetLabel": "instance"},
        {"action": "replace", "sourceLabels": [meta_label(DR_POD_LABEL)], "targetLabel": "dr"},
        {"action": "replace", "sourceLabels": [meta_label(POLICY_POD_LABEL)], "targetLabel": "eviction_policy"},
    ]


@dataclass
class MonitoringArgs:
    namespace: pulumi.Input[str]
    """Namespace of the Valkey Services, and of the ServiceMonitor and PrometheusRule."""
    region: str
    """Value of the ``region`` label on every series."""
    selector: dict[str, str]
    """Labels that select the Services carrying the ``metrics`` port. Exactly one Service per pod may
    have that port (the headless one), or every series is scraped twice and the rules' joins fail."""
    rule_groups: list[dict[str, Any]]
    """``spec.groups`` of the PrometheusRule: ``monitoring_rules.rule_groups(...)``."""
    labels: dict[str, str] = field(default_factory=dict)
    """Extra labels on both objects, e.g. ``release: prometheus``, by which a Prometheus selects them."""
    scrape_interval_seconds: int = 30
    """How often Prometheus scrapes each exporter."""


class Monitoring(pulumi.ComponentResource):
    """A ServiceMonitor and a PrometheusRule, both named ``<name>``, in the Valkey namespace."""

    service_monitor: k8s.apiextensions.CustomResource
    prometheus_rule: k8s.apiextensions.CustomResource

    def __init__(self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("valkey:index:Monitoring", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, delete_before_replace=True)  # named objects
        labels = {"app.kubernetes.io/part-of": "valkey", "app.kubernetes.io/managed-by": "pulumi", **args.labels}

        def metadata() -> k8s.meta.v1.ObjectMetaArgs:
            return k8s.meta.v1.ObjectMetaArgs(name=name, namespace=args.namespace, labels=labels)

        interval = args.scrape_interval_seconds
        self.service_monitor = k8s.apiextensions.CustomResource(
            f"{name}-servicemonitor",
            api_version=API_VERSION,
            kind="ServiceMonitor",
            metadata=metadata(),
            spec={
                "selector": {"matchLabels": args.selector},
                "namespaceSelector": {"matchNames": [args.namespace]},
                "endpoints": [
                    {
                        "port": PORT_NAME,
                        "path": "/metrics",
                        "interval": f"{interval}s",
                        # Prometheus refuses a timeout longer than the interval.
                        "scrapeTimeout": f"{min(interval, 10)}s",
                        "relabelings": relabelings(args.region),
                    }
                ],
            },
            opts=child,
        )
        self.prometheus_rule = k8s.apiextensions.CustomResource(
            f"{name}-prometheusrule",
            api_version=API_VERSION,
            kind="PrometheusRule",
            metadata=metadata(),
            spec={"groups": args.rule_groups},
            opts=child,
        )
        self.register_outputs({})


def monitoring_args(cfg: StackConfig) -> MonitoringArgs:
    """The stack's monitoring settings, as this component's arguments."""
    m = cfg.monitoring
    t = m.thresholds

    def seconds(d: timedelta) -> int:
        return int(d.total_seconds())

    thresholds = Thresholds(
        replication_lag_bytes=int(t.replication_lag_bytes),
        replication_lag_seconds=seconds(t.replication_lag_seconds),
        memory_ratio=t.memory_ratio,
        link_down_for=seconds(t.link_down_for),
        replication_lag_for=seconds(t.replication_lag_for),
        no_replica_for=seconds(t.no_replica_for),
        memory_for=seconds(t.memory_for),
        down_for=seconds(t.down_for),
        eviction_window=seconds(t.eviction_window),
    )
    return MonitoringArgs(
        namespace=cfg.namespace,
        region=cfg.region or "",
        selector={"app.kubernetes.io/name": "valkey"},
        rule_groups=rule_groups(thresholds, m.runbook_url),
        labels=m.labels,
        scrape_interval_seconds=seconds(m.scrape_interval),
    )
