"""Rules between stack config fields, each reported against the one key a user would change."""

from __future__ import annotations

from pydantic import ByteSize

from ..object_names import EXTERNAL_DNS_HOSTNAME, InstanceNames
from ..sizing import backlog_bytes, largest_server_maxmemory, memory_limit_bytes, server_maxmemory_bytes
from .models import (
    MAX_BACKLOG,
    METRICS_PORT,
    SENTINEL_METRICS_PORT,
    StackConfig,
    external_host,
    following_instances,
    tls_enabled,
)
from .names import DNS_SUBDOMAIN_MAX
from .problems import Described, Problem, described_size
from .types import cpu_millis, human

ANNOTATIONS_MAX = 256 * 1024


def cross_checks(cfg: StackConfig, stack: str) -> list[Problem]:
    """Rules between fields, each reported against the key a user would change, once per key."""
    first: dict[str, Problem] = {}
    for problem in _cross_checks(cfg, stack):
        first.setdefault(problem.key, problem)
    return list(first.values())


def _cross_checks(cfg: StackConfig, stack: str) -> list[Problem]:
    problems: list[Problem] = []
    if cfg.role == "replica" and cfg.primary_stack is None:
        problems.append(
            Problem(
                "primaryStack",
                None,
                "required when role is replica: the primary's stack, e.g. organization/valkey/region1",
            )
        )
    if cfg.role == "primary" and cfg.primary_stack is not None:
        problems.append(
            Problem(
                "primaryStack",
                cfg.primary_stack,
                "only with role replica; remove it on a primary stack (after a promotion too)",
            )
        )
    # ``stack`` is fully qualified where the engine says which organization this is; else compare names.
    this = cfg.primary_stack if "/" in stack else (cfg.primary_stack or "").rsplit("/", 1)[-1]
    if cfg.primary_stack is not None and this == stack:
        problems.append(Problem("primaryStack", cfg.primary_stack, f"another stack than this one ({stack})"))
    needs_external = [n for n, i in cfg.instances.items() if i.dr and i.external_host is None]
    if needs_external and cfg.external_domain is None:
        problems.append(
            Problem(
                "externalDomain",
                None,
                "a domain such as example.com, needed for the external names of DR instances "
                f"({', '.join(sorted(needs_external))}), or set instances.<name>.externalHost on each",
            )
        )
    problems += _security_checks(cfg)
    problems += _group_checks(cfg)
    problems += _name_checks(cfg)
    problems += _monitoring_checks(cfg)
    problems += _migration_checks(cfg)
    for name, inst in cfg.instances.items():
        key = f"instances.{name}"
        if inst.dr and not inst.persistence:
            problems.append(
                Problem(
                    f"{key}.persistence",
                    False,
                    "true while dr is true: a DR primary that restarts empty would wipe its replica too",
                )
            )
        if inst.external_host is not None and not inst.dr:
            problems.append(Problem(f"{key}.externalHost", inst.external_host, "only on instances with dr: true"))
        limit = memory_limit_bytes(inst)
        server = server_maxmemory_bytes(inst)
        if inst.resources.memory is not None and server > largest_server_maxmemory(limit):
            backlog = backlog_bytes(inst)
            problems.append(
                Problem(
                    f"{key}.maxmemory",
                    described_size(inst.maxmemory),
                    f"at most {ByteSize(largest_server_maxmemory(limit) - backlog).human_readable()}: "
                    f"maxmemory plus the {ByteSize(backlog).human_readable()} replication backlog (Valkey "
                    f"counts it in maxmemory) may use 80% of the {ByteSize(limit).human_readable()} memory "
                    "limit (resources.memory)",
                )
            )
        if inst.storage.size is not None and inst.storage.size < inst.maxmemory:
            problems.append(
                Problem(
                    f"{key}.storage.size",
                    described_size(inst.storage.size),
                    f"at least maxmemory ({inst.maxmemory.human_readable()}); 3x is recommended for AOF rewrites",
                )
            )
        if backlog_bytes(inst) > MAX_BACKLOG:
            problems.append(
                Problem(
                    f"{key}.replication.outageTolerance",
                    inst.replication.outage_tolerance.total_seconds(),
                    f"a shorter outage or a lower writeRate: the backlog, writeRate x (outageTolerance + 5s), "
                    f"would be {human(backlog_bytes(inst))}, more than {human(MAX_BACKLOG)}",
                )
            )
        if cfg.monitoring.enabled and inst.port == METRICS_PORT:
            problems.append(
                Problem(f"{key}.port", inst.port, f"a port other than {METRICS_PORT}, the metrics exporter's")
            )
        if inst.resources.cpu_limit is not None and cpu_millis(inst.resources.cpu_limit) < cpu_millis(
            inst.resources.cpu
        ):
            problems.append(
                Problem(
                    f"{key}.resources.cpuLimit",
                    inst.resources.cpu_limit,
                    f"at least the CPU request ({inst.resources.cpu})",
                )
            )
    return problems


def _group_checks(cfg: StackConfig) -> list[Problem]:
    """Groups (replicas > 1): their Sentinel port, and their instance port beside the Sentinel's exporter."""
    problems = []
    groups = {name: inst for name, inst in cfg.instances.items() if inst.replicas > 1}
    for name, inst in groups.items():
        if cfg.monitoring.enabled and inst.port == SENTINEL_METRICS_PORT:
            problems.append(
                Problem(
                    f"instances.{name}.port",
                    inst.port,
                    f"a port other than {SENTINEL_METRICS_PORT}, the Sentinel exporter's (a group's pods run one)",
                )
            )
        taken = {inst.port: "the instance's port"}
        if cfg.monitoring.enabled:
            taken[METRICS_PORT] = "the metrics exporter's"
            taken[SENTINEL_METRICS_PORT] = "the Sentinel exporter's"
        if cfg.failover.sentinel_port in taken:
            problems.append(
                Problem(
                    "failover.sentinelPort",
                    cfg.failover.sentinel_port,
                    f"a port other than {cfg.failover.sentinel_port}, {taken[cfg.failover.sentinel_port]} "
                    f"(instance {name})",
                )
            )
    return problems


def _security_checks(cfg: StackConfig) -> list[Problem]:
    problems = []
    if tls_enabled(cfg):
        sources = [cfg.tls.issuer is not None, cfg.tls.existing_secret is not None]
        if sum(sources) != 1:
            given = {"issuer": cfg.tls.issuer and cfg.tls.issuer.name, "existingSecret": cfg.tls.existing_secret}
            problems.append(
                Problem(
                    "tls",
                    given,
                    "exactly one certificate source while TLS is on (the default with DR instances): "
                    "tls.issuer (cert-manager) or tls.existingSecret; or tls.enabled: false",
                )
            )
        if cfg.tls.ca_bundle is None:
            problems.append(Problem("tls.caBundle", None, "the PEM of the CA that signs this stack's certificates"))
    replicated = [n for n, i in cfg.instances.items() if i.dr]
    if cfg.network_policy.enabled and replicated and not cfg.peer_cidrs:
        problems.append(
            Problem(
                "peerCidrs",
                [],
                "the other region's CIDRs: with networkPolicy.enabled only they may replicate "
                f"with the DR instances ({', '.join(sorted(replicated))}); or networkPolicy.enabled: false",
            )
        )
    return problems


def _name_checks(cfg: StackConfig) -> list[Problem]:
    """Names that are valid alone but not together: generated names of two instances that collide,
    in-cluster and external DNS names over 253 characters, one external name for two instances."""
    problems = []
    clients = [c.namespace for c in cfg.network_policy.clients]
    generations = {
        user: getattr(cfg.password_rotation, user).generation for user in ("client", "replication", "metrics")
    }
    owner: dict[object, str] = {}
    for name in cfg.instances:
        names = InstanceNames(name)
        mine = names.kubernetes_objects(cfg.namespace, clients) | names.pulumi_resources(clients, generations)
        clash = sorted({owner[o] for o in mine if o in owner})
        if clash:
            problems.append(
                Problem(
                    f"instances.{name}",
                    name,
                    f"a name whose objects do not collide with those of instance {', '.join(clash)} "
                    "(objects are named <instance>, <instance>-headless, -external, -read, -sentinel, "
                    "-labeler, -config, -tls, -credentials, -admin-credentials, -migration)",
                )
            )
        owner.update(dict.fromkeys(mine, name))
    # The longest in-cluster name: pod 0's, under the certificate's "*." wildcard for the pods.
    longest = max(
        (f"{n}-0.{InstanceNames(n).headless_service}.{cfg.namespace}.svc.{cfg.cluster_domain}" for n in cfg.instances),
        key=len,
    )
    if len(longest) > DNS_SUBDOMAIN_MAX - 2:
        problems.append(
            Problem(
                "clusterDomain",
                cfg.cluster_domain,
                f"a shorter domain, namespace or instance name: {longest} has {len(longest)} characters, "
                f"at most {DNS_SUBDOMAIN_MAX - 2} fit a DNS name under a '*.' wildcard",
            )
        )
    hosts: dict[str, str] = {}
    for name, inst in cfg.instances.items():
        if not inst.dr or (inst.external_host is None and cfg.external_domain is None):
            continue
        host = external_host(cfg, name) or ""
        key = f"instances.{name}.externalHost" if inst.external_host else "externalDomain"
        if len(host) > DNS_SUBDOMAIN_MAX:
            problems.append(Problem(key, host, f"a DNS name of at most {DNS_SUBDOMAIN_MAX} characters"))
        elif host in hosts:
            problems.append(
                Problem(key, host, f"an external name of its own: instance {hosts[host]} is published as {host}")
            )
        hosts.setdefault(host, name)
    annotations = cfg.external_service.annotations
    longest_host = max((len(external_host(cfg, n) or "") for n in cfg.instances), default=0)
    size = sum(len(k) + len(v) for k, v in annotations.items()) + len(EXTERNAL_DNS_HOSTNAME) + longest_host
    if size > ANNOTATIONS_MAX:
        problems.append(
            Problem(
                "externalService.annotations",
                Described(f"{size} bytes of annotations with the hostname"),
                f"at most {ANNOTATIONS_MAX} bytes in all (the API server's limit on an object's annotations)",
            )
        )
    if cfg.tls.existing_secret is not None:
        generated = {
            secret
            for n in cfg.instances
            for kind, _, secret in InstanceNames(n).kubernetes_objects(cfg.namespace, [])
            if kind == "Secret"
        }
        if cfg.tls.existing_secret in generated:
            problems.append(
                Problem(
                    "tls.existingSecret",
                    cfg.tls.existing_secret,
                    "a Secret of your own: this name is one the program creates for an instance",
                )
            )
    if EXTERNAL_DNS_HOSTNAME in cfg.external_service.annotations:
        problems.append(
            Problem(
                f"externalService.annotations.{EXTERNAL_DNS_HOSTNAME}",
                cfg.external_service.annotations[EXTERNAL_DNS_HOSTNAME],
                "not set here: the program sets it per instance (externalDomain, instances.<name>.externalHost)",
            )
        )
    return problems


def _monitoring_checks(cfg: StackConfig) -> list[Problem]:
    interval = int(cfg.monitoring.scrape_interval.total_seconds())
    thresholds = cfg.monitoring.thresholds
    windows = {
        "evictionWindow": (thresholds.eviction_window, "increase() needs two samples in its window"),
        "failoverWindow": (thresholds.failover_window, "a member's last sample as a replica must fall in it"),
    }
    problems = []
    for key, (length, why) in windows.items():
        window = int(length.total_seconds())
        if cfg.monitoring.enabled and window < 2 * interval:
            problems.append(
                Problem(
                    f"monitoring.thresholds.{key}", window, f"at least two scrape intervals ({2 * interval}s): {why}"
                )
            )
    return problems


def _migration_checks(cfg: StackConfig) -> list[Problem]:
    problems = []
    following = following_instances(cfg)
    for name, inst in cfg.instances.items():
        migration, key = inst.migration, f"instances.{name}.migration"
        if migration is None:
            continue
        if name in following:
            problems.append(
                Problem(
                    key,
                    Described(f"method {migration.method}"),
                    "no migration on an instance that replicates the primary region (it receives the data from "
                    "there): migrate into the primary stack's instance, or into a local one (dr: false)",
                )
            )
        if migration.source.ca_secret is not None and not migration.source.tls:
            problems.append(Problem(f"{key}.source.caSecret", migration.source.ca_secret, "only with source.tls: true"))
        if migration.method == "replication":
            problems += _replication_checks(cfg, name)
        elif migration.rdb_version_check != "strict":
            problems.append(
                Problem(f"{key}.rdbVersionCheck", migration.rdb_version_check, "strict (the default) with method copy")
            )
        if migration.method == "copy" and migration.keyspace_copy is None:
            problems.append(
                Problem(
                    f"{key}.keyspaceCopy",
                    None,
                    "the keyspace copy Job's settings with method copy, at least its image "
                    "(an image with Python 3 and the program's ops package: ops/Dockerfile)",
                )
            )
    return problems


def _replication_checks(cfg: StackConfig, name: str) -> list[Problem]:
    """What a live replication from the source needs (docs/migration.md#live-replication)."""
    inst = cfg.instances[name]
    migration = inst.migration
    assert migration is not None
    key = f"instances.{name}.migration"
    problems = []
    if inst.replicas < 2:
        problems.append(
            Problem(
                f"instances.{name}.replicas",
                inst.replicas,
                "at least 2 with migration.method replication (a group: its head replicates the source); "
                "a single pod migrates with method copy",
            )
        )
    if not inst.persistence:
        problems.append(
            Problem(
                f"instances.{name}.persistence",
                False,
                "true with migration.method replication: the data volume records that its data came from the "
                "source, so a node that held data of its own never replaces it with the source's",
            )
        )
    if migration.source.tls != tls_enabled(cfg):
        problems.append(
            Problem(
                f"{key}.source.tls",
                migration.source.tls,
                f"{str(tls_enabled(cfg)).lower()}, as the stack's TLS (tls.enabled) with method replication: "
                "Valkey's tls-replication is one switch for the link to the source and the group's own links",
            )
        )
    if migration.source.ca_secret is not None:
        problems.append(
            Problem(
                f"{key}.source.caSecret",
                migration.source.ca_secret,
                "unset with method replication: the head verifies the source with the stack's CA bundle; "
                "add the source's CA to tls.caBundle",
            )
        )
    if migration.keyspace_copy is not None:
        problems.append(Problem(f"{key}.keyspaceCopy", Described("set"), "unset with method replication"))
    if cfg.network_policy.enabled and not migration.source.cidrs:
        problems.append(
            Problem(
                f"{key}.source.cidrs",
                [],
                "the source's addresses (CIDRs) with method replication and networkPolicy.enabled: the "
                "NetworkPolicy admits the pods' connections to the source there only",
            )
        )
    return problems
