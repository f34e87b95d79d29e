"""One Valkey instance in one region, as primary or as replica of another region's primary."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s

from . import exporter, valkey_conf
from .config import Instance, memory_limit_bytes, storage_bytes
from .credentials import Credentials
from .labels import instance_labels, selector_labels
from .monitoring import pod_labels
from .network_policy import NetworkPolicyRules, network_policy_spec
from .object_names import DATA_CLAIM, InstanceNames
from .pod import PodSettings, mib, pod_template, rollout_timeout_seconds
from .server_files import render_files, restart_checksum
from .tls import TlsSource, certificate, dns_names

EXTERNAL_DNS_HOSTNAME = "external-dns.alpha.kubernetes.io/hostname"
CONFIG_CHECKSUM = "checksum/config"
CLAIM_SIZE = "spec.volumeClaimTemplates[0].spec.resources.requests.storage"


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
    namespace: str
    """Namespace for every object of the instance (it must exist: depend on it through opts)."""
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
    tls: TlsSource | None = None
    """Serve and replicate over TLS only; None serves plaintext."""
    network_policy: NetworkPolicyRules | None = None
    """Default-deny NetworkPolicy with these allowances; None creates none."""
    denied_commands: list[str] = field(default_factory=list)
    """Commands the default user (applications) may not run."""
    cluster_domain: str = "cluster.local"
    block_voluntary_eviction: bool = True
    """PodDisruptionBudget minAvailable 1 (drains wait for a person) instead of maxUnavailable 1."""
    protect: bool = False
    """Pulumi protect on the StatefulSet: deleting or replacing it fails instead."""
    metrics_exporter: bool = False
    """A redis_exporter sidecar logged in as its own user, and a metrics port on the headless Service."""


class ValkeyServer(pulumi.ComponentResource):
    """A StatefulSet of one Valkey pod with its config Secret, Services, PodDisruptionBudget,
    and optionally its certificate and NetworkPolicy.

    Kubernetes object names derive from the resource name: ``<name>`` (StatefulSet, client
    Service, PDB, NetworkPolicy), ``<name>-headless``, ``<name>-config``, ``<name>-external``,
    ``<name>-tls``.
    """

    host: str
    """In-cluster DNS name of the client Service."""
    port: int
    external_host: str | None
    role: str
    """"primary" or "replica"."""
    tls: bool
    statefulset: k8s.apps.v1.StatefulSet

    def __init__(self, name: str, args: ValkeyServerArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("valkey:index:ValkeyServer", name, None, opts)
        # Every object here has an explicit name: a create-before-delete replacement (what
        # `pulumi up --replace` does unless told otherwise) can never succeed for it.
        child = pulumi.ResourceOptions(parent=self, delete_before_replace=True)
        names = InstanceNames(name)
        s = args.settings
        labels = instance_labels(name)
        self.port = s.port
        self.role = "replica" if args.upstream is not None else "primary"
        self.external_host = args.external.host if args.external else None
        self.tls = args.tls is not None
        self.host = f"{name}.{args.namespace}.svc.{args.cluster_domain}"

        # What policies (policy/) key on: a DR primary must persist. Only on the StatefulSet and
        # the config Secret: on the pod template or claim template a change would roll or replace.
        role_labels = {"valkey.io/dr": str(s.dr).lower(), "valkey.io/role": self.role}

        def metadata(
            object_name: str, annotations: dict[str, str] | None = None, extra: dict[str, str] | None = None
        ) -> k8s.meta.v1.ObjectMetaArgs:
            return k8s.meta.v1.ObjectMetaArgs(
                name=object_name, namespace=args.namespace, labels={**labels, **(extra or {})}, annotations=annotations
            )

        creds = args.credentials
        ca_bundle = args.tls.ca_bundle if args.tls else None
        files = pulumi.Output.all(
            creds.client.accepted,
            creds.replication.accepted,
            creds.probe_password,
            creds.reloader_password,
            creds.admin_password,
            creds.metrics.accepted,
            args.upstream if args.upstream is not None else pulumi.Output.from_input(None),
        ).apply(
            lambda v: render_files(
                s,
                valkey_conf.Passwords(
                    client=tuple(v[0]),
                    replication=tuple(v[1]),
                    probe=v[2],
                    reloader=v[3],
                    admin=v[4],
                    metrics=tuple(v[5]) if args.metrics_exporter else (),
                ),
                upstream=v[6],
                ca_bundle=ca_bundle,
                denied_commands=args.denied_commands,
            )
        )
        files = pulumi.Output.secret(files)
        config = k8s.core.v1.Secret(
            names.config_secret,
            metadata=metadata(names.config_secret, extra=role_labels),
            type="Opaque",
            string_data=files,
            opts=child,
        )
        # A hash of what needs a restart rolls the pod when it changes; password rotations and
        # renewed certificates are applied live by the reloader sidecar and roll nothing. The hash
        # reveals nothing of the 190-bit passwords it covers, so it stays readable in previews.
        checksum = pulumi.Output.unsecret(files.apply(lambda f: {CONFIG_CHECKSUM: restart_checksum(f)}))

        depends: list[pulumi.Resource] = [config]
        if args.tls is not None and args.tls.issuer is not None:
            # The pod mounts the Secret cert-manager issues for this Certificate.
            depends.append(
                certificate(
                    instance=name,
                    namespace=args.namespace,
                    names=dns_names(name, args.namespace, args.cluster_domain, self.external_host),
                    issuer=args.tls.issuer,
                    labels=labels,
                    opts=child,
                )
            )

        # Everything the pod needs to serve; the StatefulSet depends on all of it (below).
        serving: list[pulumi.Resource] = [*depends, *args.credentials.secrets]
        headless = k8s.core.v1.Service(
            names.headless_service,
            metadata=metadata(names.headless_service),
            spec=k8s.core.v1.ServiceSpecArgs(
                cluster_ip="None",
                publish_not_ready_addresses=True,
                selector=selector_labels(name),
                # The only Service with the metrics port: on two, every series would be scraped twice.
                ports=[_service_port(s.port)] + ([_metrics_port()] if args.metrics_exporter else []),
            ),
            opts=child,
        )
        client_service = k8s.core.v1.Service(
            name,
            metadata=metadata(name),
            spec=k8s.core.v1.ServiceSpecArgs(
                type="ClusterIP", selector=selector_labels(name), ports=[_service_port(s.port)]
            ),
            opts=child,
        )
        serving += [headless, client_service]
        serving.append(
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
        )
        if args.network_policy is not None:
            serving.append(
                k8s.networking.v1.NetworkPolicy(
                    name,
                    metadata=metadata(name),
                    spec=network_policy_spec(args.network_policy, selector_labels(name), s.port),
                    opts=child,
                )
            )

        pod = PodSettings(
            image=args.image,
            port=s.port,
            cpu_request=s.resources.cpu,
            cpu_limit=s.resources.cpu_limit,
            memory_bytes=memory_limit_bytes(s),
            labels=labels,
            config_secret=names.config_secret,
            tls_secret=args.tls.secret_name(name) if args.tls else None,
            persistence=s.persistence,
            metrics_exporter=args.metrics_exporter,
            # For the scrape (components/monitoring.py): replicated or not, and the eviction policy.
            pod_labels=pod_labels(s.dr, s.maxmemory_policy) if args.metrics_exporter else None,
        )
        claims = []
        if s.persistence:
            claims.append(
                k8s.core.v1.PersistentVolumeClaimArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(name=DATA_CLAIM, labels=labels),
                    spec=k8s.core.v1.PersistentVolumeClaimSpecArgs(
                        access_modes=["ReadWriteOnce"],
                        storage_class_name=s.storage.storage_class,
                        resources=k8s.core.v1.VolumeResourceRequirementsArgs(
                            requests={"storage": mib(storage_bytes(s))}
                        ),
                    ),
                )
            )
        rollout = f"{rollout_timeout_seconds(replicas=1)}s"
        self.statefulset = k8s.apps.v1.StatefulSet(
            name,
            metadata=metadata(name, extra=role_labels),
            spec=k8s.apps.v1.StatefulSetSpecArgs(
                service_name=headless.metadata.apply(lambda m: m["name"]),
                replicas=1,
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector_labels(name)),
                update_strategy=k8s.apps.v1.StatefulSetUpdateStrategyArgs(type="RollingUpdate"),
                # The data outlives the StatefulSet: deleting or replacing it keeps the volume.
                persistent_volume_claim_retention_policy=k8s.apps.v1.StatefulSetPersistentVolumeClaimRetentionPolicyArgs(
                    when_deleted="Retain", when_scaled="Retain"
                ),
                volume_claim_templates=claims or None,
                template=pod_template(pod, checksum),
            ),
            opts=child.merge(
                pulumi.ResourceOptions(
                    # Removing the instance while protected fails at the StatefulSet, and the
                    # engine then skips every delete it depends on: nothing of a running instance
                    # (Services, Secrets, policies) goes away while its pod stays.
                    depends_on=serving,
                    protect=args.protect,
                    # The template's size only sizes new claims and cannot change in place (a
                    # change would replace the StatefulSet); the claims grow by the patch below.
                    ignore_changes=[CLAIM_SIZE] if claims else None,
                    # Longer than the longest start the probes allow, so an await never gives up
                    # on a pod still loading its data.
                    custom_timeouts=pulumi.CustomTimeouts(create=rollout, update=rollout),
                )
            ),
        )
        if args.external is not None:
            ext = args.external
            k8s.core.v1.Service(
                names.external_service,
                metadata=metadata(names.external_service, {**ext.annotations, EXTERNAL_DNS_HOSTNAME: ext.host}),
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
                # After the pods: its await for a load-balancer address (slow, or failing in the
                # incident a promotion answers) must never hold back the StatefulSet's own update.
                opts=child.merge(pulumi.ResourceOptions(depends_on=[self.statefulset])),
            )
        if claims and s.storage.size is not None:
            # Only a size the stack file states: the default follows maxmemory, and lowering
            # maxmemory must not ask Kubernetes to shrink a volume (it refuses, every time).
            grow_claim(names, args.namespace, mib(int(s.storage.size)), self.statefulset, child)
        self.register_outputs({"host": self.host, "port": self.port, "role": self.role})


def grow_claim(
    names: InstanceNames, namespace: str, size: str, statefulset: k8s.apps.v1.StatefulSet, opts: pulumi.ResourceOptions
) -> k8s.core.v1.PersistentVolumeClaimPatch:
    """The size of pod 0's claim, kept equal to ``storage.size`` by server-side apply: raising it
    expands the volume in place (the StorageClass must allow expansion; Kubernetes refuses a
    shrink). After the StatefulSet is Ready, so the claim exists."""
    return k8s.core.v1.PersistentVolumeClaimPatch(
        names.claim_patch_resource,
        metadata=k8s.meta.v1.ObjectMetaPatchArgs(
            name=names.claim(0),
            namespace=namespace,
            annotations={
                # The claim was created (and sized) by the StatefulSet controller, which owns the field.
                "pulumi.com/patchForce": "true",
                # Its awaiter waits for Bound on a new claim, or for Pending under a
                # WaitForFirstConsumer StorageClass: this claim is Bound already, so the await would
                # never end there.
                "pulumi.com/skipAwait": "true",
            },
        ),
        spec=k8s.core.v1.PersistentVolumeClaimSpecPatchArgs(
            resources=k8s.core.v1.VolumeResourceRequirementsPatchArgs(requests={"storage": size})
        ),
        # Deleting the patch only lets go of the field; the claim and its data stay (a required
        # field cannot be given up, so the provider would refuse a plain delete).
        opts=opts.merge(pulumi.ResourceOptions(depends_on=[statefulset], retain_on_delete=True)),
    )


def _metrics_port() -> k8s.core.v1.ServicePortArgs:
    return k8s.core.v1.ServicePortArgs(
        name=exporter.PORT_NAME, port=exporter.METRICS_PORT, target_port=exporter.PORT_NAME, protocol="TCP"
    )


def _service_port(port: int) -> k8s.core.v1.ServicePortArgs:
    return k8s.core.v1.ServicePortArgs(name="valkey", port=port, target_port="valkey", protocol="TCP")
