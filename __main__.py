"""Valkey on Kubernetes, one region per stack: validate the stack config, build, export."""

import pulumi
import pulumi_kubernetes as k8s

from components.config_loader import load_stack_config
from components.credentials import Credentials, CredentialsArgs
from components.namespace import Namespace, NamespaceArgs
from components.outputs import stack_outputs
from components.primary_stack import PrimaryStack
from components.valkey_server import ExternalEndpoint, ValkeyServer, ValkeyServerArgs

cfg = load_stack_config()  # raises a RunError naming every bad key; nothing is created before

provider = k8s.Provider(
    "kubernetes",
    kubeconfig=pulumi.Output.secret(cfg.kubeconfig) if cfg.kubeconfig else None,
    context=cfg.kube_context,
)
opts = pulumi.ResourceOptions(provider=provider)
namespace = Namespace(cfg.namespace, NamespaceArgs(name=cfg.namespace, create=cfg.create_namespace), opts)

# Only a replica stack reads the primary's outputs; local (dr: false) instances never do.
replicated = [name for name, inst in cfg.instances.items() if inst.dr]
primary = PrimaryStack(cfg.primary_stack) if cfg.role == "replica" and cfg.primary_stack and replicated else None

servers: dict[str, ValkeyServer] = {}
credentials: dict[str, Credentials] = {}
for name, inst in cfg.instances.items():
    credentials[name] = Credentials(
        name, CredentialsArgs(instance=name, namespace=namespace.name, secret_name=f"{name}-credentials"), opts
    )
    is_replica = primary is not None and inst.dr
    external = None
    if inst.dr and not is_replica:
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
            upstream=primary.upstream(name, inst) if is_replica and primary else None,
            external=external,
            cluster_domain=cfg.cluster_domain,
            block_voluntary_eviction=cfg.block_voluntary_eviction,
        ),
        opts,
    )

for key, value in stack_outputs(cfg, servers, credentials).items():
    pulumi.export(key, value)
