"""Valkey on Kubernetes, one region per stack: validate the stack config, build, export."""

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.config.loader import load_stack_config
from components.config.models import METRICS_PORT, external_host, tls_enabled
from components.credentials import Credentials, CredentialsArgs
from components.monitoring import Monitoring
from components.namespace import Namespace, NamespaceArgs
from components.specs.certificate import TlsSource
from components.specs.monitoring import monitoring_args
from components.specs.network_policy import NetworkPolicyRules
from components.stack.outputs import stack_outputs
from components.stack.primary import PrimaryRegion, read_primary
from components.valkey_server import ExternalEndpoint, ValkeyServer, ValkeyServerArgs


async def main() -> dict[str, Any]:
    # Both checks raise a RunError naming the bad keys before any Kubernetes object is declared.
    cfg = load_stack_config()
    tls = tls_enabled(cfg)
    primary = PrimaryRegion(upstreams={}, ca_bundle=None)
    # Only DR instances follow the primary region; local (dr: false) ones are primaries here.
    replicated = {name: inst for name, inst in cfg.instances.items() if inst.dr}
    if cfg.role == "replica" and cfg.primary_stack and replicated:
        primary = await read_primary(cfg.primary_stack, replicated, tls)

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
    for name, inst in cfg.instances.items():
        credentials[name] = Credentials(
            name,
            CredentialsArgs(
                instance=name,
                namespace=cfg.namespace,
                rotation=cfg.password_rotation,
                # Applications admitted by the NetworkPolicy can mount the password in their namespace.
                client_namespaces=[c.namespace for c in cfg.network_policy.clients],
            ),
            opts,
        )
        upstream = primary.upstreams.get(name)
        external = None
        if inst.dr and upstream is None:
            external = ExternalEndpoint(
                host=external_host(cfg, name) or "",
                annotations=cfg.external_service.annotations,
                load_balancer_class=cfg.external_service.load_balancer_class,
                source_ranges=cfg.peer_cidrs,
            )
        tls_source = None
        if tls and cfg.tls.ca_bundle:
            # A replica trusts its own CA (probes) and the primary region's (replication).
            trusted = cfg.tls.ca_bundle
            if upstream is not None and primary.ca_bundle and primary.ca_bundle not in trusted:
                trusted += primary.ca_bundle
            tls_source = TlsSource(ca_bundle=trusted, issuer=cfg.tls.issuer, existing_secret=cfg.tls.existing_secret)
        network_policy = None
        if cfg.network_policy.enabled:
            network_policy = NetworkPolicyRules(
                clients=cfg.network_policy.clients,
                peer_cidrs=cfg.peer_cidrs,
                monitoring_namespace=cfg.network_policy.monitoring_namespace,
                accepts_replicas=external is not None,
                upstream_port=inst.port if upstream is not None else None,
                metrics_port=METRICS_PORT if cfg.monitoring.enabled else None,
            )
        servers[name] = ValkeyServer(
            name,
            ValkeyServerArgs(
                namespace=cfg.namespace,
                settings=inst,
                image=cfg.image,
                credentials=credentials[name],
                upstream=upstream,
                external=external,
                tls=tls_source,
                network_policy=network_policy,
                denied_commands=cfg.denied_commands,
                cluster_domain=cfg.cluster_domain,
                block_voluntary_eviction=cfg.block_voluntary_eviction,
                protect=cfg.protect,
                metrics_exporter=cfg.monitoring.enabled,
            ),
            opts,
        )
    if cfg.monitoring.enabled and cfg.monitoring.prometheus_operator:
        # One ServiceMonitor and one PrometheusRule per stack: the rules aggregate over instances.
        Monitoring("valkey", monitoring_args(cfg), opts)
    return stack_outputs(cfg, dict(servers), dict(credentials))


pulumi.run(main)
