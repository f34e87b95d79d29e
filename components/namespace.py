"""A namespace that enforces the Pod Security Standards "restricted" profile."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from .specs.labels import PSS_LABELS


@dataclass
class NamespaceArgs:
    name: str
    """Namespace name."""
    create: bool = True
    """Create it; when false the namespace must exist and its labels are the cluster owner's."""


class Namespace(pulumi.ComponentResource):
    """The namespace Valkey runs in. ``name`` resolves only once the namespace exists, so children
    that use it wait for it."""

    name: pulumi.Output[str]

    def __init__(self, resource_name: str, args: NamespaceArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("valkey:index:Namespace", resource_name, None, opts)
        if args.create:
            namespace = k8s.core.v1.Namespace(
                resource_name,
                metadata=k8s.meta.v1.ObjectMetaArgs(name=args.name, labels=PSS_LABELS),
                opts=pulumi.ResourceOptions(parent=self),
            )
            self.name = namespace.metadata.apply(lambda m: m["name"])
        else:
            self.name = pulumi.Output.from_input(args.name)
        self.register_outputs({"name": self.name})
