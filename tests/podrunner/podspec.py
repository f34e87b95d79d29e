"""Reads pod N of a StatefulSet into a plan, refusing every field the runner does not emulate.

Each object is checked against an explicit allow-list: keys the runner implements (``handled``),
keys that cannot change what a test observes on one machine (``ignored``, with the reason), and
keys accepted only at their default value (``defaults``). Anything else raises
UnsupportedPodFeature naming the field, so a new manifest feature cannot slip through untested.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import PodStartError, UnsupportedPodFeature
from .image import Image, resolve_image
from .objects import Manifest, ObjectStore, as_int, namespace_of


@dataclass(frozen=True)
class Keys:
    handled: frozenset[str]
    ignored: Mapping[str, str] = field(default_factory=dict)
    defaults: Mapping[str, Any] = field(default_factory=dict)


def _keys(handled: str, ignored: Mapping[str, str] | None = None, defaults: Mapping[str, Any] | None = None) -> Keys:
    return Keys(frozenset(handled.split()), ignored or {}, defaults or {})


SCHEDULING = "scheduling only: there is one machine"
NOT_ENFORCED = "accepted, not enforced (no cgroups/seccomp here)"

STATEFULSET = _keys("apiVersion kind metadata spec", {"status": "written by the API server"})
STS_SPEC = _keys(
    "serviceName replicas selector template volumeClaimTemplates ordinals podManagementPolicy",
    {
        "updateStrategy": "rollouts are driven by the test (Pod.restart(), PodRunner.rolling_restart())",
        "persistentVolumeClaimRetentionPolicy": "PVC dirs are kept until Pod.delete()",
        "minReadySeconds": "rollout pacing",
        "revisionHistoryLimit": "rollout history",
    },
)
POD_META = _keys("labels annotations", {"name": "set by the StatefulSet controller", "namespace": "the StatefulSet's"})
POD_SPEC = _keys(
    "containers initContainers volumes securityContext terminationGracePeriodSeconds "
    "automountServiceAccountToken enableServiceLinks hostAliases serviceAccountName",
    {
        "affinity": SCHEDULING,
        "nodeSelector": SCHEDULING,
        "tolerations": SCHEDULING,
        "topologySpreadConstraints": SCHEDULING,
        "priorityClassName": SCHEDULING,
        "schedulerName": SCHEDULING,
        "imagePullSecrets": "images are stand-ins, nothing is pulled",
    },
    {
        "restartPolicy": "Always",
        "dnsPolicy": "ClusterFirst",
        "hostNetwork": False,
        "hostPID": False,
        "hostIPC": False,
        "shareProcessNamespace": False,
        "setHostnameAsFQDN": False,
    },
)
POD_SECURITY = _keys(
    "runAsUser runAsGroup runAsNonRoot fsGroup fsGroupChangePolicy supplementalGroups seccompProfile",
    defaults={"supplementalGroupsPolicy": "Merge"},
)
CONTAINER = _keys(
    "name image command args workingDir env envFrom ports securityContext volumeMounts "
    "startupProbe livenessProbe readinessProbe lifecycle",
    {
        "imagePullPolicy": "images are stand-ins, nothing is pulled",
        "resources": "requests/limits " + NOT_ENFORCED,
        "terminationMessagePath": "termination messages are not collected",
        "terminationMessagePolicy": "termination messages are not collected",
    },
    {"stdin": False, "stdinOnce": False, "tty": False},
)
CONTAINER_SECURITY = _keys(
    "runAsUser runAsGroup runAsNonRoot readOnlyRootFilesystem allowPrivilegeEscalation capabilities seccompProfile",
    defaults={"privileged": False, "procMount": "Default"},
)
CAPABILITIES = _keys("drop", defaults={"add": []})
SECCOMP = _keys("type")
PORT = _keys("name containerPort", defaults={"protocol": "TCP"})
MOUNT = _keys("name mountPath readOnly subPath", defaults={"mountPropagation": "None", "recursiveReadOnly": "Disabled"})
PROBE = _keys("exec httpGet initialDelaySeconds periodSeconds timeoutSeconds successThreshold failureThreshold")
EXEC = _keys("command")
# Container lifecycle hooks: preStop runs on API-initiated termination (pod.py). postStart and
# stopSignal are refused; of the handlers only exec is emulated (httpGet, sleep, tcpSocket refused).
LIFECYCLE = _keys("preStop")
HOOK_HANDLER = _keys("exec")
# host: the kubelet would connect there instead of the pod IP; httpHeaders: not sent. Both refused.
HTTP_GET = _keys("path port scheme")
ENV = _keys("name value valueFrom")
ENV_FROM_SOURCE = _keys("secretKeyRef configMapKeyRef fieldRef")
KEY_REF = _keys("name key optional")
FIELD_REF = _keys("fieldPath apiVersion")
ENV_FROM = _keys("prefix secretRef configMapRef")
SOURCE_REF = _keys("name optional")
VOLUME = _keys("name secret configMap emptyDir projected")
SECRET_VOLUME = _keys("secretName items defaultMode optional")
CONFIG_MAP_VOLUME = _keys("name items defaultMode optional")
EMPTY_DIR = _keys("medium", {"sizeLimit": "size " + NOT_ENFORCED})
ITEM = _keys("key path mode")
PROJECTED = _keys("sources defaultMode")
PROJECTION = _keys("serviceAccountToken configMap secret downwardAPI")
SA_TOKEN = _keys("path expirationSeconds audience")
PROJECTED_SOURCE = _keys("name items optional")
DOWNWARD_API = _keys("items")
DOWNWARD_ITEM = _keys("path fieldRef mode")
# Downward API files the runner writes; labels/annotations would have to follow PATCHes (not emulated).
DOWNWARD_FIELDS = ("metadata.name", "metadata.namespace", "metadata.uid")
KUBE_ROOT_CA = "kube-root-ca.crt"
"""The ConfigMap the root CA publisher puts in every namespace (key ca.crt): the runner's CA for its region."""
TOKEN_MIN_SECONDS = 600  # API validation of serviceAccountToken.expirationSeconds: at least 10 minutes
TOKEN_MAX_SECONDS = 2**32
HOST_ALIAS = _keys("ip hostnames")
CLAIM = _keys("apiVersion kind metadata spec")
CLAIM_META = _keys("name labels annotations")
CLAIM_SPEC = _keys(
    "accessModes resources",
    {"storageClassName": "every claim is a directory on the host"},
    {"volumeMode": "Filesystem"},
)

PROBE_KINDS = {"startup": "startupProbe", "liveness": "livenessProbe", "readiness": "readinessProbe"}
FIELD_PATHS = {
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "status.podIP",
    "status.podIPs",
    "status.hostIP",
    "spec.nodeName",
    "spec.serviceAccountName",
}
FIELD_PATH_KEYED = re.compile(r"metadata\.(labels|annotations)\['([^']+)'\]$")
ENV_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*$")

# containerd's default capability set, by number (linux/capability.h); drop removes from it.
DEFAULT_CAPS = {
    "CHOWN": 0,
    "DAC_OVERRIDE": 1,
    "FOWNER": 3,
    "FSETID": 4,
    "KILL": 5,
    "SETGID": 6,
    "SETUID": 7,
    "SETPCAP": 8,
    "NET_BIND_SERVICE": 10,
    "NET_RAW": 13,
    "SYS_CHROOT": 18,
    "MKNOD": 27,
    "AUDIT_WRITE": 29,
    "SETFCAP": 31,
}
OTHER_CAPS = (
    "DAC_READ_SEARCH LINUX_IMMUTABLE NET_BROADCAST NET_ADMIN IPC_LOCK IPC_OWNER SYS_MODULE SYS_RAWIO "
    "SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG LEASE "
    "AUDIT_CONTROL MAC_OVERRIDE MAC_ADMIN SYSLOG WAKE_ALARM BLOCK_SUSPEND AUDIT_READ PERFMON BPF "
    "CHECKPOINT_RESTORE"
)
ALL_CAPS = set(DEFAULT_CAPS) | set(OTHER_CAPS.split())


@dataclass(frozen=True)
class HttpGet:
    """An httpGet probe action, resolved: the kubelet GETs ``http://<pod IP>:<port><path>``."""

    path: str
    port: int
    scheme: str = "HTTP"


@dataclass(frozen=True)
class Probe:
    kind: str
    command: tuple[str, ...]
    """The exec probe's command; empty for an httpGet probe."""
    timeout: float
    period: float
    initial_delay: float
    success_threshold: int
    failure_threshold: int
    http_get: HttpGet | None = None


@dataclass(frozen=True)
class Mount:
    volume: str
    path: str
    read_only: bool
    sub_path: str


@dataclass(frozen=True)
class ContainerPlan:
    name: str
    init: bool
    image: Image
    raw: Manifest
    """The container as written: env, envFrom, command and args are resolved at start (they need the pod IP)."""
    command: tuple[str, ...]
    working_dir: str
    mounts: tuple[Mount, ...]
    probes: Mapping[str, Probe]
    ports: Mapping[str, int]
    uid: int
    gid: int
    groups: tuple[int, ...]
    read_only_root: bool
    no_new_privs: bool
    capabilities: tuple[int, ...]
    """Bounding set; an unprivileged user gets none of them in its effective set."""
    pre_stop: tuple[str, ...] = ()
    """``lifecycle.preStop.exec.command`` (not expanded, as by the kubelet); empty: no hook."""


@dataclass(frozen=True)
class VolumePlan:
    name: str
    kind: str
    """secret | configMap | emptyDir | claim | projected"""
    source: Manifest


@dataclass(frozen=True)
class PodPlan:
    statefulset: str
    ordinal: int
    name: str
    namespace: str
    subdomain: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    init_containers: tuple[ContainerPlan, ...]
    containers: tuple[ContainerPlan, ...]
    volumes: Mapping[str, VolumePlan]
    fs_group: int | None
    fs_group_policy: str
    grace_seconds: int
    enable_service_links: bool
    host_aliases: tuple[tuple[str, tuple[str, ...]], ...]
    ignored: tuple[str, ...]
    """Fields accepted without effect, with the reason (for reports)."""
    service_account: str = "default"
    fs_user: int | None = None
    """The kubelet's FsUser (pkg/volume/util FsUserFrom): the runAsUser every container sets explicitly
    (pod or container securityContext) when they all agree, else None. Owner of projected token files."""
    replicas: int = 1
    first_ordinal: int = 0
    pod_management_policy: str = "OrderedReady"
    template_labels: Mapping[str, str] = field(default_factory=dict)
    """The labels the pod object gets when it is created: the template's plus the controller's."""


class _Checker:
    def __init__(self) -> None:
        self.ignored: list[str] = []

    def __call__(self, obj: Any, keys: Keys, path: str) -> Mapping[str, Any]:
        if not isinstance(obj, Mapping):
            raise UnsupportedPodFeature(path, f"expected an object, got {obj!r}")
        for key, value in obj.items():
            if value is None or key in keys.handled:
                continue
            if key in keys.ignored:
                self.ignored.append(f"{path}.{key}: {keys.ignored[key]}")
            elif key in keys.defaults:
                default = keys.defaults[key]
                if value != default:
                    raise UnsupportedPodFeature(f"{path}.{key}", f"{value!r} not emulated (only {default!r})")
            else:
                raise UnsupportedPodFeature(f"{path}.{key}")
        return obj

    def items(self, obj: Any, keys: Keys, path: str) -> list[Mapping[str, Any]]:
        if obj is None:
            return []
        if not isinstance(obj, list):
            raise UnsupportedPodFeature(path, "expected a list")
        return [self(item, keys, f"{path}[{i}]") for i, item in enumerate(obj)]


def plan_pod(store: ObjectStore, statefulset: str, ordinal: int, namespace: str | None = None) -> PodPlan:
    sts = store.statefulset(statefulset, namespace)
    check = _Checker()
    check(sts, STATEFULSET, "StatefulSet")
    if sts.get("apiVersion") != "apps/v1":
        raise UnsupportedPodFeature("StatefulSet.apiVersion", f"{sts.get('apiVersion')!r}, expected apps/v1")
    spec = check(sts["spec"], STS_SPEC, "spec")
    ns = namespace_of(sts)
    start = as_int((spec.get("ordinals") or {}).get("start", 0), "spec.ordinals.start")
    replicas = as_int(spec.get("replicas", 1), "spec.replicas")
    if not start <= ordinal < start + replicas:
        raise ValueError(f"{statefulset} has ordinals {start}..{start + replicas - 1}, not {ordinal}")
    template = spec["template"]
    meta = check(template.get("metadata") or {}, POD_META, "spec.template.metadata")
    labels = dict(meta.get("labels") or {})
    selector = (spec.get("selector") or {}).get("matchLabels") or {}
    if set(spec.get("selector") or {}) - {"matchLabels"} or any(labels.get(k) != v for k, v in selector.items()):
        raise UnsupportedPodFeature("spec.selector", "must be matchLabels that the template's labels satisfy")
    name = f"{statefulset}-{ordinal}"
    # What the StatefulSet controller adds (pkg/controller/statefulset/stateful_set_utils.go:
    # StatefulSetPodNameLabel, PodIndexLabel, ControllerRevisionHashLabelKey).
    labels.update(
        {
            "statefulset.kubernetes.io/pod-name": name,
            "apps.kubernetes.io/pod-index": str(ordinal),
            "controller-revision-hash": revision_hash(statefulset, template),
        }
    )
    policy_name = str(spec.get("podManagementPolicy") or "OrderedReady")
    if policy_name not in ("OrderedReady", "Parallel"):
        raise UnsupportedPodFeature("spec.podManagementPolicy", f"{policy_name!r} not emulated")

    path = "spec.template.spec"
    pod = check(template["spec"], POD_SPEC, path)
    if pod.get("automountServiceAccountToken") is not False:
        raise UnsupportedPodFeature(
            f"{path}.automountServiceAccountToken", "the service account token is not emulated: set it to false"
        )
    enable_links = pod.get("enableServiceLinks", True) is not False
    if enable_links and store.of_kind("Service", ns):
        raise UnsupportedPodFeature(
            f"{path}.enableServiceLinks", "service environment variables are not emulated: set it to false"
        )
    pod_sc = check(pod.get("securityContext") or {}, POD_SECURITY, f"{path}.securityContext")
    _check_seccomp(check, pod_sc, f"{path}.securityContext")
    fs_group = _opt_int(pod_sc, "fsGroup", f"{path}.securityContext")
    policy = pod_sc.get("fsGroupChangePolicy") or "Always"
    if policy not in ("Always", "OnRootMismatch"):
        raise UnsupportedPodFeature(f"{path}.securityContext.fsGroupChangePolicy", repr(policy))

    volumes = _plan_volumes(check, pod, spec, name, path)
    aliases = tuple(
        (str(a["ip"]), tuple(a.get("hostnames") or ()))
        for a in check.items(pod.get("hostAliases"), HOST_ALIAS, f"{path}.hostAliases")
    )

    def containers(key: str, init: bool) -> tuple[ContainerPlan, ...]:
        return tuple(
            _plan_container(
                check, c, f"{path}.{key}[{i}]", init=init, pod_sc=pod_sc, fs_group=fs_group, volumes=volumes
            )
            for i, c in enumerate(pod.get(key) or [])
        )

    init_containers = containers("initContainers", True)
    main = containers("containers", False)
    if not main:
        raise UnsupportedPodFeature(f"{path}.containers", "a pod needs at least one container")
    names = [c.name for c in init_containers + main]
    if len(set(names)) != len(names):
        raise UnsupportedPodFeature(path, f"duplicate container names {names}")
    account = str(pod.get("serviceAccountName") or "default")
    if account != "default" and store.find("ServiceAccount", ns, account) is None:
        # ServiceAccount admission refuses the pod: the StatefulSet controller records FailedCreate.
        raise PodStartError(
            f'StatefulSet {statefulset}: create Pod {name} failed: pods "{name}" is forbidden: '
            f'error looking up service account {ns}/{account}: serviceaccount "{account}" not found'
        )
    explicit = {c.name: _explicit_uid(c.raw, pod_sc) for c in init_containers + main}
    uids = set(explicit.values())
    fs_user = next(iter(uids)) if len(uids) == 1 and None not in uids else None
    return PodPlan(
        statefulset=statefulset,
        ordinal=ordinal,
        name=name,
        namespace=ns,
        subdomain=str(spec.get("serviceName") or ""),
        labels=labels,
        annotations=dict(meta.get("annotations") or {}),
        init_containers=init_containers,
        containers=main,
        volumes=volumes,
        fs_group=fs_group,
        fs_group_policy=policy,
        grace_seconds=as_int(pod.get("terminationGracePeriodSeconds", 30), f"{path}.terminationGracePeriodSeconds"),
        enable_service_links=enable_links,
        host_aliases=aliases,
        ignored=tuple(check.ignored),
        service_account=account,
        fs_user=fs_user,
        replicas=replicas,
        first_ordinal=start,
        pod_management_policy=policy_name,
        template_labels=dict(labels),
    )


def _explicit_uid(container: Mapping[str, Any], pod_sc: Mapping[str, Any]) -> int | None:
    """securitycontext.DetermineEffectiveRunAsUser: the container's runAsUser, else the pod's; None if neither."""
    value = (container.get("securityContext") or {}).get("runAsUser")
    value = pod_sc.get("runAsUser") if value is None else value
    return None if value is None else as_int(value, "runAsUser")


SAFE_ENCODE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def revision_hash(statefulset: str, template: Mapping[str, Any]) -> str:
    """A ``controller-revision-hash`` value shaped like the controller's (``<name>-<SafeEncodeString(
    fnv32a)>``, apimachinery util/rand.SafeEncodeString): stable for a template, different when it
    changes. Not bit-identical: the controller hashes its ControllerRevision's patch bytes."""
    digest = 0x811C9DC5
    for byte in json.dumps(template, sort_keys=True, default=str).encode():
        digest = ((digest ^ byte) * 0x01000193) & 0xFFFFFFFF
    encoded = "".join(SAFE_ENCODE_ALPHABET[ord(c) % len(SAFE_ENCODE_ALPHABET)] for c in str(digest))
    return f"{statefulset}-{encoded}"


def _opt_int(obj: Mapping[str, Any], key: str, path: str) -> int | None:
    return None if obj.get(key) is None else as_int(obj[key], f"{path}.{key}")


def _check_seccomp(check: _Checker, sc: Mapping[str, Any], path: str) -> None:
    profile = sc.get("seccompProfile")
    if profile is not None:
        check(profile, SECCOMP, f"{path}.seccompProfile")
        if profile.get("type") not in ("RuntimeDefault", "Unconfined"):
            raise UnsupportedPodFeature(f"{path}.seccompProfile.type", f"{profile.get('type')!r} not emulated")
        if profile.get("type") == "RuntimeDefault":
            check.ignored.append(f"{path}.seccompProfile: {NOT_ENFORCED}")


def _plan_volumes(
    check: _Checker, pod: Mapping[str, Any], sts_spec: Mapping[str, Any], pod_name: str, path: str
) -> dict[str, VolumePlan]:
    volumes: dict[str, VolumePlan] = {}
    for i, v in enumerate(check.items(pod.get("volumes"), VOLUME, f"{path}.volumes")):
        vpath = f"{path}.volumes[{i}]"
        kinds = [k for k in ("secret", "configMap", "emptyDir", "projected") if v.get(k) is not None]
        if len(kinds) != 1:
            raise UnsupportedPodFeature(vpath, "exactly one of secret, configMap, emptyDir, projected is emulated")
        kind = kinds[0]
        source = v[kind]
        if kind == "projected":
            _check_projected(check, source, f"{vpath}.projected")
            volumes[v["name"]] = VolumePlan(v["name"], kind, dict(source))
            continue
        keys = {"secret": SECRET_VOLUME, "configMap": CONFIG_MAP_VOLUME, "emptyDir": EMPTY_DIR}[kind]
        check(source, keys, f"{vpath}.{kind}")
        if kind == "emptyDir" and source.get("medium", "") not in ("", "Memory"):
            raise UnsupportedPodFeature(f"{vpath}.emptyDir.medium", repr(source.get("medium")))
        for j, item in enumerate(check.items(source.get("items"), ITEM, f"{vpath}.{kind}.items")):
            _relative_path(str(item.get("path", "")), f"{vpath}.{kind}.items[{j}].path")
        volumes[v["name"]] = VolumePlan(v["name"], kind, dict(source))
    for i, claim in enumerate(check.items(sts_spec.get("volumeClaimTemplates"), CLAIM, "spec.volumeClaimTemplates")):
        cpath = f"spec.volumeClaimTemplates[{i}]"
        meta = check(claim.get("metadata") or {}, CLAIM_META, f"{cpath}.metadata")
        cspec = check(claim.get("spec") or {}, CLAIM_SPEC, f"{cpath}.spec")
        modes = cspec.get("accessModes") or []
        if not set(modes) <= {"ReadWriteOnce", "ReadWriteOncePod"}:
            raise UnsupportedPodFeature(f"{cpath}.spec.accessModes", f"{modes} not emulated")
        check.ignored.append(f"{cpath}.spec.resources: storage size {NOT_ENFORCED}")
        # The StatefulSet controller's volume wins over a template volume of the same name.
        volumes[meta["name"]] = VolumePlan(meta["name"], "claim", {"claimName": f"{meta['name']}-{pod_name}"})
    return volumes


def _check_projected(check: _Checker, source: Any, path: str) -> None:
    """A projected volume of serviceAccountToken, configMap (kube-root-ca.crt is the runner's CA),
    secret and downwardAPI (name, namespace, uid) sources: what kube-api-access-* volumes hold."""
    check(source, PROJECTED, path)
    sources = source.get("sources") or []
    if not isinstance(sources, list) or not sources:
        raise UnsupportedPodFeature(f"{path}.sources", "expected a non-empty list")
    for i, item in enumerate(sources):
        spath = f"{path}.sources[{i}]"
        check(item, PROJECTION, spath)
        kinds = [k for k in ("serviceAccountToken", "configMap", "secret", "downwardAPI") if item.get(k) is not None]
        if len(kinds) != 1:
            raise UnsupportedPodFeature(spath, "exactly one of serviceAccountToken, configMap, secret, downwardAPI")
        kind, body = kinds[0], item[kinds[0]]
        if kind == "serviceAccountToken":
            check(body, SA_TOKEN, f"{spath}.serviceAccountToken")
            _relative_path(str(body.get("path", "")), f"{spath}.serviceAccountToken.path")
            seconds = as_int(body.get("expirationSeconds", 3600), f"{spath}.serviceAccountToken.expirationSeconds")
            if not TOKEN_MIN_SECONDS <= seconds <= TOKEN_MAX_SECONDS:
                raise UnsupportedPodFeature(
                    f"{spath}.serviceAccountToken.expirationSeconds",
                    f"{seconds}: the API server refuses less than 10 minutes (and more than 2^32 s)",
                )
        elif kind == "downwardAPI":
            for j, entry in enumerate(check.items(check(body, DOWNWARD_API, spath).get("items"), DOWNWARD_ITEM, spath)):
                epath = f"{spath}.downwardAPI.items[{j}]"
                _relative_path(str(entry.get("path", "")), f"{epath}.path")
                field_path = check(entry.get("fieldRef"), FIELD_REF, f"{epath}.fieldRef").get("fieldPath")
                if field_path not in DOWNWARD_FIELDS:
                    raise UnsupportedPodFeature(f"{epath}.fieldRef.fieldPath", f"{field_path!r} not emulated")
        else:
            check(body, PROJECTED_SOURCE, f"{spath}.{kind}")
            for j, entry in enumerate(check.items(body.get("items"), ITEM, f"{spath}.{kind}.items")):
                _relative_path(str(entry.get("path", "")), f"{spath}.{kind}.items[{j}].path")


def _relative_path(value: str, path: str) -> str:
    parts = value.split("/")
    if not value or value.startswith("/") or ".." in parts or value.startswith(".."):
        raise UnsupportedPodFeature(path, f"{value!r} must be a relative path without '..'")
    return value


def _plan_container(
    check: _Checker,
    c: Mapping[str, Any],
    path: str,
    *,
    init: bool,
    pod_sc: Mapping[str, Any],
    fs_group: int | None,
    volumes: Mapping[str, VolumePlan],
) -> ContainerPlan:
    check(c, CONTAINER, path)
    name = str(c["name"])
    image = resolve_image(str(c.get("image", "")))
    if not c.get("command"):
        raise UnsupportedPodFeature(f"{path}.command", "the image's entrypoint is not emulated: set command")
    if init and any(c.get(p) for p in PROBE_KINDS.values()):
        raise UnsupportedPodFeature(path, "init containers cannot have probes")

    sc = check(c.get("securityContext") or {}, CONTAINER_SECURITY, f"{path}.securityContext")
    _check_seccomp(check, sc, f"{path}.securityContext")

    def setting(key: str) -> Any:
        return sc.get(key) if sc.get(key) is not None else pod_sc.get(key)

    # As containerd: runAsUser/runAsGroup win; without them the image's USER applies. A runAsUser
    # without runAsGroup takes the user's group from the image's /etc/passwd (0 if it has none).
    image_uid, image_gid = image.user or (0, None)
    uid = as_int(setting("runAsUser"), f"{path}.runAsUser") if setting("runAsUser") is not None else image_uid
    gid = as_int(setting("runAsGroup"), f"{path}.runAsGroup") if setting("runAsGroup") is not None else None
    if gid is None:
        gid = image_gid if setting("runAsUser") is None and image_gid is not None else _passwd_gid(image, uid)
    if setting("runAsNonRoot") and uid == 0:
        raise PodStartError(f"{path}: container has runAsNonRoot and image will run as root")
    groups = [*_member_groups(image, uid)]
    if fs_group is not None:
        groups.append(fs_group)
    groups += [as_int(g, f"{path}.supplementalGroups") for g in pod_sc.get("supplementalGroups") or []]

    caps = dict(DEFAULT_CAPS)
    cap_spec = check(sc.get("capabilities") or {}, CAPABILITIES, f"{path}.securityContext.capabilities")
    for cap in cap_spec.get("drop") or []:
        cname = str(cap).upper().removeprefix("CAP_")
        if cname == "ALL":
            caps.clear()
        elif cname in ALL_CAPS:
            caps.pop(cname, None)
        else:
            raise UnsupportedPodFeature(f"{path}.securityContext.capabilities.drop", f"unknown capability {cap!r}")

    mounts = []
    for i, m in enumerate(check.items(c.get("volumeMounts"), MOUNT, f"{path}.volumeMounts")):
        mpath = f"{path}.volumeMounts[{i}]"
        if m["name"] not in volumes:
            raise UnsupportedPodFeature(f"{mpath}.name", f"no volume named {m['name']!r}")
        target = str(m["mountPath"])
        if not target.startswith("/") or posixpath.normpath(target) in ("/", "/proc", "/dev", "/sys"):
            raise UnsupportedPodFeature(f"{mpath}.mountPath", f"{target!r} not emulated")
        sub = _relative_path(str(m["subPath"]), f"{mpath}.subPath") if m.get("subPath") else ""
        mounts.append(Mount(str(m["name"]), posixpath.normpath(target), bool(m.get("readOnly", False)), sub))
    targets = [m.path for m in mounts]
    if len(set(targets)) != len(targets):
        raise UnsupportedPodFeature(f"{path}.volumeMounts", f"duplicate mountPath in {targets}")

    for i, e in enumerate(check.items(c.get("env"), ENV, f"{path}.env")):
        _check_env(check, e, f"{path}.env[{i}]")
    for i, e in enumerate(check.items(c.get("envFrom"), ENV_FROM, f"{path}.envFrom")):
        refs = [k for k in ("secretRef", "configMapRef") if e.get(k) is not None]
        if len(refs) != 1:
            raise UnsupportedPodFeature(f"{path}.envFrom[{i}]", "exactly one of secretRef, configMapRef")
        check(e[refs[0]], SOURCE_REF, f"{path}.envFrom[{i}].{refs[0]}")

    ports = {}
    for i, p in enumerate(check.items(c.get("ports"), PORT, f"{path}.ports")):
        ports[str(p.get("name") or i)] = as_int(p["containerPort"], f"{path}.ports[{i}].containerPort")

    probes = {}
    for kind, key in PROBE_KINDS.items():
        if c.get(key) is not None:
            probes[kind] = _plan_probe(check, c[key], kind, f"{path}.{key}", ports)
    pre_stop = _plan_lifecycle(check, c.get("lifecycle"), f"{path}.lifecycle", init=init)

    return ContainerPlan(
        name=name,
        init=init,
        image=image,
        raw=dict(c),
        command=tuple(str(a) for a in c["command"]),
        working_dir=str(c.get("workingDir") or image.workdir),
        mounts=tuple(mounts),
        probes=probes,
        ports=ports,
        uid=uid,
        gid=gid,
        groups=tuple(dict.fromkeys(groups)),
        read_only_root=bool(sc.get("readOnlyRootFilesystem", False)),
        no_new_privs=sc.get("allowPrivilegeEscalation") is False,
        capabilities=tuple(sorted(caps.values())),
        pre_stop=pre_stop,
    )


def _plan_lifecycle(check: _Checker, lifecycle: Any, path: str, *, init: bool) -> tuple[str, ...]:
    """The preStop exec command. Refused: postStart and stopSignal (not emulated), hooks on init
    containers (API validation allows them only on restartable ones, which are refused), and the
    httpGet, sleep and tcpSocket handlers (not emulated; tcpSocket the kubelet does not run either)."""
    if lifecycle is None:
        return ()
    if init:
        raise UnsupportedPodFeature(path, "init containers cannot have lifecycle hooks")
    hooks = check(lifecycle, LIFECYCLE, path)
    if hooks.get("preStop") is None:
        return ()
    handler = hooks["preStop"]
    if isinstance(handler, Mapping):
        for action in ("httpGet", "sleep", "tcpSocket"):
            if handler.get(action) is not None:
                raise UnsupportedPodFeature(f"{path}.preStop.{action}", "not emulated (only exec)")
    check(handler, HOOK_HANDLER, f"{path}.preStop")
    if handler.get("exec") is None:
        raise UnsupportedPodFeature(f"{path}.preStop", "needs an exec handler")
    command = check(handler["exec"], EXEC, f"{path}.preStop.exec").get("command") or []
    if not isinstance(command, list) or not command:
        raise UnsupportedPodFeature(f"{path}.preStop.exec.command", "expected a non-empty list")
    return tuple(str(a) for a in command)


def _check_env(check: _Checker, e: Mapping[str, Any], path: str) -> None:
    if not ENV_NAME.match(str(e.get("name", ""))):
        raise UnsupportedPodFeature(f"{path}.name", f"{e.get('name')!r} is not a valid variable name")
    source = e.get("valueFrom")
    if source is None:
        return
    check(source, ENV_FROM_SOURCE, f"{path}.valueFrom")
    kinds = [k for k in ("secretKeyRef", "configMapKeyRef", "fieldRef") if source.get(k) is not None]
    if len(kinds) != 1:
        raise UnsupportedPodFeature(f"{path}.valueFrom", "exactly one of secretKeyRef, configMapKeyRef, fieldRef")
    if kinds[0] == "fieldRef":
        field_path = check(source["fieldRef"], FIELD_REF, f"{path}.valueFrom.fieldRef").get("fieldPath", "")
        if field_path not in FIELD_PATHS and not FIELD_PATH_KEYED.match(field_path):
            raise UnsupportedPodFeature(f"{path}.valueFrom.fieldRef.fieldPath", f"{field_path!r} not emulated")
    else:
        check(source[kinds[0]], KEY_REF, f"{path}.valueFrom.{kinds[0]}")


def _plan_probe(check: _Checker, probe: Any, kind: str, path: str, ports: Mapping[str, int]) -> Probe:
    check(probe, PROBE, path)
    actions = [k for k in ("exec", "httpGet") if probe.get(k) is not None]
    if len(actions) != 1:
        raise UnsupportedPodFeature(path, "exactly one of exec, httpGet is emulated (not tcpSocket, grpc)")
    command: list[Any] = []
    http_get = None
    if actions[0] == "exec":
        command = check(probe["exec"], EXEC, f"{path}.exec").get("command") or []
        if not command:
            raise UnsupportedPodFeature(f"{path}.exec.command", "empty command")
    else:
        http_get = _plan_http_get(check(probe["httpGet"], HTTP_GET, f"{path}.httpGet"), f"{path}.httpGet", ports)

    def num(key: str, default: int) -> int:
        return as_int(probe.get(key, default), f"{path}.{key}")

    success = num("successThreshold", 1)
    if kind != "readiness" and success != 1:
        raise UnsupportedPodFeature(f"{path}.successThreshold", "must be 1 for startup and liveness probes")
    return Probe(
        kind,
        tuple(str(a) for a in command),
        float(num("timeoutSeconds", 1)),
        float(num("periodSeconds", 10)),
        float(num("initialDelaySeconds", 0)),
        success,
        num("failureThreshold", 3),
        http_get,
    )


def _plan_http_get(action: Mapping[str, Any], path: str, ports: Mapping[str, int]) -> HttpGet:
    """The kubelet's resolution (pkg/probe/util.go ResolveContainerPort): a string port is a port name
    of this container, else a number written as a string; the result must be 1-65535."""
    scheme = str(action.get("scheme") or "HTTP")
    if scheme != "HTTP":
        raise UnsupportedPodFeature(f"{path}.scheme", f"{scheme!r} not emulated (only HTTP)")
    raw = action.get("port")
    if isinstance(raw, str):
        # A port name has a letter (IANA_SVC_NAME); unnamed ports are keyed by index in ``ports``.
        if raw.isdigit():
            port = int(raw)
        elif raw in ports:
            port = ports[raw]
        else:
            raise UnsupportedPodFeature(
                f"{path}.port", f"no container port named {raw!r} (the kubelet's probe would fail forever)"
            )
    else:
        port = as_int(raw, f"{path}.port")
    if not 0 < port < 65536:
        raise UnsupportedPodFeature(f"{path}.port", f"{port} is not a valid port")
    request_path = str(action.get("path") or "/")
    if not request_path.startswith("/"):
        request_path = "/" + request_path
    return HttpGet(request_path, port, scheme)


def _passwd(image: Image) -> list[list[str]]:
    return [line.split(":") for line in image.files.get("/etc/passwd", "").splitlines() if line.count(":") >= 6]


def _passwd_gid(image: Image, uid: int) -> int:
    return next((int(f[3]) for f in _passwd(image) if int(f[2]) == uid), 0)


def _member_groups(image: Image, uid: int) -> list[int]:
    """Groups listing the user as a member in the image's /etc/group, as the container runtime adds them."""
    user = next((f[0] for f in _passwd(image) if int(f[2]) == uid), None)
    groups = [line.split(":") for line in image.files.get("/etc/group", "").splitlines() if line.count(":") == 3]
    return [int(g[2]) for g in groups if user is not None and user in g[3].split(",")]
