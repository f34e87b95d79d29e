"""The stack outputs contract: what other platform stacks (and the DR region) read from a stack.

Names here are a public interface, documented in docs/outputs.md ("Outputs contract"). Renaming one
breaks every StackReference that reads it.
"""

from __future__ import annotations

from typing import Any

import pulumi

from .config import StackConfig, tls_enabled
from .credentials import Credentials
from .valkey_conf import REPLICATION_USER
from .valkey_server import ValkeyServer

INSTANCES = "instances"
REPLICATION_CREDENTIALS = "replicationCredentials"
CA_BUNDLE = "caBundle"


def stack_outputs(
    cfg: StackConfig, servers: dict[str, ValkeyServer], credentials: dict[str, Credentials]
) -> dict[str, Any]:
    """Plain outputs, plus the replication credentials as one secret map (a map holding one
    secret is secret as a whole, so they are kept apart from the readable per-instance map)."""
    instances = {
        name: {
            "host": servers[name].host,
            "port": servers[name].port,
            "externalHost": servers[name].external_host,
            "role": servers[name].role,
            "tls": servers[name].tls,
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
        name: {"username": REPLICATION_USER, "password": credentials[name].replication.current}
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
