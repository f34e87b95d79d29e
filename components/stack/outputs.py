"""The stack outputs contract: what other platform stacks (and the DR region) read from a stack.

Names here are a public interface, documented in docs/outputs.md ("Outputs contract"). Renaming one
breaks every StackReference that reads it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import pulumi

from ..config.models import StackConfig, tls_enabled
from ..credentials import SENTINEL_SECRET_KEY
from ..render.acl import REPLICATION_USER
from ..render.sentinel_conf import CLIENT_USER as SENTINEL_CLIENT_USER

INSTANCES = "instances"
REPLICATION_CREDENTIALS = "replicationCredentials"
CA_BUNDLE = "caBundle"


class Served(Protocol):
    """What a ValkeyServer tells about itself."""

    host: str
    port: int
    external_host: str | None
    role: str
    tls: bool
    replicas: int
    read_host: str | None
    sentinel_host: str | None
    sentinel_port: int | None
    master_name: str | None


class Login(Protocol):
    """What a Credentials component holds for applications and the other region."""

    secret_name: pulumi.Output[str]
    secret_key: str
    secret_namespaces: list[str]

    @property
    def replication_password(self) -> pulumi.Output[str]: ...


def stack_outputs(cfg: StackConfig, servers: Mapping[str, Served], credentials: Mapping[str, Login]) -> dict[str, Any]:
    """Plain outputs, plus the replication credentials as one secret map (a map holding one
    secret is secret as a whole, so they are kept apart from the readable per-instance map)."""
    instances = {
        name: {
            "host": servers[name].host,
            "port": servers[name].port,
            "externalHost": servers[name].external_host,
            "role": servers[name].role,
            "tls": servers[name].tls,
            "replicas": servers[name].replicas,
            "readHost": servers[name].read_host,
            "sentinelHost": servers[name].sentinel_host,
            "sentinelPort": servers[name].sentinel_port,
            "sentinelMasterName": servers[name].master_name,
            "sentinelUsername": SENTINEL_CLIENT_USER if servers[name].master_name else None,
            "sentinelSecretKey": SENTINEL_SECRET_KEY if servers[name].master_name else None,
            "dr": inst.dr,
            "secretName": credentials[name].secret_name,
            "secretKey": credentials[name].secret_key,
            "secretNamespaces": credentials[name].secret_namespaces,
            "maxmemoryBytes": int(inst.maxmemory),
            "maxmemoryPolicy": inst.maxmemory_policy,
            "ttlSeconds": int(inst.ttl.total_seconds()) if inst.ttl else None,
        }
        for name, inst in cfg.instances.items()
    }
    replication = {
        name: {"username": REPLICATION_USER, "password": credentials[name].replication_password}
        for name, inst in cfg.instances.items()
        if inst.dr
    }
    return {
        "region": cfg.region,
        "role": cfg.role,
        "namespace": cfg.namespace,
        # Not secret: clients and the other region's replicas verify certificates against it.
        CA_BUNDLE: cfg.tls.ca_bundle if tls_enabled(cfg) else None,
        INSTANCES: instances,
        REPLICATION_CREDENTIALS: pulumi.Output.secret(replication),
    }
