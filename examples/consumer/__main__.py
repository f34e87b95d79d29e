"""Example consumer: a Deployment that connects to one Valkey instance of a valkey stack, using
only that stack's documented outputs (docs/outputs.md, "Outputs contract").

The client password never passes through this program: the pod reads it from the Secret the
valkey stack created (``secretName``/``secretKey``) through ``valueFrom.secretKeyRef``. A
secretKeyRef can only name a Secret of the pod's own namespace: the valkey stack puts a copy in
every namespace its ``valkey:networkPolicy.clients`` admits (output ``secretNamespaces``), and
this program refuses a namespace that is not one of them.

When the instance serves TLS (``tls: true``) the pod verifies the server against the stack's
``caBundle`` output (a public certificate), mounted from a ConfigMap.

Config (``valkey-consumer:``): ``valkeyStack`` (required, e.g. ``organization/valkey/region1``),
``namespace`` (required: where the Deployment runs), ``instance`` (default ``valkey``), ``image``
and ``kubeContext`` (optional).
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

DEFAULT_IMAGE = "valkey/valkey:8.1.8-alpine"
"""A pinned image with valkey-cli; the example app pings the instance every 30 s."""
UID, GID = 999, 1000  # the valkey image's unprivileged user
REQUIRED = ("host", "port", "secretName", "secretKey")
CA_DIR = "/etc/valkey-ca"


def app_script(tls: bool) -> str:
    """Pings the instance every 30 s. The password goes through the environment, never an
    argument, so it stays out of /proc/<pid>/cmdline."""
    tls_options = f" --tls --cacert {CA_DIR}/ca.crt" if tls else ""
    return (
        f'while true; do REDISCLI_AUTH="$VALKEY_PASSWORD" valkey-cli -h "$VALKEY_HOST" -p "$VALKEY_PORT"{tls_options} '
        "ping; sleep 30; done"
    )


async def read_instance(stack_name: str, instance: str) -> tuple[dict[str, Any], str | None]:
    """(instances.<instance>, caBundle) of the valkey stack, or a RunError naming what is missing."""
    reference = pulumi.StackReference("valkey", stack_name=stack_name)
    instances = (await reference.get_output_details("instances")).value
    ca_bundle = (await reference.get_output_details("caBundle")).value
    if not isinstance(instances, dict):
        absent = "'instances'" if instances is None else "usable instances"
        raise pulumi.RunError(
            f"valkey-consumer:valkeyStack: stack {stack_name} exports no {absent} "
            "(see the valkey docs/outputs.md, Outputs contract); run `pulumi up` on it first"
        )
    settings = instances.get(instance)
    if not isinstance(settings, dict):
        raise pulumi.RunError(
            f"valkey-consumer:instance: given {instance!r}; accepted: one of {sorted(instances)} "
            f"(the instances stack {stack_name} exports)"
        )
    missing = [key for key in (*REQUIRED, "secretNamespaces") if settings.get(key) is None]
    if settings.get("tls") and not isinstance(ca_bundle, str):
        missing.append("caBundle (the instance serves TLS)")
    if missing:
        raise pulumi.RunError(f"stack {stack_name} exports instances.{instance} without {', '.join(missing)}")
    if settings.get("role") == "replica":
        pulumi.log.warn(f"instances.{instance} of {stack_name} is a read-only replica: writes will fail")
    return settings, ca_bundle if settings.get("tls") else None


async def main() -> dict[str, Any]:
    config = pulumi.Config()
    stack_name = config.require("valkeyStack")
    namespace = config.require("namespace")
    instance = config.get("instance") or "valkey"
    valkey, ca_bundle = await read_instance(stack_name, instance)
    if namespace not in valkey["secretNamespaces"]:
        raise pulumi.RunError(
            f"valkey-consumer:namespace: given {namespace!r}; accepted: one of {valkey['secretNamespaces']}, "
            f"the namespaces holding {valkey['secretName']} (add it to valkey:networkPolicy.clients of {stack_name})"
        )

    context = config.get("kubeContext")
    opts = pulumi.ResourceOptions(provider=k8s.Provider("kubernetes", context=context)) if context else None
    labels = {"app.kubernetes.io/name": "valkey-consumer", "app.kubernetes.io/instance": instance}
    volumes: list[k8s.core.v1.VolumeArgs] = []
    mounts: list[k8s.core.v1.VolumeMountArgs] = []
    if ca_bundle is not None:
        ca = k8s.core.v1.ConfigMap(
            f"{instance}-consumer-ca",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=f"{instance}-consumer-ca", namespace=namespace, labels=labels),
            data={"ca.crt": ca_bundle},
            opts=opts,
        )
        volumes.append(
            k8s.core.v1.VolumeArgs(
                name="ca", config_map=k8s.core.v1.ConfigMapVolumeSourceArgs(name=ca.metadata.apply(lambda m: m["name"]))
            )
        )
        mounts.append(k8s.core.v1.VolumeMountArgs(name="ca", mount_path=CA_DIR, read_only=True))
    restricted = k8s.core.v1.SecurityContextArgs(
        allow_privilege_escalation=False,
        read_only_root_filesystem=True,
        run_as_non_root=True,
        run_as_user=UID,
        run_as_group=GID,
        capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"]),
        seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault"),
    )
    # A Sentinel group (replicas > 1) also has a read endpoint over every member, and Sentinels
    # for clients that ask them for the primary themselves. `host` alone is enough for writes.
    group_env = [
        k8s.core.v1.EnvVarArgs(name=name, value=str(int(value)) if isinstance(value, float) else str(value))
        for name, value in (
            ("VALKEY_READ_HOST", valkey.get("readHost")),
            ("VALKEY_SENTINEL_HOST", valkey.get("sentinelHost")),
            ("VALKEY_SENTINEL_PORT", valkey.get("sentinelPort")),
            ("VALKEY_SENTINEL_MASTER", valkey.get("sentinelMasterName")),
        )
        if value is not None
    ]
    if valkey.get("sentinelSecretKey"):
        # The Sentinels' application user: it may ask where the primary is, nothing more.
        group_env += [
            k8s.core.v1.EnvVarArgs(name="VALKEY_SENTINEL_USERNAME", value=valkey["sentinelUsername"]),
            k8s.core.v1.EnvVarArgs(
                name="VALKEY_SENTINEL_PASSWORD",
                value_from=k8s.core.v1.EnvVarSourceArgs(
                    secret_key_ref=k8s.core.v1.SecretKeySelectorArgs(
                        name=valkey["secretName"], key=valkey["sentinelSecretKey"], optional=False
                    )
                ),
            ),
        ]
    app = k8s.core.v1.ContainerArgs(
        name="app",
        image=config.get("image") or DEFAULT_IMAGE,
        command=["sh", "-c", app_script(ca_bundle is not None)],
        env=[
            k8s.core.v1.EnvVarArgs(name="VALKEY_HOST", value=valkey["host"]),
            # Numbers read from a stack's state are floats: 6379.0 would not be a port.
            k8s.core.v1.EnvVarArgs(name="VALKEY_PORT", value=str(int(valkey["port"]))),
            k8s.core.v1.EnvVarArgs(
                name="VALKEY_PASSWORD",
                value_from=k8s.core.v1.EnvVarSourceArgs(
                    secret_key_ref=k8s.core.v1.SecretKeySelectorArgs(
                        name=valkey["secretName"], key=valkey["secretKey"], optional=False
                    )
                ),
            ),
            *group_env,
        ],
        resources=k8s.core.v1.ResourceRequirementsArgs(
            requests={"cpu": "10m", "memory": "16Mi"}, limits={"memory": "32Mi"}
        ),
        security_context=restricted,
        volume_mounts=mounts or None,
    )
    deployment = k8s.apps.v1.Deployment(
        f"{instance}-consumer",
        metadata=k8s.meta.v1.ObjectMetaArgs(name=f"{instance}-consumer", namespace=namespace, labels=labels),
        spec=k8s.apps.v1.DeploymentSpecArgs(
            replicas=1,
            selector=k8s.meta.v1.LabelSelectorArgs(match_labels=labels),
            template=k8s.core.v1.PodTemplateSpecArgs(
                metadata=k8s.meta.v1.ObjectMetaArgs(labels=labels),
                spec=k8s.core.v1.PodSpecArgs(
                    automount_service_account_token=False,
                    enable_service_links=False,
                    security_context=k8s.core.v1.PodSecurityContextArgs(
                        run_as_non_root=True,
                        seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault"),
                    ),
                    containers=[app],
                    volumes=volumes or None,
                ),
            ),
        ),
        opts=opts,
    )
    return {
        "deployment": deployment.metadata.apply(lambda m: f"{m['namespace']}/{m['name']}"),
        "valkeyEndpoint": f"{valkey['host']}:{int(valkey['port'])}",
    }


pulumi.run(main)
