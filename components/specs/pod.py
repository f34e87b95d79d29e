"""The pod template of a Valkey server: security context, mounts, resources, probes, sidecars.

Everything a pod reviewer checks is decided here, in one function, from plain values.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from ..object_names import DATA_CLAIM
from ..render import pod_scripts
from ..render.paths import CONFIG_DIR, CONFIG_FILE, DATA_DIR, SOURCE_LOGIN_DIR, TLS_DIR
from ..sizing import mebibytes
from . import exporter, labeler, marker, sentinel
from .security_context import restricted, restricted_pod

SOURCE_LOGIN_VOLUME = "migration-source"
"""The volume of a migration source's credentials Secret."""
VALKEY_PORT_NAME = "valkey"
"""The container port's name: every Service targets it by this name, not by number."""

# The official image's valkey user (alpine variant): uid 999, gid 1000.
VALKEY_UID = 999
VALKEY_GID = 1000


@dataclass(frozen=True)
class PodSettings:
    image: str
    port: int
    cpu_request: str
    cpu_limit: str | None
    memory_bytes: int
    labels: dict[str, str]
    config_secret: str
    """Secret holding valkey.conf, users.acl, the CA bundle, the in-pod passwords and the scripts."""
    tls_secret: str | None = None
    """Secret with tls.crt and tls.key; None serves plaintext."""
    persistence: bool = True
    """False: /data is an emptyDir, gone with the pod."""
    metrics_exporter: bool = False
    """Add the redis_exporter sidecar (specs/exporter.py)."""
    pod_labels: dict[str, str] | None = None
    """Labels on the pod only (not the selector), e.g. for the scrape's relabelings."""
    group: GroupSettings | None = None
    """A Sentinel group (replicas > 1); None: a single pod that is what its valkey.conf says."""
    primary: bool = True
    """A single pod: valkey.conf makes it a primary (False: a replica of the other region)."""
    marker: str | None = None
    """The instance's marker ConfigMap (specs/marker.py); its pods fence a primary on an empty volume
    once it exists. Needs persistence."""
    source_login_secret: str | None = None
    """A migrating group (``group.env.migration``): the source's credentials Secret, mounted at
    SOURCE_LOGIN_DIR in the server, reloader and keeper containers (render/scripts/login.sh)."""


@dataclass(frozen=True)
class GroupSettings:
    """What a group member's pod adds: the Sentinel, the start script's role decision, spreading."""

    env: pod_scripts.GroupEnv
    selector: dict[str, str]
    """The group's pods, for anti-affinity and topology spread."""
    node_spread: str
    """required | preferred | none (config.models.Scheduling)."""
    zone_spread: str
    service_account: str
    """The label updater's ServiceAccount (specs/labeler.py)."""


def _env(values: dict[str, str]) -> list[k8s.core.v1.EnvVarArgs]:
    return [k8s.core.v1.EnvVarArgs(name=name, value=value) for name, value in values.items()]


def _marker_env(name: str | None) -> list[k8s.core.v1.EnvVarArgs]:
    """DATA_EXPECTED from the marker, optional: unset until Pulumi creates it after the first rollout.
    The kubelet resolves it at each container start, so a restart after that sees it."""
    if name is None:
        return []
    ref = k8s.core.v1.ConfigMapKeySelectorArgs(name=name, key=marker.KEY, optional=True)
    return [
        k8s.core.v1.EnvVarArgs(
            name=pod_scripts.DATA_EXPECTED_ENV, value_from=k8s.core.v1.EnvVarSourceArgs(config_map_key_ref=ref)
        )
    ]


def _group_env(values: dict[str, str]) -> list[k8s.core.v1.EnvVarArgs]:
    """``values`` and POD_NAME, which the scripts of a group member build its DNS name from."""
    pod_name = k8s.core.v1.EnvVarArgs(
        name="POD_NAME",
        value_from=k8s.core.v1.EnvVarSourceArgs(
            field_ref=k8s.core.v1.ObjectFieldSelectorArgs(field_path="metadata.name")
        ),
    )
    return [pod_name, *_env(values)]


HOSTNAME_TOPOLOGY = "kubernetes.io/hostname"
ZONE_TOPOLOGY = "topology.kubernetes.io/zone"


def _affinity(group: GroupSettings) -> k8s.core.v1.AffinityArgs | None:
    """Members on different nodes: a node's loss takes at most one of them."""
    if group.node_spread == "none":
        return None
    term = k8s.core.v1.PodAffinityTermArgs(
        label_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=group.selector), topology_key=HOSTNAME_TOPOLOGY
    )
    if group.node_spread == "required":
        anti = k8s.core.v1.PodAntiAffinityArgs(required_during_scheduling_ignored_during_execution=[term])
    else:
        anti = k8s.core.v1.PodAntiAffinityArgs(
            preferred_during_scheduling_ignored_during_execution=[
                k8s.core.v1.WeightedPodAffinityTermArgs(weight=100, pod_affinity_term=term)
            ]
        )
    return k8s.core.v1.AffinityArgs(pod_anti_affinity=anti)


def _zone_spread(group: GroupSettings) -> list[k8s.core.v1.TopologySpreadConstraintArgs] | None:
    """Members across zones, at most one more in any zone than in another."""
    if group.zone_spread == "none":
        return None
    return [
        k8s.core.v1.TopologySpreadConstraintArgs(
            max_skew=1,
            topology_key=ZONE_TOPOLOGY,
            when_unsatisfiable="DoNotSchedule" if group.zone_spread == "required" else "ScheduleAnyway",
            label_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=group.selector),
        )
    ]


TERMINATION_GRACE_SECONDS = 60
"""Time for Valkey to fsync the AOF and close replicas on SIGTERM."""
STARTUP_PERIOD_SECONDS, STARTUP_FAILURES = 5, 120
"""Up to 10 minutes to load a large AOF before liveness starts counting."""
READINESS_PERIOD_SECONDS, READINESS_FAILURES = 5, 3


def _source_login(
    secret: str | None, migration: pod_scripts.MigrationLogin | None
) -> tuple[list[k8s.core.v1.VolumeMountArgs], list[k8s.core.v1.VolumeArgs]]:
    """A migrating group's source login: its Secret, mounted whole (the file username exists exactly
    when the Secret has that key) in the containers that source login.sh."""
    if secret is None:
        return [], []
    if migration is None or not migration.login:
        raise ValueError("a migration source's login is mounted in a migrating group only")
    return (
        [k8s.core.v1.VolumeMountArgs(name=SOURCE_LOGIN_VOLUME, mount_path=SOURCE_LOGIN_DIR, read_only=True)],
        [
            k8s.core.v1.VolumeArgs(
                name=SOURCE_LOGIN_VOLUME,
                secret=k8s.core.v1.SecretVolumeSourceArgs(secret_name=secret, default_mode=0o440),
            )
        ],
    )


def rollout_timeout_seconds(replicas: int) -> int:
    """How long ``pulumi up`` waits for a StatefulSet rollout: each pod in turn may take its grace
    period to stop, the whole startup allowance to load, and a readiness period to turn Ready,
    plus a minute for scheduling and the image."""
    per_pod = TERMINATION_GRACE_SECONDS + STARTUP_PERIOD_SECONDS * STARTUP_FAILURES + READINESS_PERIOD_SECONDS
    return replicas * per_pod + 60


def pod_template(settings: PodSettings, annotations: pulumi.Input[dict[str, str]]) -> k8s.core.v1.PodTemplateSpecArgs:
    tls = settings.tls_secret is not None
    limits = {"memory": mebibytes(settings.memory_bytes)}
    if settings.cpu_limit is not None:
        limits["cpu"] = settings.cpu_limit

    def exec_probe(mode: str, period: int, failures: int) -> k8s.core.v1.ProbeArgs:
        # probe.sh (render/scripts/) passes only on the expected reply; it reads its parameters
        # from the container's environment, which exec probes inherit.
        return k8s.core.v1.ProbeArgs(
            exec_=k8s.core.v1.ExecActionArgs(command=pod_scripts.probe_command(mode)),
            period_seconds=period,
            timeout_seconds=5,
            failure_threshold=failures,
        )

    group = settings.group
    mounts = [k8s.core.v1.VolumeMountArgs(name="config", mount_path=CONFIG_DIR, read_only=True)]
    if tls:
        mounts.append(k8s.core.v1.VolumeMountArgs(name="tls", mount_path=TLS_DIR, read_only=True))
    migration = group.env.migration if group is not None else None
    source_mounts, source_volumes = _source_login(settings.source_login_secret, migration)
    mounts += source_mounts
    if settings.marker is not None and not settings.persistence:
        raise ValueError("a marker needs persistence: without it no data is expected after a restart")
    marker_env = _marker_env(settings.marker)
    if group is None and not settings.persistence:
        # `command` replaces the image's entrypoint script: what runs is exactly this line.
        command = ["valkey-server", CONFIG_FILE]
        env = _env(pod_scripts.probe_env(settings.port, tls))
        server_mounts = mounts
    elif group is None:
        # single.sh (render/scripts/) fences a primary on an empty volume, then execs valkey-server.
        command = pod_scripts.SINGLE_COMMAND
        env = [
            *_env(pod_scripts.single_env(settings.port, tls, persistence=True, primary=settings.primary)),
            *marker_env,
        ]
        server_mounts = mounts
    else:
        # start.sh (render/scripts/) asks the group for this pod's role, then execs valkey-server.
        command = pod_scripts.START_COMMAND
        env = [*_group_env(pod_scripts.start_env(settings.port, tls, group.env, settings.persistence)), *marker_env]
        server_mounts = [*mounts, *sentinel.run_mounts()]
    # A group's primary hands over to a replica before it stops (render/scripts/prestop.sh).
    lifecycle = (
        k8s.core.v1.LifecycleArgs(
            pre_stop=k8s.core.v1.LifecycleHandlerArgs(
                exec_=k8s.core.v1.ExecActionArgs(command=pod_scripts.PRESTOP_COMMAND)
            )
        )
        if group is not None
        else None
    )
    server = k8s.core.v1.ContainerArgs(
        name="valkey",
        image=settings.image,
        image_pull_policy="IfNotPresent",
        command=command,
        env=env,
        lifecycle=lifecycle,
        ports=[k8s.core.v1.ContainerPortArgs(name=VALKEY_PORT_NAME, container_port=settings.port, protocol="TCP")],
        resources=k8s.core.v1.ResourceRequirementsArgs(
            requests={"cpu": settings.cpu_request, "memory": mebibytes(settings.memory_bytes)}, limits=limits
        ),
        security_context=restricted(VALKEY_UID, VALKEY_GID),
        volume_mounts=[*server_mounts, k8s.core.v1.VolumeMountArgs(name=DATA_CLAIM, mount_path=DATA_DIR)],
        # Up to 10 minutes to load a large AOF before liveness starts counting. A server loading
        # its dataset answers LOADING: alive, not ready; killing it would restart the load.
        startup_probe=exec_probe(pod_scripts.ALIVE, period=STARTUP_PERIOD_SECONDS, failures=STARTUP_FAILURES),
        liveness_probe=exec_probe(pod_scripts.ALIVE, period=10, failures=6),
        # Never depends on the primary region: a replica whose link is down still answers PONG
        # (replica-serve-stale-data yes), so region 2 stays Ready while region 1 is lost.
        readiness_probe=exec_probe(pod_scripts.READY, period=READINESS_PERIOD_SECONDS, failures=READINESS_FAILURES),
    )
    reloader = k8s.core.v1.ContainerArgs(
        name="reloader",
        image=settings.image,
        image_pull_policy="IfNotPresent",
        # reloader.sh (render/scripts/): applies changed passwords and certificates without a restart.
        command=pod_scripts.RELOADER_COMMAND,
        env=_env(pod_scripts.reloader_env(settings.port, tls, settings.metrics_exporter, migration)),
        resources=k8s.core.v1.ResourceRequirementsArgs(
            requests={"cpu": "10m", "memory": "16Mi"}, limits={"memory": "32Mi"}
        ),
        security_context=restricted(VALKEY_UID, VALKEY_GID),
        volume_mounts=mounts,
    )
    volumes = [
        k8s.core.v1.VolumeArgs(
            name="config",
            secret=k8s.core.v1.SecretVolumeSourceArgs(secret_name=settings.config_secret, default_mode=0o440),
        )
    ]
    if tls:
        volumes.append(
            k8s.core.v1.VolumeArgs(
                name="tls",
                secret=k8s.core.v1.SecretVolumeSourceArgs(secret_name=settings.tls_secret, default_mode=0o440),
            )
        )
    if not settings.persistence:
        volumes.append(k8s.core.v1.VolumeArgs(name=DATA_CLAIM, empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs()))
    volumes += source_volumes
    containers = [server, reloader]
    if settings.metrics_exporter:
        containers.append(exporter.container(settings.port, tls=tls))
        volumes.append(exporter.volume(settings.config_secret, tls=tls))
    if group is not None:
        follows = group.env.follows
        environment = pod_scripts.keeper_env if follows else pod_scripts.sentinel_env
        containers.append(
            sentinel.container(
                settings.image,
                uid=VALKEY_UID,
                gid=VALKEY_GID,
                env=_group_env(environment(settings.port, tls, group.env)),
                port=group.env.sentinel_port,
                tls=tls,
                keeper=follows,
                # Migrating, the keeper reads and writes the data volume's record (render/scripts/login.sh).
                extra_mounts=[*source_mounts, k8s.core.v1.VolumeMountArgs(name=DATA_CLAIM, mount_path=DATA_DIR)]
                if migration is not None
                else [],
            )
        )
        if settings.metrics_exporter and not follows:
            # The Sentinel's own exporter: the Sentinel is a server of its own, with its own users.
            containers.append(exporter.sentinel_container(group.env.sentinel_port, tls=tls))
            volumes.append(exporter.sentinel_volume(settings.config_secret, tls=tls))
        containers.append(labeler.container(sentinel.SOCKET_VOLUME, VALKEY_UID, VALKEY_GID, group.env.domain))
        volumes += [*sentinel.volumes(), *labeler.volumes(settings.config_secret)]
    return k8s.core.v1.PodTemplateSpecArgs(
        metadata=k8s.meta.v1.ObjectMetaArgs(
            labels={**settings.labels, **(settings.pod_labels or {})}, annotations=annotations
        ),
        spec=k8s.core.v1.PodSpecArgs(
            # No token in any container but the label updater's, which mounts its own (labeler.py).
            automount_service_account_token=False,
            service_account_name=group.service_account if group else None,
            enable_service_links=False,
            termination_grace_period_seconds=TERMINATION_GRACE_SECONDS,
            security_context=restricted_pod(VALKEY_UID, VALKEY_GID, fs_group_change_policy="OnRootMismatch"),
            containers=containers,
            volumes=volumes,
            affinity=_affinity(group) if group else None,
            topology_spread_constraints=_zone_spread(group) if group else None,
        ),
    )
