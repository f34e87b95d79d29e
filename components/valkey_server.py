"""One Valkey instance in one region, as primary or as replica of another region's primary."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s

from . import valkey_conf
from .config import Instance, backlog_bytes, memory_limit_bytes, storage_bytes
from .credentials import Credentials
from .labels import instance_labels, selector_labels
from .pod import ACL_FILE, DATA_DIR, PodSettings, pod_template

EXTERNAL_DNS_HOSTNAME = "external-dns.alpha.kubernetes.io/hostname"
CONFIG_CHECKSUM = "checksum/config"


@dataclass
class ExternalEndpoint:
    """The LoadBalancer Service through which another region reaches this primary."""

    host: str
    """DNS name published by external-dns, e.g. valkey.region1.example.com."""
    annotations: dict[str, str] = field(default_factory=dict)
    load_balancer_class: str | None = None
    source_ranges: list[str] = field(default_factory=list)


@dataclass
class ValkeyServerArgs:
    namespace: pulumi.Input[str]
    """Namespace for every object of the instance."""
    settings: Instance
    """Validated instance settings (memory, policy, port, storage, resources, backlog)."""
    image: str
    """Pinned Valkey image."""
    credentials: Credentials
    """This region's passwords for the instance."""
    upstream: pulumi.Output[valkey_conf.Upstream] | None = None
    """Set to make this instance a replica of another region's primary."""
    external: ExternalEndpoint | None = None
    """Set on a primary that DR replicas connect to."""
    cluster_domain: str = "cluster.local"
    block_voluntary_eviction: bool = True
    """PodDisruptionBudget minAvailable 1 (drains wait for a person) instead of maxUnavailable 1."""


class ValkeyServer(pulumi.ComponentResource):
    """A StatefulSet of one Valkey pod with its config Secret, Services and PodDisruptionBudget.

    Kubernetes object names derive from the resource name: ``<name>`` (StatefulSet, client
    Service, PDB), ``<name>-headless``, ``<name>-config``, ``<name>-external``.
    """

    host: pulumi.Output[str]
    """In-cluster DNS name of the client Service."""
    port: int
    external_host: str | None
    role: str
    """"primary" or "replica"."""
    statefulset: k8s.apps.v1.StatefulSet

    def __init__(self, name: str, args: ValkeyServerArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("valkey:index:ValkeyServer", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        s = args.settings
        labels = instance_labels(name)
        self.port = s.port
        self.role = "replica" if args.upstream is not None else "primary"
        self.external_host = args.external.host if args.external else None

        def metadata(object_name: str, annotations: dict[str, str] | None = None) -> k8s.meta.v1.ObjectMetaArgs:
            return k8s.meta.v1.ObjectMetaArgs(
                name=object_name, namespace=args.namespace, labels=labels, annotations=annotations
            )

        upstream = args.upstream if args.upstream is not None else pulumi.Output.from_input(None)
        files = pulumi.Output.all(
            args.credentials.client_password,
            args.credentials.replication_password,
            args.credentials.probe_password,
            upstream,
        ).apply(lambda v: _render_files(s, client=v[0], replication=v[1], probe=v[2], upstream=v[3]))
        files = pulumi.Output.secret(files)
        config = k8s.core.v1.Secret(
            f"{name}-config",
            metadata=metadata(f"{name}-config"),
            type="Opaque",
            string_data=files,
            opts=child,
        )
        # A hash of the files rolls the pod when the config changes. It reveals nothing of the
        # 190-bit passwords inside, so it stays readable in `pulumi preview` diffs.
        checksum = pulumi.Output.unsecret(files.apply(lambda f: {CONFIG_CHECKSUM: _checksum(f)}))

        headless = k8s.core.v1.Service(
            f"{name}-headless",
            metadata=metadata(f"{name}-headless"),
            spec=k8s.core.v1.ServiceSpecArgs(
                cluster_ip="None",
                publish_not_ready_addresses=True,
                selector=selector_labels(name),
                ports=[_service_port(s.port)],
            ),
            opts=child,
        )
        client = k8s.core.v1.Service(
            name,
            metadata=metadata(name),
            spec=k8s.core.v1.ServiceSpecArgs(
                type="ClusterIP", selector=selector_labels(name), ports=[_service_port(s.port)]
            ),
            opts=child,
        )
        if args.external is not None:
            ext = args.external
            k8s.core.v1.Service(
                f"{name}-external",
                metadata=metadata(f"{name}-external", annotations={**ext.annotations, EXTERNAL_DNS_HOSTNAME: ext.host}),
                spec=k8s.core.v1.ServiceSpecArgs(
                    type="LoadBalancer",
                    # Local keeps the client's source address, which source ranges and network
                    # policies match on.
                    external_traffic_policy="Local",
                    load_balancer_class=ext.load_balancer_class,
                    load_balancer_source_ranges=ext.source_ranges or None,
                    selector=selector_labels(name),
                    ports=[_service_port(s.port)],
                ),
                opts=child,
            )

        pod = PodSettings(
            image=args.image,
            port=s.port,
            cpu_request=s.resources.cpu,
            cpu_limit=s.resources.cpu_limit,
            memory_bytes=memory_limit_bytes(s),
            labels=labels,
            config_secret=f"{name}-config",
        )
        self.statefulset = k8s.apps.v1.StatefulSet(
            name,
            metadata=metadata(name),
            spec=k8s.apps.v1.StatefulSetSpecArgs(
                service_name=headless.metadata.apply(lambda m: m["name"]),
                replicas=1,
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector_labels(name)),
                update_strategy=k8s.apps.v1.StatefulSetUpdateStrategyArgs(type="RollingUpdate"),
                # The data outlives the StatefulSet: deleting or replacing it keeps the volume.
                persistent_volume_claim_retention_policy=k8s.apps.v1.StatefulSetPersistentVolumeClaimRetentionPolicyArgs(
                    when_deleted="Retain", when_scaled="Retain"
                ),
                volume_claim_templates=[
                    k8s.core.v1.PersistentVolumeClaimArgs(
                        metadata=k8s.meta.v1.ObjectMetaArgs(name="data", labels=labels),
                        spec=k8s.core.v1.PersistentVolumeClaimSpecArgs(
                            access_modes=["ReadWriteOnce"],
                            storage_class_name=s.storage.storage_class,
                            resources=k8s.core.v1.VolumeResourceRequirementsArgs(
                                requests={"storage": f"{-(-storage_bytes(s) // 1024**2)}Mi"}
                            ),
                        ),
                    )
                ],
                template=pod_template(pod, checksum),
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[config]),
        )
        k8s.policy.v1.PodDisruptionBudget(
            name,
            metadata=metadata(name),
            spec=k8s.policy.v1.PodDisruptionBudgetSpecArgs(
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector_labels(name)),
                min_available=1 if args.block_voluntary_eviction else None,
                max_unavailable=None if args.block_voluntary_eviction else 1,
                # A pod that is not Ready protects nothing: let a drain evict it.
                unhealthy_pod_eviction_policy="AlwaysAllow",
            ),
            opts=child,
        )

        self.host = pulumi.Output.all(client.metadata, args.namespace).apply(
            lambda v: f"{v[0]['name']}.{v[1]}.svc.{args.cluster_domain}"
        )
        self.register_outputs({"host": self.host, "port": self.port, "role": self.role})


def _service_port(port: int) -> k8s.core.v1.ServicePortArgs:
    return k8s.core.v1.ServicePortArgs(name="valkey", port=port, target_port="valkey", protocol="TCP")


def _render_files(
    s: Instance, client: str, replication: str, probe: str, upstream: valkey_conf.Upstream | None
) -> dict[str, str]:
    settings = valkey_conf.ServerSettings(
        port=s.port,
        maxmemory=int(s.maxmemory),
        maxmemory_policy=s.maxmemory_policy,
        repl_backlog_size=backlog_bytes(s),
        data_dir=DATA_DIR,
        acl_file=ACL_FILE,
        upstream=upstream,
    )
    return {
        "valkey.conf": valkey_conf.render_valkey_conf(settings),
        "users.acl": valkey_conf.render_acl(valkey_conf.server_users(client, replication, probe)),
        "probe-password": probe,
    }


def _checksum(files: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
