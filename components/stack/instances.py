"""What each instance of a stack is in this region, from the stack config and the primary
region's outputs: primary or replica, its external endpoint, what its TLS trusts, what its
network policy admits. ``__main__.py`` only creates the components these arguments describe."""

from __future__ import annotations

from ..config.migration import MigrationSource
from ..config.models import (
    METRICS_PORT,
    StackConfig,
    external_host,
    replication_migrations,
    sentinel_master_name,
    tls_enabled,
)
from ..credentials import Credentials, CredentialsArgs
from ..migration import KeyspaceCopyArgs
from ..object_names import InstanceNames
from ..specs import migration
from ..specs.certificate import TlsSource
from ..specs.migration import CopyJob
from ..specs.network_policy import NetworkPolicyRules
from ..valkey_server import ExternalEndpoint, ReplicationSource, ValkeyServer, ValkeyServerArgs
from .primary import PrimaryRegion


def credentials_args(cfg: StackConfig, name: str) -> CredentialsArgs:
    return CredentialsArgs(
        instance=name,
        namespace=cfg.namespace,
        rotation=cfg.password_rotation,
        # Applications admitted by the NetworkPolicy can mount the password in their namespace.
        client_namespaces=[c.namespace for c in cfg.network_policy.clients],
        group=cfg.instances[name].replicas > 1,
    )


def server_args(cfg: StackConfig, name: str, credentials: Credentials, primary: PrimaryRegion) -> ValkeyServerArgs:
    """Only DR instances follow the primary region (``primary.upstreams``); local (dr: false)
    ones are primaries in every region, and a DR primary is published for the other region."""
    inst = cfg.instances[name]
    upstream = primary.upstreams.get(name)
    external = None
    if inst.dr and upstream is None:
        external = ExternalEndpoint(
            host=external_host(cfg, name) or "",
            annotations=cfg.external_service.annotations,
            load_balancer_class=cfg.external_service.load_balancer_class,
            source_ranges=cfg.peer_cidrs,
        )
    return ValkeyServerArgs(
        namespace=cfg.namespace,
        settings=inst,
        image=cfg.image,
        credentials=credentials,
        upstream=upstream,
        source=replication_source(cfg, name),
        external=external,
        tls=_tls_source(cfg, replica=upstream is not None, primary=primary),
        network_policy=_network_policy(cfg, name, accepts_replicas=external is not None, replica=upstream is not None),
        denied_commands=cfg.denied_commands,
        cluster_domain=cfg.cluster_domain,
        block_voluntary_eviction=cfg.block_voluntary_eviction,
        protect=cfg.protect,
        metrics_exporter=cfg.monitoring.enabled,
        failover=cfg.failover,
        scheduling=cfg.scheduling,
        region=cfg.region or "",
        master_name=sentinel_master_name(cfg, name),
    )


def _tls_source(cfg: StackConfig, replica: bool, primary: PrimaryRegion) -> TlsSource | None:
    if not tls_enabled(cfg) or not cfg.tls.ca_bundle:
        return None
    # A replica trusts its own CA (probes) and the primary region's (replication).
    trusted = cfg.tls.ca_bundle
    if replica and primary.ca_bundle and primary.ca_bundle not in trusted:
        trusted += primary.ca_bundle
    return TlsSource(ca_bundle=trusted, issuer=cfg.tls.issuer, existing_secret=cfg.tls.existing_secret)


def _network_policy(cfg: StackConfig, name: str, accepts_replicas: bool, replica: bool) -> NetworkPolicyRules | None:
    if not cfg.network_policy.enabled:
        return None
    return NetworkPolicyRules(
        clients=cfg.network_policy.clients,
        peer_cidrs=cfg.peer_cidrs,
        monitoring_namespace=cfg.network_policy.monitoring_namespace,
        accepts_replicas=accepts_replicas,
        upstream_port=cfg.instances[name].port if replica else None,
        metrics_port=METRICS_PORT if cfg.monitoring.enabled else None,
        group=cfg.instances[name].replicas > 1,
        # A DR group of a replica stack follows the other region: no Sentinels until promoted.
        sentinel_port=cfg.failover.sentinel_port if cfg.instances[name].replicas > 1 and not replica else None,
        copy_job=migration.pod_labels(name) if keyspace_copies(cfg, name) else None,
        source=(source.cidrs, source.port) if (source := _replicated_source(cfg, name)) else None,
    )


def _replicated_source(cfg: StackConfig, name: str) -> MigrationSource | None:
    migration_settings = cfg.instances[name].migration
    if migration_settings is None or name not in replication_migrations(cfg):
        return None
    return migration_settings.source


def replication_source(cfg: StackConfig, name: str) -> ReplicationSource | None:
    """The source an instance's group replicates until the cut-over (migration method replication)."""
    source = _replicated_source(cfg, name)
    if source is None:
        return None
    return ReplicationSource(host=source.host, port=source.port, credentials_secret=source.credentials_secret)


def keyspace_copies(cfg: StackConfig, name: str) -> bool:
    """The instance receives a keyspace copy (its migration method is copy)."""
    migration_settings = cfg.instances[name].migration
    return migration_settings is not None and migration_settings.method == "copy"


def keyspace_copy_args(cfg: StackConfig, name: str, server: ValkeyServer) -> KeyspaceCopyArgs | None:
    """The keyspace copy Job of an instance whose migration method is copy; None for any other."""
    settings = cfg.instances[name].migration
    if settings is None or not keyspace_copies(cfg, name):
        return None
    names = InstanceNames(name)
    return KeyspaceCopyArgs(
        namespace=cfg.namespace,
        job=CopyJob(
            instance=name,
            migration=settings,
            target_host=server.host,
            target_port=server.port,
            target_tls=server.tls,
            admin_secret=names.admin_secret,
            config_secret=names.config_secret,
        ),
        region=cfg.region or "",
        service_monitor=cfg.monitoring.enabled and cfg.monitoring.prometheus_operator,
        monitoring_labels=cfg.monitoring.labels,
        scrape_interval_seconds=int(cfg.monitoring.scrape_interval.total_seconds()),
        # Once the instance is Ready: the copy writes into its primary.
        after=[server.statefulset],
    )
