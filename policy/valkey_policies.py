"""CrossGuard policies for Valkey workloads, as plain functions the tests call directly.

Each ``check_*`` function takes a resource's type and its inputs the way CrossGuard hands them to a
policy: Kubernetes camelCase, secrets already decrypted, numbers as floats, and during a preview
any value not known yet raising ``UnknownValueError`` when read (the SDK then reports the policy
as "can't run during preview" instead of passing it). They return violation messages, which never
quote a secret value: messages end up in CI logs and pull-request comments.

The ``validate_*`` functions adapt them to CrossGuard's ``(args, report_violation)`` signature and
``POLICIES`` is what ``__main__.py`` puts in the pack.

A *Valkey pod* is a pod spec (Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob)
with a container that runs a ``valkey`` image or ``valkey-server``. Every container of such a pod
is checked. A *DR primary* is a workload labelled ``valkey.io/dr: "true"`` and
``valkey.io/role: primary`` (labels the program sets on the StatefulSet and its config Secret), or,
at stack level and whatever its labels, a StatefulSet behind a LoadBalancer Service that carries
the external-dns hostname annotation (how the other region reaches a primary).
"""

from __future__ import annotations

import base64
import binascii
import posixpath
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError

DR_LABEL = "valkey.io/dr"
ROLE_LABEL = "valkey.io/role"
EXTERNAL_DNS_HOSTNAME = "external-dns.alpha.kubernetes.io/hostname"
DEFAULT_DATA_DIR = "/data"
"""Where Valkey writes when valkey.conf sets no ``dir``: the official image's working directory."""

STATEFULSET = "kubernetes:apps/v1:StatefulSet"
SECRET = "kubernetes:core/v1:Secret"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
SERVICE = "kubernetes:core/v1:Service"
_TEMPLATE = ("spec", "template", "spec")
POD_SPEC_PATHS: dict[str, tuple[str, ...]] = {
    "kubernetes:core/v1:Pod": ("spec",),
    "kubernetes:apps/v1:Deployment": _TEMPLATE,
    STATEFULSET: _TEMPLATE,
    "kubernetes:apps/v1:DaemonSet": _TEMPLATE,
    "kubernetes:apps/v1:ReplicaSet": _TEMPLATE,
    "kubernetes:batch/v1:Job": _TEMPLATE,
    "kubernetes:batch/v1:CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}

CLIENTS = {"valkey-cli", "redis-cli"}
SERVERS = {"valkey-server", "redis-server"}  # the valkey image links redis-server to valkey-server
PASSWORD_FLAG_WORDS = {
    "PASSWORD",
    "PASSWD",
    "PASS",
    "PASSPHRASE",
    "REQUIREPASS",
    "MASTERAUTH",
    "AUTH",
    "SECRET",
    "TOKEN",
}
"""Last word of an option that takes a password: --requirepass, --masterauth, --redis.password..."""
CLIENT_PASSWORD_FLAGS = {"-a"}
_URI_WITH_PASSWORD = re.compile(r"\b(?:redis|rediss|valkey|valkeys)://[^\s:@/]*:[^\s@/]+@", re.IGNORECASE)
_SHELL_ASSIGNMENT = re.compile(r"(?:^|[\s;&|(`])([A-Za-z_][A-Za-z0-9_]*)=(\S*)")
_CONF_PASSWORD = re.compile(r"(?<![\w-])(requirepass|masterauth)[ \t]+(\S+)", re.IGNORECASE)
_ACL_SETUSER = re.compile(r"\bacl\s+setuser\b([^;&|\n]*)", re.IGNORECASE)
_NOT_LITERAL_START = set("$\\|;&<>()`")
_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


# --- reading inputs -------------------------------------------------------------------------------


def _dig(value: Any, *path: str) -> Any:
    """``value[path[0]][path[1]]...``, or None where a key is missing."""
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return value


def _items(value: Any) -> list[Any]:
    """A list input as a list (None or a non-list gives an empty one)."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        return list(value)
    return []


def _strings(value: Any) -> list[str]:
    return [v for v in _items(value) if isinstance(v, str)]


def _describe(resource_type: str, props: Mapping[str, Any], fallback: str) -> str:
    """``StatefulSet sessions``: the kind and metadata.name (or the Pulumi name while unknown)."""
    try:
        name = _dig(props, "metadata", "name")
    except UnknownValueError:
        name = None
    return f"{resource_type.rsplit(':', 1)[-1]} {name if isinstance(name, str) else fallback}"


def _labels(props: Mapping[str, Any]) -> dict[str, Any]:
    labels = _dig(props, "metadata", "labels")
    return dict(labels) if isinstance(labels, Mapping) else {}


def pod_spec(resource_type: str, props: Mapping[str, Any]) -> Mapping[str, Any] | None:
    path = POD_SPEC_PATHS.get(resource_type)
    spec = _dig(props, *path) if path else None
    return spec if isinstance(spec, Mapping) else None


def all_containers(spec: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Init, regular and ephemeral containers: each runs in the pod, each is checked."""
    found = []
    for key in ("initContainers", "containers", "ephemeralContainers"):
        found += [c for c in _items(spec.get(key)) if isinstance(c, Mapping)]
    return found


def argv(container: Mapping[str, Any]) -> list[str]:
    return _strings(container.get("command")) + _strings(container.get("args"))


def _image_name(image: str) -> str:
    """``docker.io/valkey/valkey:8.1@sha256:..`` -> ``valkey``."""
    last = image.split("@", 1)[0].rsplit("/", 1)[-1]
    return last.split(":", 1)[0]


def _segments(container: Mapping[str, Any]) -> list[list[str]]:
    """Simple commands the container runs: its argv, plus each shell command inside an argument
    that holds a script (``sh -c '...'``), split on ``; | & ( )`` and newlines, quotes dropped."""
    args = argv(container)
    segments = [args]
    for arg in args:
        if any(c.isspace() for c in arg):
            for part in re.split(r"\|\||&&|[;&|\n()`]", arg):
                words = [w.strip("\"'") for w in part.split()]
                if words:
                    segments.append(words)
    return segments


def _program(words: list[str]) -> str | None:
    """The command a simple command runs, past ``VAR=value`` prefixes and ``exec``/``env``."""
    for word in words:
        if re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", word) or word in ("exec", "env", "command", "nice"):
            continue
        return posixpath.basename(word)
    return None


def runs_server(container: Mapping[str, Any]) -> bool:
    """The container runs valkey-server: named in its argv or a script, or the image's default
    command (a valkey image with no ``command``, arguments empty or options/config file only)."""
    if any(_program(words) in SERVERS for words in _segments(container)):
        return True
    image = container.get("image")
    args = _strings(container.get("args"))
    return (
        not _items(container.get("command"))
        and isinstance(image, str)
        and "valkey" in _image_name(image)
        and (not args or args[0].startswith("-") or args[0].endswith(".conf"))
    )


def is_valkey_pod(spec: Mapping[str, Any]) -> bool:
    """A container runs a valkey image or valkey-server (a Redis pod is not in scope)."""
    for container in all_containers(spec):
        image = container.get("image")
        if isinstance(image, str) and "valkey" in _image_name(image):
            return True
        if any(_program(words) == "valkey-server" for words in _segments(container)):
            return True
    return False


def _valkey_pod(resource_type: str, props: Mapping[str, Any]) -> Mapping[str, Any] | None:
    spec = pod_spec(resource_type, props)
    return spec if spec is not None and is_valkey_pod(spec) else None


# --- passwords ------------------------------------------------------------------------------------


def password_like(name: str) -> bool:
    """Environment/shell variable names that hold a password or token, not a path to one or a
    switch: VALKEY_PASSWORD, REDISCLI_AUTH, MASTERAUTH yes; VALKEY_PASSWORD_FILE, ALLOW_EMPTY_PASSWORD no."""
    words = [w for w in re.split(r"[_\-.]", name.upper()) if w]
    if not words or words[-1] in ("FILE", "PATH", "DIR", "FILENAME", "NAME", "REF") or words[0] in ("ALLOW", "USE"):
        return False
    return any(
        "PASS" in w or "SECRET" in w or w.endswith("AUTH") or w in ("TOKEN", "CREDENTIAL", "CREDENTIALS") for w in words
    )


def password_flag(word: str) -> str | None:
    """The option name if ``word`` is an option that takes a password (``--redis.password=...``,
    ``--requirepass``), not a path to one (``--redis.password-file``) or a switch (``--no-auth-warning``)."""
    if not word.startswith("-"):
        return None
    flag = word.split("=", 1)[0]
    words = [w for w in re.split(r"[_\-.]", flag.upper()) if w]
    return flag if words and words[-1] in PASSWORD_FLAG_WORDS else None


def _literal(value: str) -> bool:
    """A value written out in the manifest, not a reference ($VAR, $(cat file)) or a switch."""
    stripped = value.lstrip("\"'")
    if not stripped or stripped[0] in _NOT_LITERAL_START:
        return False
    return stripped.rstrip("\"';").lower() not in ("", "yes", "no", "true", "false", "0", "1")


def command_line_passwords(container: Mapping[str, Any]) -> list[str]:
    """Why a container's command line (or a probe's or hook's) carries a password; empty if not."""
    found: list[str] = []
    commands = {"command/args": container}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        commands[probe] = {"command": _dig(container, probe, "exec", "command")}
    for hook in ("postStart", "preStop"):
        commands[f"lifecycle.{hook}"] = {"command": _dig(container, "lifecycle", hook, "exec", "command")}
    for where, source in commands.items():
        for words in _segments(source):
            program = _program(words)
            for word in words:
                flag = password_flag(word) or (word if program in CLIENTS and word in CLIENT_PASSWORD_FLAGS else None)
                if flag:
                    found.append(f"{where} passes {flag}")
        text = " ".join(argv(source))
        if _URI_WITH_PASSWORD.search(text):
            found.append(f"{where} holds a URI with a password")
        for name, value in _SHELL_ASSIGNMENT.findall(text):
            if password_like(name) and _literal(value):
                found.append(f"{where} sets {name} to a literal value")
        for directive, value in _CONF_PASSWORD.findall(text):
            if _literal(value):
                found.append(f"{where} writes {directive.lower()} with a literal value")
        for rules in _ACL_SETUSER.findall(text):
            if any(re.match(r"^['\"]?>[^\s>&/]", rule) for rule in rules.split()):
                found.append(f"{where} sets an ACL password with ACL SETUSER")
    return list(dict.fromkeys(found))


def check_no_passwords(resource_type: str, props: Mapping[str, Any], name: str = "") -> list[str]:
    spec = _valkey_pod(resource_type, props)
    if spec is None:
        return []
    what = _describe(resource_type, props, name)
    messages = []
    for container in all_containers(spec):
        cname = container.get("name")
        for reason in command_line_passwords(container):
            messages.append(
                f"{what}: container '{cname}' {reason}: a password on a command line shows in "
                "/proc/<pid>/cmdline and in the manifest; read it from a file mounted from a Secret"
            )
        for env in _items(container.get("env")):
            env_name, value = env.get("name"), env.get("value")
            if not isinstance(env_name, str) or not isinstance(value, str):
                continue
            if (password_like(env_name) and _literal(value)) or _URI_WITH_PASSWORD.search(value):
                messages.append(
                    f"{what}: container '{cname}' env {env_name} holds a password as a plain value; "
                    "use valueFrom.secretKeyRef"
                )
    return messages


# --- images, memory, security context ------------------------------------------------------------


def image_pinned(image: str) -> bool:
    """``repo@sha256:<64 hex>``, or a tag other than ``latest``."""
    if "@" in image:
        return bool(_DIGEST.search(image))
    last = image.rsplit("/", 1)[-1]
    return ":" in last and last.split(":", 1)[1] not in ("", "latest")


def check_pinned_images(resource_type: str, props: Mapping[str, Any], name: str = "") -> list[str]:
    spec = _valkey_pod(resource_type, props)
    if spec is None:
        return []
    what = _describe(resource_type, props, name)
    return [
        f"{what}: container '{c.get('name')}' image '{c.get('image')}' is not pinned: "
        "use a tag other than 'latest' or an @sha256 digest"
        for c in all_containers(spec)
        if not (isinstance(c.get("image"), str) and image_pinned(c["image"]))
    ]


def check_memory_limits(resource_type: str, props: Mapping[str, Any], name: str = "") -> list[str]:
    spec = _valkey_pod(resource_type, props)
    if spec is None:
        return []
    what = _describe(resource_type, props, name)
    return [
        f"{what}: container '{c.get('name')}' sets no memory limit (resources.limits.memory)"
        for c in all_containers(spec)
        if _dig(c, "resources", "limits", "memory") in (None, "", 0, "0")
    ]


def security_context_problems(pod: Mapping[str, Any], container: Mapping[str, Any]) -> list[str]:
    """What keeps a container from the restricted profile; the container's own securityContext
    overrides the pod's for runAsNonRoot, runAsUser and seccompProfile, as in Kubernetes."""
    sc = container.get("securityContext") or {}
    psc = pod.get("securityContext") or {}

    def effective(key: str) -> Any:
        value = sc.get(key)
        return psc.get(key) if value is None else value

    problems = []
    if effective("runAsNonRoot") is not True:
        problems.append("runAsNonRoot is not true")
    if effective("runAsUser") in (0, 0.0):
        problems.append("runAsUser is 0 (root)")
    if sc.get("allowPrivilegeEscalation") is not False:
        problems.append("allowPrivilegeEscalation is not false")
    if sc.get("privileged") is True:
        problems.append("privileged is true")
    if "ALL" not in _strings(_dig(sc, "capabilities", "drop")):
        problems.append("capabilities.drop does not include ALL")
    if _strings(_dig(sc, "capabilities", "add")):
        problems.append("capabilities.add is not empty")
    seccomp = effective("seccompProfile") or {}
    if seccomp.get("type") not in ("RuntimeDefault", "Localhost"):
        problems.append("seccompProfile.type is not RuntimeDefault or Localhost")
    if sc.get("readOnlyRootFilesystem") is not True:
        problems.append("readOnlyRootFilesystem is not true")
    return problems


def check_security_context(resource_type: str, props: Mapping[str, Any], name: str = "") -> list[str]:
    spec = _valkey_pod(resource_type, props)
    if spec is None:
        return []
    what = _describe(resource_type, props, name)
    messages = []
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(key) is True:
            messages.append(f"{what}: {key} is true")
    for c in all_containers(spec):
        problems = security_context_problems(spec, c)
        if problems:
            messages.append(f"{what}: container '{c.get('name')}' security context: {'; '.join(problems)}")
    return messages


# --- persistence of DR primaries ------------------------------------------------------------------


def labelled_dr_primary(props: Mapping[str, Any]) -> bool:
    labels = _labels(props)
    return str(labels.get(DR_LABEL)).lower() == "true" and labels.get(ROLE_LABEL, "primary") == "primary"


def data_mount_problem(resource_type: str, props: Mapping[str, Any], data_dir: str) -> str | None:
    """None if every valkey-server container keeps ``data_dir`` on a volumeClaimTemplate."""
    if resource_type != STATEFULSET:
        return "is not a StatefulSet, so it has no volumeClaimTemplates for its data"
    spec = pod_spec(resource_type, props) or {}
    claims = {_dig(t, "metadata", "name") for t in _items(_dig(props, "spec", "volumeClaimTemplates"))}
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
    for mount in _items(container.get("volumeMounts")):
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
    return [f"{_describe(resource_type, props, name)} is a DR primary ({DR_LABEL}=true) but {problem}"]


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
        value = _dig(props, field, key)
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
    return [f"{_describe(resource_type, props, name)}: {problem}"] if problem else []


# --- stack level: what the other region connects to must be durable -------------------------------


def _namespace(props: Mapping[str, Any]) -> str | None:
    """metadata.namespace, or None while unknown (then it matches any namespace)."""
    try:
        value = _dig(props, "metadata", "namespace")
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
    statefulsets = [r for r in resources if r.resource_type == STATEFULSET and _valkey_pod(STATEFULSET, r.props)]
    pairs = []
    for svc in resources:
        if svc.resource_type != SERVICE or _dig(svc.props, "spec", "type") != "LoadBalancer":
            continue
        annotations = _dig(svc.props, "metadata", "annotations")
        if not isinstance(annotations, Mapping) or EXTERNAL_DNS_HOSTNAME not in annotations:
            continue
        selector = dict(_dig(svc.props, "spec", "selector") or {})
        for sts in statefulsets:
            pod_labels = dict(_dig(sts.props, "spec", "template", "metadata", "labels") or {})
            if selector and selector.items() <= pod_labels.items() and _same_namespace(svc.props, sts.props):
                pairs.append((svc, sts))
    return pairs


def _server_conf_file(spec: Mapping[str, Any]) -> tuple[Mapping[str, Any], str] | None:
    """(container, config path) of the first container started as ``valkey-server <file>``."""
    for c in all_containers(spec):
        words = argv(c)
        if words and posixpath.basename(words[0]) in SERVERS:
            words = words[1:]
        elif _items(c.get("command")) or not runs_server(c):
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
    volume = next((v for v in _items(spec.get("volumes")) if mount and v.get("name") == mount.get("name")), None)
    source = (volume or {}).get("secret") or (volume or {}).get("configMap")
    if mount is None or not isinstance(source, Mapping):
        return DEFAULT_DATA_DIR, None, f"{path} is not mounted from a Secret or ConfigMap"
    relative = posixpath.relpath(path, mount.get("mountPath", "/"))
    key = next((i.get("key") for i in _items(source.get("items")) if i.get("path") == relative), relative)
    source_name = source.get("secretName") or source.get("name")
    kind = SECRET if "secretName" in source else CONFIG_MAP
    holder = next(
        (
            r
            for r in resources
            if r.resource_type == kind
            and _dig(r.props, "metadata", "name") == source_name
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
        what = f"{_describe(STATEFULSET, sts.props, sts.name)} (DR primary behind Service {svc.name})"
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


# --- CrossGuard adapters and the policies ---------------------------------------------------------

Check = Callable[[str, Mapping[str, Any], str], list[str]]


def _resource_validation(check: Check) -> Callable[[ResourceValidationArgs, ReportViolation], None]:
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        for message in check(args.resource_type, args.props, args.name):
            report_violation(message, None)

    validate.__name__ = check.__name__.replace("check_", "validate_")
    validate.__doc__ = check.__doc__
    return validate


validate_no_passwords = _resource_validation(check_no_passwords)
validate_pinned_images = _resource_validation(check_pinned_images)
validate_memory_limits = _resource_validation(check_memory_limits)
validate_security_context = _resource_validation(check_security_context)
validate_dr_primary_persistence = _resource_validation(check_dr_primary_persistence)
validate_dr_primary_aof = _resource_validation(check_dr_primary_aof)


def validate_dr_endpoints(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    for urn, message in check_dr_endpoints(args.resources):
        report_violation(message, urn)


MANDATORY = EnforcementLevel.MANDATORY
POLICIES: list[ResourceValidationPolicy | StackValidationPolicy] = [
    ResourceValidationPolicy(
        name="valkey-no-password-in-pod-spec",
        description="Valkey pods read passwords from mounted Secrets: none in command, args, probes or env values.",
        validate=validate_no_passwords,
        enforcement_level=MANDATORY,
    ),
    ResourceValidationPolicy(
        name="valkey-pinned-images",
        description="Every container of a Valkey pod uses a tag other than latest, or a sha256 digest.",
        validate=validate_pinned_images,
        enforcement_level=MANDATORY,
    ),
    ResourceValidationPolicy(
        name="valkey-memory-limits",
        description="Every container of a Valkey pod sets a memory limit.",
        validate=validate_memory_limits,
        enforcement_level=MANDATORY,
    ),
    ResourceValidationPolicy(
        name="valkey-restricted-security-context",
        description="Every container of a Valkey pod meets the Pod Security Standards restricted profile.",
        validate=validate_security_context,
        enforcement_level=MANDATORY,
    ),
    ResourceValidationPolicy(
        name="valkey-dr-primary-persistence",
        description=f"A workload labelled {DR_LABEL}=true, {ROLE_LABEL}=primary keeps /data on a volumeClaimTemplate.",
        validate=validate_dr_primary_persistence,
        enforcement_level=MANDATORY,
    ),
    ResourceValidationPolicy(
        name="valkey-dr-primary-aof",
        description=f"The config Secret labelled {DR_LABEL}=true, {ROLE_LABEL}=primary sets appendonly yes.",
        validate=validate_dr_primary_aof,
        enforcement_level=MANDATORY,
    ),
    StackValidationPolicy(
        name="valkey-dr-endpoint-persistence",
        description="A Valkey StatefulSet exposed to another region (external-dns LoadBalancer) keeps its data "
        "dir on a volumeClaimTemplate and its valkey.conf sets appendonly yes.",
        validate=validate_dr_endpoints,
        enforcement_level=MANDATORY,
    ),
]
