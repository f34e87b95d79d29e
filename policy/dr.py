"""Persistence of DR primaries: their data on a PersistentVolumeClaim, the append-only file on.

A *DR primary* is a workload labelled ``valkey.io/dr: "true"`` and ``valkey.io/role: primary``
(labels the program sets on the StatefulSet and its config Secret), or, at stack level and whatever
its labels, a StatefulSet behind a LoadBalancer Service that carries the external-dns hostname
annotation (how the other region reaches a primary).
"""

from __future__ import annotations

import base64
import binascii
import posixpath
from collections.abc import Iterable, Mapping
from typing import Any

from pods import (
    POD_SPEC_PATHS,
    SERVERS,
    STATEFULSET,
    all_containers,
    argv,
    pod_spec,
    runs_server,
    started_config,
    valkey_pod_spec,
)
from pulumi_policy.proxy import UnknownValueError
from resource_inputs import as_list, describe, dig, metadata_labels

DR_LABEL = "valkey.io/dr"
ROLE_LABEL = "valkey.io/role"
NODE_ROLE_LABEL = "valkey.io/node-role"
"""Set on a group's pods at run time by their label updater (components/specs/labels.py)."""
EXTERNAL_DNS_HOSTNAME = "external-dns.alpha.kubernetes.io/hostname"
DEFAULT_DATA_DIR = "/data"
"""Where Valkey writes when valkey.conf sets no ``dir``: the official image's working directory."""

SECRET = "kubernetes:core/v1:Secret"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
SERVICE = "kubernetes:core/v1:Service"


def labelled_dr_primary(props: Mapping[str, Any]) -> bool:
    labels = metadata_labels(props)
    return str(labels.get(DR_LABEL)).lower() == "true" and labels.get(ROLE_LABEL, "primary") == "primary"


def data_mount_problem(resource_type: str, props: Mapping[str, Any], data_dir: str) -> str | None:
    """None if every valkey-server container keeps ``data_dir`` on a volumeClaimTemplate."""
    if resource_type != STATEFULSET:
        return "is not a StatefulSet, so it has no volumeClaimTemplates for its data"
    spec = pod_spec(resource_type, props) or {}
    claims = {dig(t, "metadata", "name") for t in as_list(dig(props, "spec", "volumeClaimTemplates"))}
    servers = [c for c in all_containers(spec) if runs_server(c)]
    if not servers:
        return "has no container that runs valkey-server"
    for c in servers:
        mount = _mount_for(c, data_dir)
        if mount is None or mount.get("name") not in claims:
            return (
                f"container '{c.get('name')}' does not keep {data_dir} on a volumeClaimTemplate "
                f"(claims: {sorted(n for n in claims if isinstance(n, str)) or 'none'})"
            )
    return None


def _mount_for(container: Mapping[str, Any], path: str) -> Mapping[str, Any] | None:
    """The volumeMount that holds ``path``: the deepest mountPath at or above it."""
    holding = []
    for mount in as_list(container.get("volumeMounts")):
        mount_path = str(mount.get("mountPath", "")).rstrip("/")
        if path == mount_path or path.startswith(mount_path + "/"):
            holding.append((len(mount_path), mount))
    return max(holding, key=lambda found: found[0])[1] if holding else None


def check_dr_primary_persistence(resource_type: str, props: Mapping[str, Any], name: str = "") -> list[str]:
    if resource_type not in POD_SPEC_PATHS or not labelled_dr_primary(props):
        return []
    problem = data_mount_problem(resource_type, props, DEFAULT_DATA_DIR)
    if problem is None:
        return []
    return [f"{describe(resource_type, props, name)} is a DR primary ({DR_LABEL}=true) but {problem}"]


def conf_directive(conf: str, directive: str) -> str | None:
    """The last value of a valkey.conf directive (the last one wins), unquoted."""
    value = None
    for line in conf.splitlines():
        words = line.strip().split(None, 1)
        if words and words[0].lower() == directive:
            value = words[1].strip().strip("\"'") if len(words) > 1 else ""
    return value


def config_text(resource_type: str, props: Mapping[str, Any], key: str) -> str | None:
    """A file of a Secret or ConfigMap: stringData/data as text, data base64-decoded for a Secret."""
    for field, encoded in (("stringData", False), ("data", resource_type == SECRET)):
        value = dig(props, field, key)
        if isinstance(value, str):
            if not encoded:
                return value
            try:
                return base64.b64decode(value).decode()
            except (binascii.Error, UnicodeDecodeError):
                return None
    return None


def aof_problem(conf: str) -> str | None:
    value = conf_directive(conf, "appendonly")
    if value is None or value.lower() != "yes":
        return f"valkey.conf says appendonly {value or 'nothing (Valkey defaults to no)'}; a DR primary needs yes"
    return None


def check_dr_primary_aof(resource_type: str, props: Mapping[str, Any], name: str = "") -> list[str]:
    """The config Secret of a labelled DR primary turns the append-only file on."""
    if resource_type != SECRET or not labelled_dr_primary(props):
        return []
    conf = config_text(resource_type, props, "valkey.conf")
    problem = aof_problem(conf) if conf is not None else None
    return [f"{describe(resource_type, props, name)}: {problem}"] if problem else []


# --- stack level: what the other region connects to must be durable -------------------------------


def _namespace(props: Mapping[str, Any]) -> str | None:
    """metadata.namespace, or None while unknown (then it matches any namespace)."""
    try:
        value = dig(props, "metadata", "namespace")
    except UnknownValueError:
        return None
    return value if isinstance(value, str) else "default"


def _same_namespace(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    na, nb = _namespace(a), _namespace(b)
    return na is None or nb is None or na == nb


def dr_endpoints(resources: Iterable[Any]) -> list[tuple[Any, Any]]:
    """(Service, StatefulSet) pairs: a LoadBalancer Service with the external-dns hostname
    annotation that selects the pods of a Valkey StatefulSet."""
    resources = list(resources)
    statefulsets = [r for r in resources if r.resource_type == STATEFULSET and valkey_pod_spec(STATEFULSET, r.props)]
    pairs = []
    for svc in resources:
        if svc.resource_type != SERVICE or dig(svc.props, "spec", "type") != "LoadBalancer":
            continue
        annotations = dig(svc.props, "metadata", "annotations")
        if not isinstance(annotations, Mapping) or EXTERNAL_DNS_HOSTNAME not in annotations:
            continue
        # A group's Services also select the role label its pods get at run time, never in the template.
        selector = {k: v for k, v in dict(dig(svc.props, "spec", "selector") or {}).items() if k != NODE_ROLE_LABEL}
        for sts in statefulsets:
            pod_labels = dict(dig(sts.props, "spec", "template", "metadata", "labels") or {})
            if selector and selector.items() <= pod_labels.items() and _same_namespace(svc.props, sts.props):
                pairs.append((svc, sts))
    return pairs


def _server_conf_file(spec: Mapping[str, Any]) -> tuple[Mapping[str, Any], str] | None:
    """(container, config path) of the first container started as ``valkey-server <file>``."""
    for c in all_containers(spec):
        config = started_config(c)
        if config is not None:
            return c, config
        words = argv(c)
        if words and posixpath.basename(words[0]) in SERVERS:
            words = words[1:]
        elif as_list(c.get("command")) or not runs_server(c):
            continue
        if words and not words[0].startswith("-"):
            return c, words[0]
    return None


def _config_source(resources: list[Any], sts: Any) -> tuple[str, str | None, str]:
    """(data dir, valkey.conf text or None, why it is None) for a Valkey StatefulSet."""
    spec = pod_spec(STATEFULSET, sts.props) or {}
    found = _server_conf_file(spec)
    if found is None:
        return DEFAULT_DATA_DIR, None, "valkey-server is not started as `valkey-server <config file>`"
    container, path = found
    mount = _mount_for(container, path)
    volume = next((v for v in as_list(spec.get("volumes")) if mount and v.get("name") == mount.get("name")), None)
    source = (volume or {}).get("secret") or (volume or {}).get("configMap")
    if mount is None or not isinstance(source, Mapping):
        return DEFAULT_DATA_DIR, None, f"{path} is not mounted from a Secret or ConfigMap"
    relative = posixpath.relpath(path, mount.get("mountPath", "/"))
    key = next((i.get("key") for i in as_list(source.get("items")) if i.get("path") == relative), relative)
    source_name = source.get("secretName") or source.get("name")
    kind = SECRET if "secretName" in source else CONFIG_MAP
    holder = next(
        (
            r
            for r in resources
            if r.resource_type == kind
            and dig(r.props, "metadata", "name") == source_name
            and _same_namespace(r.props, sts.props)
        ),
        None,
    )
    if holder is None:
        return DEFAULT_DATA_DIR, None, f"its config {kind.rsplit(':', 1)[-1]} {source_name} is not in this stack"
    try:
        conf = config_text(kind, holder.props, key)
    except UnknownValueError:
        return DEFAULT_DATA_DIR, None, "unknown"
    if conf is None:
        return DEFAULT_DATA_DIR, None, f"{source_name} has no key {key}"
    working_dir = container.get("workingDir") if isinstance(container.get("workingDir"), str) else None
    data_dir = conf_directive(conf, "dir") or working_dir or DEFAULT_DATA_DIR
    return posixpath.normpath(posixpath.join(working_dir or DEFAULT_DATA_DIR, data_dir)), conf, ""


def check_dr_endpoints(resources: Iterable[Any]) -> list[tuple[str, str]]:
    """(urn, message) for each DR primary, found through its external Service, that does not keep
    its data on a PersistentVolumeClaim with the append-only file on."""
    resources = list(resources)
    violations = []
    checked = set()
    for svc, sts in dr_endpoints(resources):
        if sts.urn in checked:
            continue
        checked.add(sts.urn)
        what = f"{describe(STATEFULSET, sts.props, sts.name)} (DR primary behind Service {svc.name})"
        data_dir, conf, why = _config_source(resources, sts)
        problem = data_mount_problem(STATEFULSET, sts.props, data_dir)
        if problem:
            violations.append((sts.urn, f"{what} {problem}"))
        if conf is not None:
            aof = aof_problem(conf)
            if aof:
                violations.append((sts.urn, f"{what}: {aof}"))
        elif why != "unknown":  # unknown: a preview before the passwords exist; checked at `up`
            violations.append((sts.urn, f"{what}: cannot check appendonly: {why}"))
    return violations
