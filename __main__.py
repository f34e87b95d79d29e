"""Valkey on Kubernetes, one region per stack: validate the stack config, build, export."""

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.config.loader import load_stack_config
from components.config.models import following_instances, sentinel_master_name, tls_enabled
from components.credentials import Credentials
from components.migration import KeyspaceCopy
from components.monitoring import Monitoring
from components.namespace import Namespace, NamespaceArgs
from components.specs.monitoring import monitoring_args
from components.stack.instances import credentials_args, keyspace_copy_args, server_args
from components.stack.outputs import stack_outputs
from components.stack.primary import PrimaryRegion, read_primary
from components.valkey_server import ValkeyServer


async def main() -> dict[str, Any]:
    # Both checks raise a RunError naming the bad keys before any Kubernetes object is declared.
    cfg = load_stack_config()
    primary = PrimaryRegion(upstreams={}, ca_bundle=None)
    replicated = following_instances(cfg)
    if cfg.primary_stack and replicated:
        names = {name: sentinel_master_name(cfg, name) for name in replicated}
        primary = await read_primary(cfg.primary_stack, replicated, tls_enabled(cfg), names)

    provider = k8s.Provider(
        "kubernetes",
        kubeconfig=pulumi.Output.secret(cfg.kubeconfig) if cfg.kubeconfig else None,
        context=cfg.kube_context,
        # Without it, a kubeconfig pointing at a new API endpoint of the same cluster replaces the
        # provider and so every object it manages (tests/test_plan.py). One stack, one cluster.
        cluster_identifier=f"{pulumi.get_project()}/{pulumi.get_stack()}",
        # A changed Secret (rotation, a new valkey.conf) is updated in place: by default the
        # provider deletes and recreates it, leaving pods that start meanwhile without it.
        enable_secret_mutable=True,
    )
    namespace = Namespace(
        cfg.namespace,
        NamespaceArgs(name=cfg.namespace, create=cfg.create_namespace),
        pulumi.ResourceOptions(provider=provider, protect=cfg.protect),
    )
    opts = pulumi.ResourceOptions(provider=provider, depends_on=[namespace])

    servers: dict[str, ValkeyServer] = {}
    credentials: dict[str, Credentials] = {}
    for name in cfg.instances:
        credentials[name] = Credentials(name, credentials_args(cfg, name), opts)
        servers[name] = ValkeyServer(name, server_args(cfg, name, credentials[name], primary), opts)
        copy = keyspace_copy_args(cfg, name, servers[name])
        if copy is not None:
            KeyspaceCopy(name, copy, opts)
    if cfg.monitoring.enabled and cfg.monitoring.prometheus_operator:
        # One ServiceMonitor and one PrometheusRule per stack: the rules aggregate over instances.
        Monitoring("valkey", monitoring_args(cfg), opts)
    return stack_outputs(cfg, servers, credentials)


pulumi.run(main)
