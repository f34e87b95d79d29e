"""Generated passwords of one Valkey instance in one region, and the Secrets people and
applications read them from."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from .config.security import PasswordRotation, Rotation
from .object_names import InstanceNames
from .render.acl import ADMIN_USER
from .specs.labels import instance_labels

SENTINEL_SECRET_KEY = "sentinel-password"
"""A group's client Secret key with the Sentinels' application password."""
PASSWORD_LENGTH = 32
"""Alphanumeric only (about 190 bits): safe in valkey.conf, URLs and shell without quoting."""


@dataclass
class CredentialsArgs:
    instance: str
    """Valkey instance the credentials belong to (labels only)."""
    namespace: str
    """Namespace of the Secrets."""
    secret_key: str = "password"
    """Key of the client password in that Secret."""
    rotation: PasswordRotation = field(default_factory=PasswordRotation)
    """Generation of each rotating password, and whether the previous one is still accepted."""
    client_namespaces: list[str] = field(default_factory=list)
    """Further namespaces that get a copy of the client Secret: a Pod can only mount a Secret of
    its own namespace."""
    group: bool = False
    """A Sentinel group (replicas > 1): also the Sentinels' passwords and the label updater's."""


@dataclass
class RotatingPassword:
    current: pulumi.Output[str]
    """What clients should use now."""
    accepted: pulumi.Output[list[str]]
    """What the server accepts: the current password, and the previous one during a rotation."""


class Credentials(pulumi.ComponentResource):
    """The passwords of one instance, each a Pulumi secret. Every region generates its own; only
    the replication password is shared, through the primary's stack outputs.

    A rotating password of generation N is the RandomPassword ``<name>-<user>`` (N = 1) or
    ``<name>-<user>-g<N>``. Raising N creates a new one; with ``acceptPrevious`` the one of
    generation N-1 stays declared and accepted, and is deleted once ``acceptPrevious`` goes false.
    """

    client: RotatingPassword
    replication: RotatingPassword
    metrics: RotatingPassword
    """The metrics exporter's user."""
    probe_password: pulumi.Output[str]
    reloader_password: pulumi.Output[str]
    admin_password: pulumi.Output[str]
    sentinel_password: pulumi.Output[str] | None
    """The nodes' user the Sentinels log in as; a group's only."""
    sentinel_peer_password: pulumi.Output[str] | None
    """The Sentinels' peer user, for each other and the pod's scripts; a group's only."""
    sentinel_client_password: pulumi.Output[str] | None
    """The Sentinels' application user, in the client Secret; a group's only."""
    sentinel_metrics_password: pulumi.Output[str] | None
    """The Sentinels' exporter's user; a group's only (used while monitoring is on)."""
    labeler_password: pulumi.Output[str] | None
    """The label updater's user; a group's only."""
    secret_name: pulumi.Output[str]
    secret_key: str
    secret_namespaces: list[str]
    """Namespaces holding the client Secret: the instance's own, then the client namespaces."""
    admin_secret_name: pulumi.Output[str]
    secrets: list[k8s.core.v1.Secret]
    """Every Kubernetes Secret here: the pod's StatefulSet depends on them."""

    @property
    def replication_password(self) -> pulumi.Output[str]:
        """What the other region's replicas log in with (exported as a secret)."""
        return self.replication.current

    def __init__(self, resource_name: str, args: CredentialsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("valkey:index:Credentials", resource_name, None, opts)
        # Named Secrets: only a delete-before-replace can ever replace one.
        child = pulumi.ResourceOptions(parent=self, delete_before_replace=True)
        names = InstanceNames(args.instance)
        self.secrets = []

        def password(name: str) -> pulumi.Output[str]:
            generated = random.RandomPassword(
                name, length=PASSWORD_LENGTH, special=False, opts=pulumi.ResourceOptions(parent=self)
            )
            # RandomPassword marks `result` secret itself; saying it again keeps it secret for
            # anything that reads this attribute, whatever the provider version does.
            return pulumi.Output.secret(generated.result)

        def rotating(user: str, rotation: Rotation) -> RotatingPassword:
            def generation(n: int) -> pulumi.Output[str]:
                return password(names.password(user, n))

            current = generation(rotation.generation)
            accepted = [current]
            if rotation.accept_previous and rotation.generation > 1:
                accepted.append(generation(rotation.generation - 1))
            return RotatingPassword(current, pulumi.Output.all(*accepted))

        self.client = rotating("client", args.rotation.client)
        self.replication = rotating("replication", args.rotation.replication)
        self.metrics = rotating("metrics", args.rotation.metrics)
        self.probe_password = password(names.password("probe"))
        self.reloader_password = password(names.password("reloader"))
        self.admin_password = password(names.password("admin"))
        self.sentinel_password = password(names.password("sentinel")) if args.group else None
        self.sentinel_peer_password = password(names.password("sentinel-peer")) if args.group else None
        self.sentinel_client_password = password(names.password("sentinel-client")) if args.group else None
        self.sentinel_metrics_password = password(names.password("sentinel-metrics")) if args.group else None
        self.labeler_password = password(names.password("labeler")) if args.group else None
        self.secret_key = args.secret_key

        def secret(
            name: str, resource: str, component: str, data: dict[str, pulumi.Input[str]], namespace: str
        ) -> pulumi.Output[str]:
            created = k8s.core.v1.Secret(
                resource,
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=name, namespace=namespace, labels=instance_labels(args.instance, component)
                ),
                type="Opaque",
                string_data=data,
                opts=child,
            )
            self.secrets.append(created)
            return created.metadata.apply(lambda m: m["name"])

        client_data: dict[str, pulumi.Input[str]] = {args.secret_key: self.client.current}
        if self.sentinel_client_password is not None:
            # Sentinel-aware applications log in to a group's Sentinels as user "client" with it.
            client_data[SENTINEL_SECRET_KEY] = self.sentinel_client_password
        self.secret_name = secret(
            names.client_secret, names.client_secret_resource, "credentials", client_data, args.namespace
        )
        self.secret_namespaces = [args.namespace]
        for namespace in args.client_namespaces:
            if namespace not in self.secret_namespaces:
                copy = names.client_secret_copy_resource(namespace)
                secret(names.client_secret, copy, "credentials", client_data, namespace)
                self.secret_namespaces.append(namespace)
        # For operators (promotion, break-glass): read with kubectl; mounted only into a configured
        # keyspace copy's Job (specs/migration.py), which writes the migrated keys as admin.
        self.admin_secret_name = secret(
            names.admin_secret,
            names.admin_secret_resource,
            "admin-credentials",
            {"username": ADMIN_USER, "password": self.admin_password},
            args.namespace,
        )
        self.register_outputs({"secret_name": self.secret_name, "admin_secret_name": self.admin_secret_name})
