"""One Valkey instance in one region, as primary or as replica of another region's primary.

The component only places what ``render/`` and ``specs/`` build into resources, and decides the
order and options Pulumi applies them with (``depends_on``, ``protect``, timeouts).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from .config.models import Failover, Instance, Scheduling
from .credentials import Credentials
from .object_names import EXTERNAL_DNS_HOSTNAME, InstanceNames
from .render import acl, pod_scripts, valkey_conf
from .render.files import Group, MigrationSource, render_files, restart_checksum
from .sizing import memory_limit_bytes, storage_bytes
from .specs import certificate, marker, rbac, services
from .specs.disruption_budget import disruption_budget_spec
from .specs.labels import instance_labels, primary_selector, role_labels, scrape_labels, selector_labels
from .specs.network_policy import NetworkPolicyRules, network_policy_spec
from .specs.pod import GroupSettings, PodSettings, pod_template, rollout_timeout_seconds
from .specs.statefulset import CLAIM_SIZE_FIELD, claim_size_patch, data_claim_template, statefulset_spec

CONFIG_CHECKSUM = "checksum/config"


@dataclass
class ExternalEndpoint:
    """The LoadBalancer Service through which another region reaches this primary."""

    host: str
    """DNS name published by external-dns, e.g. valkey.region1.example.com."""
    annotations: dict[str, str] = field(default_factory=dict)
    load_balancer_class: str | None = None
    source_ranges: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ReplicationSource:
    """A migration source a group replicates (docs/migration.md#live-replication): its head logs in
    with the source's own Secret, which the pods mount; the program never reads it."""

    host: str
    port: int
    credentials_secret: str | None
    """The Secret with the keys password and, optionally, username; None: no login."""


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
    source: ReplicationSource | None = None
    """Set to make this instance's group replicate a migration source until the cut-over."""
    external: ExternalEndpoint | None = None
    """Set on a primary that DR replicas connect to."""
    tls: certificate.TlsSource | None = None
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
    failover: Failover = field(default_factory=Failover)
    """A group's (settings.replicas > 1) failure detection and fencing."""
    scheduling: Scheduling = field(default_factory=Scheduling)
    """How a group's pods spread over nodes and zones."""
    region: str = ""
    """This stack's region: a following group's members announce <pod>.<region>.invalid."""
    master_name: str = ""
    """The name a group's Sentinels know it by in this region (config.models.sentinel_master_name)."""


class ValkeyServer(pulumi.ComponentResource):
    """A StatefulSet of one Valkey pod, or of a Sentinel group (``settings.replicas`` > 1), with its
    config Secret, Services, PodDisruptionBudget, and optionally its certificate and NetworkPolicy.
    A group adds a read Service, a Sentinel Service and its label updater's RBAC. Names come from
    ``object_names.InstanceNames``.
    """

    host: str
    """In-cluster DNS name of the client Service."""
    port: int
    external_host: str | None
    role: str
    """"primary" or "replica"."""
    tls: bool
    replicas: int
    read_host: str | None
    """A group's Service over every Ready member; None for a single pod."""
    sentinel_host: str | None
    """A group's Sentinel Service; None for a single pod."""
    sentinel_port: int | None
    master_name: str | None
    """The name a group's Sentinels know it by."""
    statefulset: k8s.apps.v1.StatefulSet

    def __init__(self, name: str, args: ValkeyServerArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("valkey:index:ValkeyServer", name, None, opts)
        self._args = args
        self._names = InstanceNames(name)
        # Every object here has an explicit name: a create-before-delete replacement (what
        # `pulumi up --replace` does unless told otherwise) can never succeed for it.
        self._child = pulumi.ResourceOptions(parent=self, delete_before_replace=True)
        self._labels = instance_labels(name)
        self._selector = selector_labels(name)
        settings = args.settings
        self.port = settings.port
        self.role = "replica" if args.upstream is not None else "primary"
        # It follows another region's primary, or a migration source: no Sentinels, a head.
        self.follows = args.upstream is not None or args.source is not None
        self.external_host = args.external.host if args.external else None
        self.tls = args.tls is not None
        self.host = f"{name}.{args.namespace}.svc.{args.cluster_domain}"
        self.group = settings.replicas > 1
        # A group that follows another region has no Sentinels until it is promoted.
        self.leads = self.group and not self.follows
        self.replicas = settings.replicas
        self.sentinel_port = args.failover.sentinel_port if self.leads else None
        if self.group and not args.master_name:
            raise ValueError(f"instance {name}: a group needs its Sentinel master name")
        self.master_name = args.master_name if self.leads else None
        self.read_host = (
            f"{self._names.read_service}.{args.namespace}.svc.{args.cluster_domain}" if self.group else None
        )
        self.sentinel_host = (
            f"{self._names.sentinel_service}.{args.namespace}.svc.{args.cluster_domain}" if self.leads else None
        )
        # A group's client and external Services follow its primary's run-time label.
        self._primary = primary_selector(name) if self.group else self._selector

        files = self._config_files()
        config_secret = k8s.core.v1.Secret(
            self._names.config_secret,
            metadata=self._metadata(self._names.config_secret, role_labels(settings.dr, self.role)),
            type="Opaque",
            string_data=files,
            opts=self._child,
        )
        # Everything the pod needs to serve; the StatefulSet depends on all of it. Removing the
        # instance while protected fails at its marker (deleted first, protected too) or its
        # StatefulSet, and the engine then skips every delete they depend on: nothing of a running
        # instance goes away while its pod stays.
        serving: list[pulumi.Resource] = [config_secret, *self._certificate(), *args.credentials.secrets]
        headless = self._service(
            self._names.headless_service,
            services.headless_spec(
                self._selector,
                settings.port,
                metrics=args.metrics_exporter,
                # Where there are Sentinels, each has its exporter too (specs/pod.py).
                sentinel_metrics=args.metrics_exporter and self.leads,
            ),
        )
        serving += [headless, self._service(name, services.client_spec(self._primary, settings.port))]
        if self.group:
            serving += self._group_objects()
        serving.append(
            k8s.policy.v1.PodDisruptionBudget(
                name,
                metadata=self._metadata(name),
                spec=disruption_budget_spec(self._selector, args.block_voluntary_eviction, group=self.group),
                opts=self._child,
            )
        )
        if args.network_policy is not None:
            serving.append(
                k8s.networking.v1.NetworkPolicy(
                    name,
                    metadata=self._metadata(name),
                    spec=network_policy_spec(args.network_policy, self._selector, settings.port),
                    opts=self._child,
                )
            )
        # A hash of what needs a restart rolls the pod when it changes; password rotations and
        # renewed certificates are applied live by the reloader sidecar and roll nothing. The hash
        # reveals nothing of the 190-bit passwords it covers, so it stays readable in previews.
        checksum = pulumi.Output.unsecret(files.apply(lambda rendered: {CONFIG_CHECKSUM: restart_checksum(rendered)}))
        self.statefulset = self._statefulset(headless, checksum, serving)
        if args.external is not None:
            external = args.external
            self._service(
                self._names.external_service,
                services.external_spec(
                    self._primary, settings.port, external.load_balancer_class, external.source_ranges
                ),
                annotations={**external.annotations, EXTERNAL_DNS_HOSTNAME: external.host},
                # After the pods: its await for a load-balancer address (slow, or failing in the
                # incident a promotion answers) must never hold back the StatefulSet's own update.
                depends_on=[self.statefulset],
            )
        if settings.persistence:
            self._marker()
        if settings.persistence and settings.storage.size is not None:
            # Only a size the stack file states: the default follows maxmemory, and lowering
            # maxmemory must not ask Kubernetes to shrink a volume (it refuses, every time).
            for ordinal in range(settings.replicas):
                self._grow_claim(ordinal, int(settings.storage.size))
        self.register_outputs({"host": self.host, "port": self.port, "role": self.role})

    def _group_objects(self) -> list[pulumi.Resource]:
        """A group's read and Sentinel Services, and the label updater's RBAC."""
        args = self._args
        names = self._names
        pods = [names.pod(n) for n in range(args.settings.replicas)]
        account = k8s.core.v1.ServiceAccount(
            names.labeler,
            metadata=self._metadata(names.labeler),
            # Its token is projected into the label updater only (specs/labeler.py).
            automount_service_account_token=False,
            opts=self._child,
        )
        role = k8s.rbac.v1.Role(
            names.labeler, metadata=self._metadata(names.labeler), rules=rbac.role_rules(pods), opts=self._child
        )
        binding = k8s.rbac.v1.RoleBinding(
            names.labeler,
            metadata=self._metadata(names.labeler),
            role_ref=rbac.role_ref(names.labeler),
            subjects=rbac.subjects(names.labeler, args.namespace),
            opts=self._child,
        )
        objects: list[pulumi.Resource] = [
            account,
            role,
            binding,
            self._service(names.read_service, services.client_spec(self._selector, args.settings.port)),
        ]
        if self.leads:
            sentinels = services.sentinel_spec(self._selector, args.failover.sentinel_port)
            objects.append(self._service(names.sentinel_service, sentinels))
        return objects

    def _group_env(self) -> pod_scripts.GroupEnv:
        args = self._args
        return pod_scripts.GroupEnv(
            pods=[self._names.pod(n) for n in range(args.settings.replicas)],
            domain=self._names.member_domain(args.namespace, args.cluster_domain),
            master_name=args.master_name,
            sentinel_port=args.failover.sentinel_port,
            down_after_seconds=int(args.failover.down_after.total_seconds()),
            failover_timeout_seconds=int(args.failover.timeout.total_seconds()),
            follows=self.follows,
            announce_suffix=f"{args.region}.invalid",
            migration=pod_scripts.MigrationLogin(login=args.source.credentials_secret is not None)
            if args.source is not None
            else None,
        )

    def _metadata(
        self, object_name: str, extra_labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None
    ) -> k8s.meta.v1.ObjectMetaArgs:
        return k8s.meta.v1.ObjectMetaArgs(
            name=object_name,
            namespace=self._args.namespace,
            labels={**self._labels, **(extra_labels or {})},
            annotations=annotations,
        )

    def _config_files(self) -> pulumi.Output[dict[str, str]]:
        """valkey.conf, the ACL file and the in-pod passwords, as one secret."""
        args = self._args
        creds = args.credentials
        no_upstream: pulumi.Output[Any] = pulumi.Output.from_input(None)

        def render(values: dict[str, Any]) -> dict[str, str]:
            passwords = acl.Passwords(
                client=tuple(values["client"]),
                replication=tuple(values["replication"]),
                probe=values["probe"],
                reloader=values["reloader"],
                admin=values["admin"],
                metrics=tuple(values["metrics"]) if args.metrics_exporter else (),
                sentinel=values["sentinel"],
                labeler=values["labeler"],
                sentinel_peer=values["sentinel_peer"],
                sentinel_client=values["sentinel_client"],
                sentinel_metrics=values["sentinel_metrics"] if args.metrics_exporter else None,
            )
            return render_files(
                args.settings,
                passwords,
                upstream=values["upstream"],
                ca_bundle=args.tls.ca_bundle if args.tls else None,
                denied_commands=args.denied_commands,
                group=Group(
                    master_name=args.master_name,
                    failover=args.failover,
                    follows=self.follows,
                    source=MigrationSource(args.source.host, args.source.port) if args.source else None,
                )
                if self.group
                else None,
            )

        files = pulumi.Output.all(
            client=creds.client.accepted,
            replication=creds.replication.accepted,
            probe=creds.probe_password,
            reloader=creds.reloader_password,
            admin=creds.admin_password,
            metrics=creds.metrics.accepted,
            upstream=args.upstream if args.upstream is not None else no_upstream,
            sentinel=creds.sentinel_password if creds.sentinel_password is not None else no_upstream,
            labeler=creds.labeler_password if creds.labeler_password is not None else no_upstream,
            sentinel_peer=creds.sentinel_peer_password if creds.sentinel_peer_password is not None else no_upstream,
            sentinel_client=creds.sentinel_client_password
            if creds.sentinel_client_password is not None
            else no_upstream,
            sentinel_metrics=creds.sentinel_metrics_password
            if creds.sentinel_metrics_password is not None
            else no_upstream,
        ).apply(render)
        return pulumi.Output.secret(files)

    def _certificate(self) -> list[pulumi.Resource]:
        """The cert-manager Certificate whose Secret the pod mounts, when cert-manager issues it."""
        args = self._args
        if args.tls is None or args.tls.issuer is None:
            return []
        name = self._names.certificate
        names = certificate.dns_names(self._names.instance, args.namespace, args.cluster_domain, self.external_host)
        return [
            k8s.apiextensions.CustomResource(
                name,
                api_version=certificate.API_VERSION,
                kind="Certificate",
                metadata=self._metadata(name),
                spec=certificate.certificate_spec(self._names.instance, names, args.tls.issuer),
                opts=self._child,
            )
        ]

    def _service(
        self,
        name: str,
        spec: k8s.core.v1.ServiceSpecArgs,
        annotations: dict[str, str] | None = None,
        depends_on: list[pulumi.Resource] | None = None,
    ) -> k8s.core.v1.Service:
        opts = self._child.merge(pulumi.ResourceOptions(depends_on=depends_on)) if depends_on else self._child
        return k8s.core.v1.Service(name, metadata=self._metadata(name, annotations=annotations), spec=spec, opts=opts)

    def _statefulset(
        self, headless: k8s.core.v1.Service, checksum: pulumi.Output[dict[str, str]], serving: list[pulumi.Resource]
    ) -> k8s.apps.v1.StatefulSet:
        args = self._args
        settings = args.settings
        pod = PodSettings(
            image=args.image,
            port=settings.port,
            cpu_request=settings.resources.cpu,
            cpu_limit=settings.resources.cpu_limit,
            memory_bytes=memory_limit_bytes(settings),
            labels=self._labels,
            config_secret=self._names.config_secret,
            tls_secret=args.tls.secret_name(self._names.instance) if args.tls else None,
            persistence=settings.persistence,
            primary=args.upstream is None,
            marker=self._names.marker if settings.persistence else None,
            source_login_secret=args.source.credentials_secret if args.source else None,
            metrics_exporter=args.metrics_exporter,
            # For the scrape (specs/monitoring.py): replicated or not, and the eviction policy.
            pod_labels=scrape_labels(settings.dr, settings.maxmemory_policy) if args.metrics_exporter else None,
            group=GroupSettings(
                env=self._group_env(),
                selector=self._selector,
                node_spread=args.scheduling.node_spread,
                zone_spread=args.scheduling.zone_spread,
                service_account=self._names.labeler,
            )
            if self.group
            else None,
        )
        claim = None
        if settings.persistence:
            claim = data_claim_template(self._labels, storage_bytes(settings), settings.storage.storage_class)
        rollout = f"{rollout_timeout_seconds(replicas=settings.replicas)}s"
        return k8s.apps.v1.StatefulSet(
            self._names.statefulset,
            metadata=self._metadata(self._names.statefulset, role_labels(settings.dr, self.role)),
            spec=statefulset_spec(
                service_name=headless.metadata.apply(lambda m: m["name"]),
                selector=self._selector,
                template=pod_template(pod, checksum),
                claim=claim,
                replicas=settings.replicas,
            ),
            opts=self._child.merge(
                pulumi.ResourceOptions(
                    depends_on=serving,
                    protect=args.protect,
                    ignore_changes=[CLAIM_SIZE_FIELD] if claim is not None else None,
                    # Longer than the longest start the probes allow, so an await never gives up
                    # on a pod still loading its data.
                    custom_timeouts=pulumi.CustomTimeouts(create=rollout, update=rollout),
                )
            ),
        )

    def _marker(self) -> k8s.core.v1.ConfigMap:
        """Created once the StatefulSet's await saw every pod Ready: from then on its pods fence a
        primary that starts on an empty volume (specs/marker.py)."""
        return k8s.core.v1.ConfigMap(
            self._names.marker,
            metadata=self._metadata(self._names.marker),
            data=marker.data(),
            immutable=True,
            opts=self._child.merge(pulumi.ResourceOptions(depends_on=[self.statefulset], protect=self._args.protect)),
        )

    def _grow_claim(self, ordinal: int, size_bytes: int) -> k8s.core.v1.PersistentVolumeClaimPatch:
        """Pod N's claim, kept at ``storage.size``; after the StatefulSet is Ready, so it exists."""
        metadata, spec = claim_size_patch(self._names.claim(ordinal), self._args.namespace, size_bytes)
        return k8s.core.v1.PersistentVolumeClaimPatch(
            self._names.claim_patch_resource(ordinal),
            metadata=metadata,
            spec=spec,
            # Deleting the patch only lets go of the field; the claim and its data stay (a required
            # field cannot be given up, so the provider would refuse a plain delete).
            opts=self._child.merge(pulumi.ResourceOptions(depends_on=[self.statefulset], retain_on_delete=True)),
        )
