"""Generated passwords of one Valkey instance in one region, and the Secret applications mount."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from .labels import instance_labels

PASSWORD_LENGTH = 32
"""Alphanumeric only (about 190 bits): safe in valkey.conf, URLs and shell without quoting."""


@dataclass
class CredentialsArgs:
    instance: str
    """Valkey instance the credentials belong to (labels only)."""
    namespace: pulumi.Input[str]
    """Namespace of the application Secret."""
    secret_name: str
    """Name of the Secret applications mount, e.g. valkey-credentials."""
    secret_key: str = "password"
    """Key of the client password in that Secret."""


class Credentials(pulumi.ComponentResource):
    """Three passwords, each a Pulumi secret: the client password (Valkey's default user, what
    applications use), the replication user's, and the probe user's. Every region generates its
    own; only the replication password is shared, through the primary's stack outputs."""

    client_password: pulumi.Output[str]
    replication_password: pulumi.Output[str]
    probe_password: pulumi.Output[str]
    secret_name: pulumi.Output[str]
    secret_key: str

    def __init__(self, resource_name: str, args: CredentialsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("valkey:index:Credentials", resource_name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        def password(purpose: str) -> pulumi.Output[str]:
            generated = random.RandomPassword(
                f"{resource_name}-{purpose}", length=PASSWORD_LENGTH, special=False, opts=child
            )
            # RandomPassword marks `result` secret itself; saying it again keeps it secret for
            # anything that reads this attribute, whatever the provider version does.
            return pulumi.Output.secret(generated.result)

        self.client_password = password("client")
        self.replication_password = password("replication")
        self.probe_password = password("probe")
        self.secret_key = args.secret_key

        secret = k8s.core.v1.Secret(
            f"{resource_name}-client",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=args.secret_name,
                namespace=args.namespace,
                labels=instance_labels(args.instance, "credentials"),
            ),
            type="Opaque",
            string_data={args.secret_key: self.client_password},
            opts=child,
        )
        self.secret_name = secret.metadata.apply(lambda m: m["name"])
        self.register_outputs({"secret_name": self.secret_name})
