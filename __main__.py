"""Valkey on Kubernetes, one region per stack: validate the stack config, build, export."""

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.config_loader import load_stack_config
from components.credentials import Credentials, CredentialsArgs
from components.namespace import Namespace, NamespaceArgs
from components.outputs import stack_outputs
from components.primary_stack import read_upstreams
from components.valkey_server import ExternalEndpoint, ValkeyServer, ValkeyServerArgs


async def main() -> dict[str, Any]:
    # Both checks raise a RunError naming the bad keys before any Kubernetes object is declared.
    cfg = load_stack_config()
    upstreams = {}
    if cfg.role == "replica" and cfg.primary_stack:
        # Only DR instances follow the primary region; local (dr: false) ones are primaries here.
        replicated = {name: inst for name, inst in cfg.instances.items() if inst.dr}
        if replicated:
            upstreams = await read_upstreams(cfg.primary_stack, replicated)

    provider = k8s.Provider(
        "kubernetes",
        kubeconfig=pulumi.Output.secret(cfg.kubeconfig) if cfg.kubeconfig else None,
        context=cfg.kube_context,
    )
    opts = pulumi.ResourceOptions(provider=provider)
    namespace = Namespace(cfg.namespace, NamespaceArgs(name=cfg.namespace, create=cfg.create_namespace), opts)

    servers: dict[str, ValkeyServer] = {}
    credentials: dict[str, Credentials] = {}
    for name, inst in cfg.instances.items():
        credentials[name] = Credentials(
            name, CredentialsArgs(instance=name, namespace=namespace.name, secret_name=f"{name}-credentials"), opts
        )
        external = None
        if inst.dr and name not in upstreams:
            external = ExternalEndpoint(
                host=inst.external_host or f"{name}.{cfg.region}.{cfg.external_domain}",
                annotations=cfg.external_service.annotations,
                load_balancer_class=cfg.external_service.load_balancer_class,
                source_ranges=cfg.external_service.load_balancer_source_ranges,
            )
        servers[name] = ValkeyServer(
            name,
            ValkeyServerArgs(
                namespace=namespace.name,
                settings=inst,
                image=cfg.image,
                credentials=credentials[name],
                upstream=upstreams.get(name),
                external=external,
                cluster_domain=cfg.cluster_domain,
                block_voluntary_eviction=cfg.block_voluntary_eviction,
            ),
            opts,
        )
    return stack_outputs(cfg, servers, credentials)


pulumi.run(main)
