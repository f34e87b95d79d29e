"""The primary region's stack outputs, read by the DR region through a StackReference."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi

from .config import Instance
from .outputs import CA_BUNDLE, INSTANCES, REPLICATION_CREDENTIALS
from .valkey_conf import Upstream


@dataclass
class PrimaryRegion:
    upstreams: dict[str, pulumi.Output[Upstream]]
    """Per replicated instance: the primary's external endpoint and the replication login (secret)."""
    ca_bundle: str | None
    """PEM of the CA that signs the primary's certificates, to verify them; None without TLS."""


async def read_primary(stack_name: str, replicas: dict[str, Instance], tls: bool) -> PrimaryRegion:
    """Awaited before any Kubernetes resource is declared, so a replica stack that does not match
    its primary stops with one message and creates nothing."""
    reference = pulumi.StackReference("primary-stack", stack_name=stack_name)
    instances = await reference.get_output_details(INSTANCES)
    credentials = await reference.get_output_details(REPLICATION_CREDENTIALS)
    ca_bundle = await reference.get_output_details(CA_BUNDLE)
    if instances.value is None or credentials.secret_value is None:
        raise pulumi.RunError(
            f"valkey:primaryStack: stack {stack_name} exports no {INSTANCES!r} and secret "
            f"{REPLICATION_CREDENTIALS!r}; run `pulumi up` on it first"
        )
    upstreams = _check(stack_name, replicas, instances.value, credentials.secret_value, tls)
    return PrimaryRegion(
        upstreams={name: pulumi.Output.secret(upstream) for name, upstream in upstreams.items()},
        ca_bundle=ca_bundle.value,
    )


def _check(
    stack_name: str,
    replicas: dict[str, Instance],
    instances: dict[str, Any],
    credentials: dict[str, Any],
    tls: bool,
) -> dict[str, Upstream]:
    problems = []
    upstreams = {}
    for name, settings in replicas.items():
        primary = instances.get(name)
        if primary is None or name not in credentials:
            problems.append(
                f"valkey:instances.{name}: dr is true here, but stack {stack_name} exports DR instances "
                f"{sorted(credentials)}; set dr: false here or dr: true there"
            )
        elif not primary.get("externalHost"):
            problems.append(f"valkey:instances.{name}: stack {stack_name} exports no externalHost for it")
        elif int(primary["port"]) != settings.port:
            problems.append(
                f"valkey:instances.{name}.port: given {settings.port}; "
                f"accepted: the primary's port {int(primary['port'])}"
            )
        elif primary.get("tls") and not tls:
            problems.append(
                f"valkey:tls.enabled: given false; accepted: true, stack {stack_name} serves {name} over TLS only"
            )
        elif settings.maxmemory < primary["maxmemoryBytes"]:
            problems.append(
                f"valkey:instances.{name}.maxmemory: given {int(settings.maxmemory)} bytes; accepted: at least "
                f"the primary's {int(primary['maxmemoryBytes'])} bytes (a replica does not evict; it would run out)"
            )
        else:
            upstreams[name] = Upstream(
                host=primary["externalHost"],
                port=int(primary["port"]),  # numbers come back from stack state as floats
                username=credentials[name]["username"],
                password=credentials[name]["password"],
            )
    if problems:
        raise pulumi.RunError(
            f"This replica stack does not match its primary stack {stack_name}:\n  " + "\n  ".join(problems)
        )
    return upstreams
