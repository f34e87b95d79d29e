"""The pod template of a Valkey server: security context, mounts, resources and probes.

Everything a pod reviewer checks is decided here, in one function, from plain values.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

CONFIG_DIR = "/etc/valkey"
DATA_DIR = "/data"
CONFIG_FILE = f"{CONFIG_DIR}/valkey.conf"
ACL_FILE = f"{CONFIG_DIR}/users.acl"
PROBE_PASSWORD_FILE = f"{CONFIG_DIR}/probe-password"

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
    """Secret holding valkey.conf, users.acl and the probe password."""


def _mib(n: int) -> str:
    return f"{-(-n // (1024 * 1024))}Mi"


def probe_command(port: int, accept: str) -> list[str]:
    """An exec probe that authenticates as the probe user and passes only on an expected reply.

    valkey-cli exits 0 even on an error reply, so the reply text decides. The password goes in
    REDISCLI_AUTH (the variable valkey-cli 8.1 reads), read from the mounted Secret, never in
    the probe's arguments.
    """
    script = (
        f'reply="$(REDISCLI_AUTH="$(cat {PROBE_PASSWORD_FILE})" '
        f'valkey-cli --user probe -h 127.0.0.1 -p {port} ping 2>/dev/null)"; '
        f'case "$reply" in {accept}) exit 0;; *) echo "$reply"; exit 1;; esac'
    )
    return ["sh", "-c", script]


READY_REPLIES = "PONG"
# A server loading its dataset (after a restart, or a replica after a full sync) answers LOADING:
# it is alive but not ready. Killing it then would restart the load from the beginning.
ALIVE_REPLIES = "PONG|LOADING*"


def pod_template(s: PodSettings, annotations: pulumi.Input[dict[str, str]]) -> k8s.core.v1.PodTemplateSpecArgs:
    limits = {"memory": _mib(s.memory_bytes)}
    if s.cpu_limit is not None:
        limits["cpu"] = s.cpu_limit

    def exec_probe(accept: str, period: int, failures: int) -> k8s.core.v1.ProbeArgs:
        return k8s.core.v1.ProbeArgs(
            exec_=k8s.core.v1.ExecActionArgs(command=probe_command(s.port, accept)),
            period_seconds=period,
            timeout_seconds=5,
            failure_threshold=failures,
        )

    container = k8s.core.v1.ContainerArgs(
        name="valkey",
        image=s.image,
        image_pull_policy="IfNotPresent",
        # `command` replaces the image's entrypoint script: what runs is exactly this line.
        command=["valkey-server", CONFIG_FILE],
        ports=[k8s.core.v1.ContainerPortArgs(name="valkey", container_port=s.port, protocol="TCP")],
        resources=k8s.core.v1.ResourceRequirementsArgs(
            requests={"cpu": s.cpu_request, "memory": _mib(s.memory_bytes)},
            limits=limits,
        ),
        security_context=k8s.core.v1.SecurityContextArgs(
            allow_privilege_escalation=False,
            read_only_root_filesystem=True,
            run_as_non_root=True,
            run_as_user=VALKEY_UID,
            run_as_group=VALKEY_GID,
            capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"]),
            seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault"),
        ),
        volume_mounts=[
            k8s.core.v1.VolumeMountArgs(name="config", mount_path=CONFIG_DIR, read_only=True),
            k8s.core.v1.VolumeMountArgs(name="data", mount_path=DATA_DIR),
        ],
        # Up to 10 minutes to load a large AOF before liveness starts counting.
        startup_probe=exec_probe(ALIVE_REPLIES, period=5, failures=120),
        liveness_probe=exec_probe(ALIVE_REPLIES, period=10, failures=6),
        # Never depends on the primary region: a replica whose link is down still answers PONG
        # (replica-serve-stale-data yes), so region 2 stays Ready while region 1 is lost.
        readiness_probe=exec_probe(READY_REPLIES, period=5, failures=3),
    )
    return k8s.core.v1.PodTemplateSpecArgs(
        metadata=k8s.meta.v1.ObjectMetaArgs(labels=s.labels, annotations=annotations),
        spec=k8s.core.v1.PodSpecArgs(
            automount_service_account_token=False,
            enable_service_links=False,
            # Time for Valkey to fsync the AOF and close replicas on SIGTERM.
            termination_grace_period_seconds=60,
            security_context=k8s.core.v1.PodSecurityContextArgs(
                run_as_non_root=True,
                run_as_user=VALKEY_UID,
                run_as_group=VALKEY_GID,
                fs_group=VALKEY_GID,
                fs_group_change_policy="OnRootMismatch",
                seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault"),
            ),
            containers=[container],
            volumes=[
                k8s.core.v1.VolumeArgs(
                    name="config",
                    secret=k8s.core.v1.SecretVolumeSourceArgs(secret_name=s.config_secret, default_mode=0o440),
                ),
            ],
        ),
    )
