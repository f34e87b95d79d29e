"""A group's role-label updater: the sidecar that keeps its own pod's ``NODE_ROLE_LABEL`` equal to
the node's role (render/scripts/labeler.sh), and the ServiceAccount, Role and RoleBinding that let
it patch exactly its group's pods. The client Service selects the label's ``primary`` value, so
it follows the primary after a failover, like CloudNativePG's ``-rw`` Service.

Only this container gets an API token, from a projected volume of its own; the pod keeps
``automountServiceAccountToken: false``.
"""

from __future__ import annotations

import pulumi_kubernetes as k8s

from ..render.acl import LABELER_USER
from ..render.paths import LABELER_PASSWORD_KEY, LABELER_SCRIPT_KEY, SOCKET_DIR, SOCKET_FILE
from .labels import NODE_ROLE_LABEL
from .security_context import restricted

IMAGE = "curlimages/curl:8.22.0"
"""The curl project's image: busybox sh and curl. It speaks RESP through curl's telnet:// on the
unix socket, and PATCHes the pod over HTTPS."""
DIR = "/etc/valkey-labeler"
SCRIPT = f"{DIR}/{LABELER_SCRIPT_KEY}"
PASSWORD_FILE = f"{DIR}/{LABELER_PASSWORD_KEY}"
VOLUME = "labeler"
TOKEN_VOLUME = "api-token"
TOKEN_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
TOKEN_SECONDS = 3607
"""The kubelet renews a projected token at 80% of its lifetime; the script re-reads it per request."""
PERIOD_SECONDS = 1
"""How often it asks ROLE: a failover reaches the client Service within about this long."""


def volumes(config_secret: str) -> list[k8s.core.v1.VolumeArgs]:
    """Its script and password only (never valkey.conf or other passwords), and its API token."""
    items = [k8s.core.v1.KeyToPathArgs(key=key, path=key) for key in (LABELER_SCRIPT_KEY, LABELER_PASSWORD_KEY)]
    token = k8s.core.v1.ProjectedVolumeSourceArgs(
        default_mode=0o440,
        sources=[
            k8s.core.v1.VolumeProjectionArgs(
                service_account_token=k8s.core.v1.ServiceAccountTokenProjectionArgs(
                    path="token", expiration_seconds=TOKEN_SECONDS
                )
            ),
            k8s.core.v1.VolumeProjectionArgs(
                config_map=k8s.core.v1.ConfigMapProjectionArgs(
                    name="kube-root-ca.crt", items=[k8s.core.v1.KeyToPathArgs(key="ca.crt", path="ca.crt")]
                )
            ),
            k8s.core.v1.VolumeProjectionArgs(
                downward_api=k8s.core.v1.DownwardAPIProjectionArgs(
                    items=[
                        k8s.core.v1.DownwardAPIVolumeFileArgs(
                            path="namespace",
                            field_ref=k8s.core.v1.ObjectFieldSelectorArgs(field_path="metadata.namespace"),
                        )
                    ]
                )
            ),
        ],
    )
    return [
        k8s.core.v1.VolumeArgs(
            name=VOLUME,
            secret=k8s.core.v1.SecretVolumeSourceArgs(secret_name=config_secret, items=items, default_mode=0o440),
        ),
        k8s.core.v1.VolumeArgs(name=TOKEN_VOLUME, projected=token),
    ]


def container(socket_volume: str, uid: int, gid: int, domain: str) -> k8s.core.v1.ContainerArgs:
    env = {
        "VALKEY_SOCKET": SOCKET_FILE,
        "LABELER_USER": LABELER_USER,
        "LABELER_PASSWORD_FILE": PASSWORD_FILE,
        "ROLE_LABEL": NODE_ROLE_LABEL,
        "LOCAL_DOMAIN": f".{domain}",
        "PERIOD_SECONDS": str(PERIOD_SECONDS),
    }
    pod_name = k8s.core.v1.EnvVarArgs(
        name="POD_NAME",
        value_from=k8s.core.v1.EnvVarSourceArgs(
            field_ref=k8s.core.v1.ObjectFieldSelectorArgs(field_path="metadata.name")
        ),
    )
    return k8s.core.v1.ContainerArgs(
        name="labeler",
        image=IMAGE,
        image_pull_policy="IfNotPresent",
        command=["sh", SCRIPT],
        env=[pod_name, *(k8s.core.v1.EnvVarArgs(name=k, value=v) for k, v in env.items())],
        resources=k8s.core.v1.ResourceRequirementsArgs(
            requests={"cpu": "10m", "memory": "16Mi"}, limits={"memory": "32Mi"}
        ),
        security_context=restricted(uid, gid),
        volume_mounts=[
            k8s.core.v1.VolumeMountArgs(name=VOLUME, mount_path=DIR, read_only=True),
            k8s.core.v1.VolumeMountArgs(name=TOKEN_VOLUME, mount_path=TOKEN_DIR, read_only=True),
            # The socket's volume only: never the server's config file, which holds a password
            # once Sentinel rewrote it.
            k8s.core.v1.VolumeMountArgs(name=socket_volume, mount_path=SOCKET_DIR, read_only=True),
        ],
    )


def role_rules(pods: list[str]) -> list[k8s.rbac.v1.PolicyRuleArgs]:
    """Read and patch its group's pods, by name: no list, no watch, no other pod."""
    return [
        k8s.rbac.v1.PolicyRuleArgs(api_groups=[""], resources=["pods"], verbs=["get", "patch"], resource_names=pods)
    ]
