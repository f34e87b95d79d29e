"""A container's environment and command line, resolved the way the kubelet does it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import PodStartError
from .expansion import expand
from .objects import ObjectStore
from .podspec import ENV_NAME, FIELD_PATH_KEYED, ContainerPlan


def pod_fields(
    *,
    name: str,
    namespace: str,
    uid: str,
    pod_ip: str,
    host_ip: str,
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
    service_account: str = "default",
) -> dict[str, str]:
    """Values for ``fieldRef.fieldPath``; keyed paths (labels['x']) are looked up separately."""
    fields = {
        "metadata.name": name,
        "metadata.namespace": namespace,
        "metadata.uid": uid,
        "status.podIP": pod_ip,
        "status.podIPs": pod_ip,
        "status.hostIP": host_ip,
        "spec.nodeName": "podrunner",
        "spec.serviceAccountName": service_account,
    }
    fields.update({f"metadata.labels['{k}']": v for k, v in labels.items()})
    fields.update({f"metadata.annotations['{k}']": v for k, v in annotations.items()})
    return fields


def resolve_env(
    container: ContainerPlan,
    store: ObjectStore,
    namespace: str,
    fields: Mapping[str, str],
    service_env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """envFrom first (later sources win), then env in order. A ``value`` may reference variables
    defined before it with $(VAR), and the service variables; values from Secrets, ConfigMaps and
    fields are taken verbatim. Service variables (``KUBERNETES_SERVICE_HOST``...) come last, where
    the container does not define them (kubelet_pods.go makeEnvironmentVariables).
    A missing non-optional Secret/ConfigMap or key fails like the kubelet's CreateContainerConfigError."""
    service_env = service_env or {}
    where = f"container {container.name!r}"
    env: dict[str, str] = {}
    for source in container.raw.get("envFrom") or []:
        if source.get("secretRef"):
            kind, ref = "Secret", source["secretRef"]
        else:
            kind, ref = "ConfigMap", source["configMapRef"]
        data = store.source_data(kind, namespace, ref["name"])
        if data is None:
            if ref.get("optional"):
                continue
            raise PodStartError(f"{where}: {kind.lower()} {ref['name']!r} not found")
        for key, raw in data.items():
            name = f"{source.get('prefix') or ''}{key}"
            if ENV_NAME.match(name):  # the kubelet skips invalid names (and records an event)
                env[name] = raw.decode()
    for entry in container.raw.get("env") or []:
        name = entry["name"]
        source = entry.get("valueFrom")
        if source is None:
            env[name] = expand(str(entry.get("value") or ""), env, service_env)
            continue
        value = _value_from(source, store, namespace, fields, f"{where} env {name}")
        if value is not None:
            env[name] = value
    return {**env, **{k: v for k, v in service_env.items() if k not in env}}


def _value_from(
    source: Mapping[str, Any], store: ObjectStore, namespace: str, fields: Mapping[str, str], where: str
) -> str | None:
    if source.get("fieldRef") is not None:
        path = source["fieldRef"]["fieldPath"]
        if path in fields:
            return fields[path]
        if FIELD_PATH_KEYED.match(path):
            return ""  # a label or annotation that is not set
        raise PodStartError(f"{where}: field {path!r} has no value")
    kind, ref = (
        ("Secret", source["secretKeyRef"]) if source.get("secretKeyRef") else ("ConfigMap", source["configMapKeyRef"])
    )
    data = store.source_data(kind, namespace, ref["name"])
    if data is None or ref["key"] not in data:
        if ref.get("optional"):
            return None
        missing = f"{kind.lower()} {ref['name']!r}" if data is None else f"key {ref['key']!r} in {kind} {ref['name']!r}"
        raise PodStartError(f"{where}: {missing} not found (CreateContainerConfigError)")
    return data[ref["key"]].decode()


def container_argv(container: ContainerPlan, env: Mapping[str, str]) -> list[str]:
    """command + args with $(VAR) expanded from the container's environment."""
    args = container.raw.get("args") or []
    return [expand(str(a), env) for a in [*container.command, *args]]
