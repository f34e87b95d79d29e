"""Small hand-written manifests for the runner's own tests (and drills that need a shape the
product does not render yet): a StatefulSet of ``sleep`` containers, Services, RBAC objects and the
projected volume a label updater mounts."""

from __future__ import annotations

from typing import Any

VALKEY_IMAGE = "valkey/valkey:8.1.8-alpine"
CURL_IMAGE = "curlimages/curl:8.22.0"
TOKEN_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
IDLE = "trap 'exit 0' TERM; while :; do sleep 0.2; done"

Manifest = dict[str, Any]


def container(name: str = "main", command: str = IDLE, image: str = VALKEY_IMAGE, **extra: Any) -> Manifest:
    """A container with the pod's ``work`` emptyDir at /work (and whatever ``extra`` says)."""
    mounts = [{"name": "work", "mountPath": "/work"}, *extra.pop("volumeMounts", [])]
    return {"name": name, "image": image, "command": ["sh", "-c", command], "volumeMounts": mounts, **extra}


def statefulset(
    name: str = "kv",
    namespace: str = "lab",
    replicas: int = 2,
    containers: list[Manifest] | None = None,
    *,
    labels: dict[str, str] | None = None,
    service_account: str | None = None,
    volumes: list[Manifest] | None = None,
    policy: str | None = None,
    fs_group: int | None = 1000,
) -> Manifest:
    labels = labels or {"app": name}
    pod: Manifest = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 2,
        "containers": containers or [container()],
        "volumes": [{"name": "work", "emptyDir": {}}, *(volumes or [])],
    }
    if fs_group is not None:
        pod["securityContext"] = {"fsGroup": fs_group}
    if service_account:
        pod["serviceAccountName"] = service_account
    spec: Manifest = {
        "serviceName": f"{name}-headless",
        "replicas": replicas,
        "selector": {"matchLabels": labels},
        "template": {"metadata": {"labels": labels}, "spec": pod},
    }
    if policy:
        spec["podManagementPolicy"] = policy
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def service(
    name: str, selector: dict[str, str], namespace: str = "lab", port: int = 8080, *, headless: bool = False
) -> Manifest:
    spec: Manifest = {"selector": selector, "ports": [{"name": "p", "port": port, "targetPort": port}]}
    if headless:
        spec.update(clusterIP="None", publishNotReadyAddresses=True)
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def token_volume(name: str = "kube-api-access", expiration: int = 3607, audience: str | None = None) -> Manifest:
    """What the kubelet's ServiceAccount admission would add for automountServiceAccountToken: true,
    written out (the shape this runner accepts)."""
    token: Manifest = {"path": "token", "expirationSeconds": expiration}
    if audience is not None:
        token["audience"] = audience
    return {
        "name": name,
        "projected": {
            "defaultMode": 0o444,
            "sources": [
                {"serviceAccountToken": token},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {
                    "downwardAPI": {
                        "items": [
                            {"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}
                        ]
                    }
                },
            ],
        },
    }


def rbac(
    account: str, namespace: str = "lab", verbs: tuple[str, ...] = ("get", "patch"), names: tuple[str, ...] = ()
) -> list[Manifest]:
    rule: Manifest = {"apiGroups": [""], "resources": ["pods"], "verbs": list(verbs)}
    if names:
        rule["resourceNames"] = list(names)
    meta = {"name": account, "namespace": namespace}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta, "automountServiceAccountToken": False},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta, "rules": [rule]},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
        },
    ]


PATCH_LABELS = r"""
set -eu
dir=/var/run/secrets/kubernetes.io/serviceaccount
ns=$(cat "$dir/namespace")
curl -sS -o /tmp/reply -w '%{http_code}' --cacert "$dir/ca.crt" \
  -H "Authorization: Bearer $(cat "$dir/token")" -H 'Content-Type: application/merge-patch+json' \
  -X PATCH --data "$2" "https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT/api/v1/namespaces/$ns/pods/$1"
"""
"""``sh -c PATCH_LABELS sh <pod> <merge patch>``: prints the HTTP status; the reply is in /tmp/reply."""
