"""The pod template of a Valkey server: security context, mounts, resources, probes, sidecars.

Everything a pod reviewer checks is decided here, in one function, from plain values.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from ..object_names import DATA_CLAIM
from ..render import exporter as exporter_flags
from ..render.acl import PROBE_USER, RELOADER_USER
from ..render.paths import (
    ACL_FILE,
    CA_FILE,
    CONFIG_DIR,
    CONFIG_FILE,
    DATA_DIR,
    MASTERAUTH_FILE,
    PROBE_PASSWORD_FILE,
    RELOADER_PASSWORD_FILE,
    TLS_CERT_FILE,
    TLS_DIR,
    TLS_KEY_FILE,
)
from ..sizing import mebibytes
from . import exporter
from .security_context import restricted

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
    """Secret holding valkey.conf, users.acl, the CA bundle and the in-pod passwords."""
    tls_secret: str | None = None
    """Secret with tls.crt and tls.key; None serves plaintext."""
    persistence: bool = True
    """False: /data is an emptyDir, gone with the pod."""
    metrics_exporter: bool = False
    """Add the redis_exporter sidecar (specs/exporter.py)."""
    pod_labels: dict[str, str] | None = None
    """Labels on the pod only (not the selector), e.g. for the scrape's relabelings."""


def cli(port: int, user: str, password_file: str, tls: bool) -> str:
    """A valkey-cli invocation against the local server, authenticated as ``user``.

    The password goes in REDISCLI_AUTH (the variable valkey-cli 8.1 reads), read from the mounted
    Secret: never in an argument, where /proc/<pid>/cmdline would show it.
    """
    tls_options = f" --tls --cacert {CA_FILE}" if tls else ""
    auth = f'REDISCLI_AUTH="$(cat {password_file})"'
    return f"{auth} valkey-cli --no-auth-warning --user {user} -h 127.0.0.1 -p {port}{tls_options}"


def probe_command(port: int, accept: str, tls: bool) -> list[str]:
    """An exec probe that passes only on an expected reply (valkey-cli exits 0 on error replies)."""
    script = (
        f'reply="$({cli(port, PROBE_USER, PROBE_PASSWORD_FILE, tls)} ping 2>/dev/null)"; '
        f'case "$reply" in {accept}) exit 0;; *) echo "$reply"; exit 1;; esac'
    )
    return ["sh", "-c", script]


TERMINATION_GRACE_SECONDS = 60
"""Time for Valkey to fsync the AOF and close replicas on SIGTERM."""
STARTUP_PERIOD_SECONDS, STARTUP_FAILURES = 5, 120
"""Up to 10 minutes to load a large AOF before liveness starts counting."""
READINESS_PERIOD_SECONDS, READINESS_FAILURES = 5, 3


def rollout_timeout_seconds(replicas: int) -> int:
    """How long ``pulumi up`` waits for a StatefulSet rollout: each pod in turn may take its grace
    period to stop, the whole startup allowance to load, and a readiness period to turn Ready,
    plus a minute for scheduling and the image."""
    per_pod = TERMINATION_GRACE_SECONDS + STARTUP_PERIOD_SECONDS * STARTUP_FAILURES + READINESS_PERIOD_SECONDS
    return replicas * per_pod + 60


READY_REPLIES = "PONG"
# A server loading its dataset (after a restart, or a replica after a full sync) answers LOADING:
# it is alive but not ready. Killing it then would restart the load from the beginning.
ALIVE_REPLIES = "PONG|LOADING*"


def reloader_script(port: int, tls: bool, metrics_exporter: bool = False) -> str:
    """Applies what Pulumi changed in the mounted Secrets without restarting Valkey: ACL LOAD for
    passwords (rotation), CONFIG SET masterauth for a replica (its raw password file on stdin), and a
    TLS reload for a renewed certificate; the metrics exporter re-reads its password file. Files are
    compared every 5 s; the kubelet swaps a Secret volume atomically."""
    run = cli(port, RELOADER_USER, RELOADER_PASSWORD_FILE, tls)
    watched = f"{ACL_FILE} {MASTERAUTH_FILE} {CA_FILE}" + (f" {TLS_CERT_FILE} {TLS_KEY_FILE}" if tls else "")
    tls_reload = (
        f"{run} CONFIG SET tls-cert-file {TLS_CERT_FILE} tls-key-file {TLS_KEY_FILE} tls-ca-cert-file {CA_FILE}"
        " | grep -qx OK || ok=0\n"
        if tls
        else ""
    )
    # After ACL LOAD, so the server already accepts the password the exporter re-reads.
    exporter_reload = f"wget -q -O /dev/null {exporter_flags.RELOAD_URL} || ok=0\n" if metrics_exporter else ""
    # PID 1 ignores signals it does not handle: without the trap every pod stop would wait for
    # the whole grace period; `sleep & wait` lets the trap run at once.
    return f"""trap 'exit 0' TERM INT
fingerprint() {{ cat {watched} 2>/dev/null | sha256sum; }}
seen="$(fingerprint)"
while true; do
  sleep 5 & wait $!
  now="$(fingerprint)"
  [ "$now" = "$seen" ] && continue
  ok=1
  {run} ACL LOAD | grep -qx OK || ok=0
  {exporter_reload}  if [ -s {MASTERAUTH_FILE} ]; then
    {run} -x CONFIG SET masterauth < {MASTERAUTH_FILE} | grep -qx OK || ok=0; fi
  {tls_reload}if [ "$ok" = 1 ]; then seen="$now"; echo "reloader: applied changed files"
  else echo "reloader: apply failed, will retry"; fi
done
"""


def pod_template(s: PodSettings, annotations: pulumi.Input[dict[str, str]]) -> k8s.core.v1.PodTemplateSpecArgs:
    tls = s.tls_secret is not None
    limits = {"memory": mebibytes(s.memory_bytes)}
    if s.cpu_limit is not None:
        limits["cpu"] = s.cpu_limit

    def exec_probe(accept: str, period: int, failures: int) -> k8s.core.v1.ProbeArgs:
        return k8s.core.v1.ProbeArgs(
            exec_=k8s.core.v1.ExecActionArgs(command=probe_command(s.port, accept, tls)),
            period_seconds=period,
            timeout_seconds=5,
            failure_threshold=failures,
        )

    mounts = [k8s.core.v1.VolumeMountArgs(name="config", mount_path=CONFIG_DIR, read_only=True)]
    if tls:
        mounts.append(k8s.core.v1.VolumeMountArgs(name="tls", mount_path=TLS_DIR, read_only=True))
    server = k8s.core.v1.ContainerArgs(
        name="valkey",
        image=s.image,
        image_pull_policy="IfNotPresent",
        # `command` replaces the image's entrypoint script: what runs is exactly this line.
        command=["valkey-server", CONFIG_FILE],
        ports=[k8s.core.v1.ContainerPortArgs(name="valkey", container_port=s.port, protocol="TCP")],
        resources=k8s.core.v1.ResourceRequirementsArgs(
            requests={"cpu": s.cpu_request, "memory": mebibytes(s.memory_bytes)}, limits=limits
        ),
        security_context=restricted(VALKEY_UID, VALKEY_GID),
        volume_mounts=[*mounts, k8s.core.v1.VolumeMountArgs(name=DATA_CLAIM, mount_path=DATA_DIR)],
        # Up to 10 minutes to load a large AOF before liveness starts counting.
        startup_probe=exec_probe(ALIVE_REPLIES, period=STARTUP_PERIOD_SECONDS, failures=STARTUP_FAILURES),
        liveness_probe=exec_probe(ALIVE_REPLIES, period=10, failures=6),
        # Never depends on the primary region: a replica whose link is down still answers PONG
        # (replica-serve-stale-data yes), so region 2 stays Ready while region 1 is lost.
        readiness_probe=exec_probe(READY_REPLIES, period=READINESS_PERIOD_SECONDS, failures=READINESS_FAILURES),
    )
    reloader = k8s.core.v1.ContainerArgs(
        name="reloader",
        image=s.image,
        image_pull_policy="IfNotPresent",
        command=["sh", "-c", reloader_script(s.port, tls, s.metrics_exporter)],
        resources=k8s.core.v1.ResourceRequirementsArgs(
            requests={"cpu": "10m", "memory": "16Mi"}, limits={"memory": "32Mi"}
        ),
        security_context=restricted(VALKEY_UID, VALKEY_GID),
        volume_mounts=mounts,
    )
    volumes = [
        k8s.core.v1.VolumeArgs(
            name="config", secret=k8s.core.v1.SecretVolumeSourceArgs(secret_name=s.config_secret, default_mode=0o440)
        )
    ]
    if tls:
        volumes.append(
            k8s.core.v1.VolumeArgs(
                name="tls", secret=k8s.core.v1.SecretVolumeSourceArgs(secret_name=s.tls_secret, default_mode=0o440)
            )
        )
    if not s.persistence:
        volumes.append(k8s.core.v1.VolumeArgs(name=DATA_CLAIM, empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs()))
    containers = [server, reloader]
    if s.metrics_exporter:
        containers.append(exporter.container(s.port, tls=tls))
        volumes.append(exporter.volume(s.config_secret, tls=tls))
    return k8s.core.v1.PodTemplateSpecArgs(
        metadata=k8s.meta.v1.ObjectMetaArgs(labels={**s.labels, **(s.pod_labels or {})}, annotations=annotations),
        spec=k8s.core.v1.PodSpecArgs(
            automount_service_account_token=False,
            enable_service_links=False,
            termination_grace_period_seconds=TERMINATION_GRACE_SECONDS,
            security_context=k8s.core.v1.PodSecurityContextArgs(
                run_as_non_root=True,
                run_as_user=VALKEY_UID,
                run_as_group=VALKEY_GID,
                fs_group=VALKEY_GID,
                fs_group_change_policy="OnRootMismatch",
                seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault"),
            ),
            containers=containers,
            volumes=volumes,
        ),
    )
