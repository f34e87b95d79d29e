"""One instance's keyspace copy from an existing Redis or Dragonfly (docs/migration.md): its Job,
the Service over the Job's metrics and, with the Prometheus Operator, a ServiceMonitor for it.
The specs are built in ``specs.migration``."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s

from .object_names import InstanceNames
from .specs import migration
from .specs.monitoring import API_VERSION, relabelings

JOB = "valkey-migration"
"""The ``job`` label of the copy's series."""


@dataclass
class KeyspaceCopyArgs:
    namespace: str
    job: migration.CopyJob
    region: str
    service_monitor: bool
    """Create a ServiceMonitor (the Prometheus Operator's CRDs must be installed)."""
    monitoring_labels: dict[str, str]
    scrape_interval_seconds: int
    after: list[pulumi.Resource] = field(default_factory=list)
    """The Job is created after these: the instance's StatefulSet, Ready (the copy writes into it)."""


class KeyspaceCopy(pulumi.ComponentResource):
    def __init__(self, name: str, args: KeyspaceCopyArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("valkey:index:KeyspaceCopy", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, delete_before_replace=True)  # named objects
        object_name = InstanceNames(name).migration
        labels = migration.job_labels(name)

        def metadata(
            extra: dict[str, str] | None = None, annotations: dict[str, str] | None = None
        ) -> k8s.meta.v1.ObjectMetaArgs:
            return k8s.meta.v1.ObjectMetaArgs(
                name=object_name, namespace=args.namespace, labels={**labels, **(extra or {})}, annotations=annotations
            )

        self.job = k8s.batch.v1.Job(
            object_name,
            metadata=metadata(annotations=migration.SKIP_AWAIT),
            spec=migration.job_spec(args.job),
            opts=child.merge(pulumi.ResourceOptions(depends_on=args.after)),
        )
        k8s.core.v1.Service(object_name, metadata=metadata(), spec=migration.metrics_service_spec(name), opts=child)
        if args.service_monitor:
            interval = args.scrape_interval_seconds
            k8s.apiextensions.CustomResource(
                f"{object_name}-servicemonitor",
                api_version=API_VERSION,
                kind="ServiceMonitor",
                metadata=metadata(args.monitoring_labels),
                spec={
                    "selector": {"matchLabels": migration.pod_labels(name)},
                    "namespaceSelector": {"matchNames": [args.namespace]},
                    "endpoints": [
                        {
                            "port": migration.METRICS_PORT_NAME,
                            "path": "/metrics",
                            "interval": f"{interval}s",
                            "scrapeTimeout": f"{min(interval, 10)}s",
                            "relabelings": relabelings(args.region, JOB),
                        }
                    ],
                },
                opts=child,
            )
        self.register_outputs({})
