"""Prometheus Operator objects of one stack: a ServiceMonitor that scrapes every Valkey exporter
sidecar in the namespace, and a PrometheusRule with the recording rules and alerts.

One of each per stack, not per instance: the rules aggregate over instances by label, so a copy per
instance would evaluate the same rules N times and raise every alert N times. Both are custom
resources: create this component only where the Prometheus Operator's CRDs are installed. Their
specs are built in ``specs.monitoring``.
"""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from .specs.labels import stack_labels
from .specs.monitoring import API_VERSION, MonitoringArgs, service_monitor_spec


class Monitoring(pulumi.ComponentResource):
    """A ServiceMonitor and a PrometheusRule, both named ``<name>``, in the Valkey namespace."""

    service_monitor: k8s.apiextensions.CustomResource
    prometheus_rule: k8s.apiextensions.CustomResource

    def __init__(self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("valkey:index:Monitoring", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, delete_before_replace=True)  # named objects
        labels = {**stack_labels(), **args.labels}
        metadata = k8s.meta.v1.ObjectMetaArgs(name=name, namespace=args.namespace, labels=labels)
        self.service_monitor = k8s.apiextensions.CustomResource(
            f"{name}-servicemonitor",
            api_version=API_VERSION,
            kind="ServiceMonitor",
            metadata=metadata,
            spec=service_monitor_spec(args),
            opts=child,
        )
        self.prometheus_rule = k8s.apiextensions.CustomResource(
            f"{name}-prometheusrule",
            api_version=API_VERSION,
            kind="PrometheusRule",
            metadata=metadata,
            spec={"groups": args.rule_groups},
            opts=child,
        )
        self.register_outputs({})
