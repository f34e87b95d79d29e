"""The keyspace copy's Job (``python -m ops.keyspace_copy``, docs/migration.md) and the Service
over its metrics. Its pod carries ``app.kubernetes.io/name: valkey-migration``, not the Valkey
pods' name: none of the instance's Services selects it."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi_kubernetes as k8s

from ..config.migration import COPY_METRICS_PORT, Migration
from ..render.paths import CA_KEY
from .labels import INSTANCE_LABEL, NAME_LABEL, stack_labels
from .security_context import restricted, restricted_pod

APP_NAME = "valkey-migration"
UID = GID = 65532
"""The user ops/Dockerfile's image runs as (any non-root user does: the pod sets it)."""
SOURCE_DIR = "/etc/migration/source"
TARGET_DIR = "/etc/migration/target"
SOURCE_CA_DIR = "/etc/migration/source-ca"
TARGET_CA_DIR = "/etc/migration/target-ca"
CA_FILE_NAME = "ca.crt"
METRICS_PORT_NAME = "metrics"
EXIT_CODES_FINAL = (1, 2)
"""The copy's exit codes that a retry cannot mend (1: an error whose message says what to do; 2:
the verification found differences): the Job fails at once. Any other failure (3: a connection
lost mid-copy, a SIGTERM) is retried, up to BACKOFF_LIMIT, and resumes where it can; an evicted or
preempted pod does not count."""
BACKOFF_LIMIT = 4
STOP_GRACE_SECONDS = 30
"""A SIGTERM stops the copy at its next batch, without verifying (the cut-over's cue is SIGUSR1)."""
SKIP_AWAIT = {"pulumi.com/skipAwait": "true"}
"""pulumi-kubernetes waits up to 10 minutes for a Job to complete; a following copy runs until its
cut-over, so `pulumi up` must not wait for it (the provider's await of Jobs)."""


def pod_labels(instance: str) -> dict[str, str]:
    return {NAME_LABEL: APP_NAME, INSTANCE_LABEL: instance}


def job_labels(instance: str) -> dict[str, str]:
    return {**pod_labels(instance), "app.kubernetes.io/component": "migration", **stack_labels()}


@dataclass(frozen=True)
class CopyJob:
    instance: str
    migration: Migration
    target_host: str
    """The instance's client Service: its primary."""
    target_port: int
    target_tls: bool
    admin_secret: str
    """The instance's ``<instance>-admin-credentials`` (keys username and password)."""
    config_secret: str
    """The instance's config Secret, for its CA bundle when the target serves TLS."""


def _secret_volume(name: str, secret: str, items: dict[str, str] | None = None) -> k8s.core.v1.VolumeArgs:
    return k8s.core.v1.VolumeArgs(
        name=name,
        secret=k8s.core.v1.SecretVolumeSourceArgs(
            secret_name=secret,
            default_mode=0o440,
            items=[k8s.core.v1.KeyToPathArgs(key=k, path=p) for k, p in items.items()] if items else None,
        ),
    )


def _mount(name: str, path: str) -> k8s.core.v1.VolumeMountArgs:
    return k8s.core.v1.VolumeMountArgs(name=name, mount_path=path, read_only=True)


def arguments(job: CopyJob) -> list[str]:
    """The copy's command line: where the logins and CAs are mounted, never what they hold."""
    source, settings = job.migration.source, job.migration.keyspace_copy
    assert settings is not None, "method copy has its keyspaceCopy (config checks)"
    args = ["--source", f"{source.host}:{source.port}", "--target", f"{job.target_host}:{job.target_port}"]
    args += ["--target-credentials", TARGET_DIR, "--batch", str(settings.batch)]
    args += ["--metrics-port", str(COPY_METRICS_PORT)]
    if source.credentials_secret is not None:
        args += ["--source-credentials", SOURCE_DIR]
    if source.tls:
        args.append("--source-tls")
        if source.ca_secret is not None:
            args += ["--source-ca", f"{SOURCE_CA_DIR}/{CA_FILE_NAME}"]
    if job.target_tls:
        args += ["--target-tls", "--target-ca", f"{TARGET_CA_DIR}/{CA_FILE_NAME}"]
    if settings.follow:
        args.append("--follow")
    if settings.start_over:
        args.append("--start-over")
    if settings.notifications_configured:
        args.append("--notifications-configured")
    return args


def job_spec(job: CopyJob) -> k8s.batch.v1.JobSpecArgs:
    source, settings = job.migration.source, job.migration.keyspace_copy
    assert settings is not None, "method copy has its keyspaceCopy (config checks)"
    volumes = [
        _secret_volume("target-credentials", job.admin_secret, {"username": "username", "password": "password"}),
        k8s.core.v1.VolumeArgs(name="tmp", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs(size_limit="16Mi")),
    ]
    mounts = [_mount("target-credentials", TARGET_DIR), k8s.core.v1.VolumeMountArgs(name="tmp", mount_path="/tmp")]
    if source.credentials_secret is not None:
        # The whole Secret: its key username is optional (without it, the password alone).
        volumes.append(_secret_volume("source-credentials", source.credentials_secret))
        mounts.append(_mount("source-credentials", SOURCE_DIR))
    if source.tls and source.ca_secret is not None:
        volumes.append(_secret_volume("source-ca", source.ca_secret, {CA_FILE_NAME: CA_FILE_NAME}))
        mounts.append(_mount("source-ca", SOURCE_CA_DIR))
    if job.target_tls:
        # Only the CA bundle of the config Secret, none of the passwords it holds.
        volumes.append(_secret_volume("target-ca", job.config_secret, {CA_KEY: CA_FILE_NAME}))
        mounts.append(_mount("target-ca", TARGET_CA_DIR))
    container = k8s.core.v1.ContainerArgs(
        name="copy",
        image=settings.image,
        command=["python", "-m", "ops.keyspace_copy"],
        args=arguments(job),
        env=[
            k8s.core.v1.EnvVarArgs(name="HOME", value="/tmp"),
            k8s.core.v1.EnvVarArgs(name="PYTHONDONTWRITEBYTECODE", value="1"),
            k8s.core.v1.EnvVarArgs(name="PYTHONUNBUFFERED", value="1"),
        ],
        ports=[k8s.core.v1.ContainerPortArgs(name=METRICS_PORT_NAME, container_port=COPY_METRICS_PORT, protocol="TCP")],
        resources=k8s.core.v1.ResourceRequirementsArgs(
            # One batch of values at a time (measured: about 140 MiB for a million keys of 1,000 a batch).
            requests={"cpu": "250m", "memory": "256Mi"},
            limits={"memory": "512Mi"},
        ),
        security_context=restricted(UID, GID),
        volume_mounts=mounts,
    )
    return k8s.batch.v1.JobSpecArgs(
        backoff_limit=BACKOFF_LIMIT,
        pod_failure_policy=k8s.batch.v1.PodFailurePolicyArgs(
            # The first rule that matches applies: an evicted or preempted pod (SIGTERM: exit 3) is not
            # the copy's failure and does not count, whatever its exit code.
            rules=[
                k8s.batch.v1.PodFailurePolicyRuleArgs(
                    action="Ignore",
                    on_pod_conditions=[
                        k8s.batch.v1.PodFailurePolicyOnPodConditionsPatternArgs(type="DisruptionTarget", status="True")
                    ],
                ),
                k8s.batch.v1.PodFailurePolicyRuleArgs(
                    action="FailJob",
                    on_exit_codes=k8s.batch.v1.PodFailurePolicyOnExitCodesRequirementArgs(
                        container_name="copy", operator="In", values=list(EXIT_CODES_FINAL)
                    ),
                ),
            ]
        ),
        template=k8s.core.v1.PodTemplateSpecArgs(
            metadata=k8s.meta.v1.ObjectMetaArgs(labels=pod_labels(job.instance)),
            spec=k8s.core.v1.PodSpecArgs(
                restart_policy="Never",
                automount_service_account_token=False,
                enable_service_links=False,
                termination_grace_period_seconds=STOP_GRACE_SECONDS,
                # fsGroup: the Secret volumes' files (mode 0440) belong to its group, so the copy reads them.
                security_context=restricted_pod(UID, GID),
                containers=[container],
                volumes=volumes,
            ),
        ),
    )


def metrics_service_spec(instance: str) -> k8s.core.v1.ServiceSpecArgs:
    return k8s.core.v1.ServiceSpecArgs(
        cluster_ip="None",
        selector=pod_labels(instance),
        ports=[
            k8s.core.v1.ServicePortArgs(
                name=METRICS_PORT_NAME, port=COPY_METRICS_PORT, target_port=METRICS_PORT_NAME, protocol="TCP"
            )
        ],
    )
