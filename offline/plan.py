"""What a real ``pulumi up`` does between two renders, from pulumi-kubernetes' and the engine's rules.

The mock engine never calls the Kubernetes provider, so it cannot say which objects an update
replaces, deletes or waits for. This module encodes those rules, read from the sources (no code
copied), and applies them to two renders of ``offline.engine`` (before and after a change):

pulumi-kubernetes v4.32.0-27 (94977969d), unchanged in the files below up to the pinned 4.34.2:
- ``provider.go`` ``Diff``: a change of ``metadata.name`` or ``metadata.namespace`` replaces any object;
  the provider asks for delete-before-replace when the object is named and keeps its name and namespace.
- ``diff.go`` ``forceNewProperties``: the fields whose change replaces an object, per kind; a Secret's
  ``type``/``data``/``stringData`` replace it unless the provider has ``enableSecretMutable`` (and the
  Secret is not ``immutable``). Patch resources replace only on name and namespace.
- ``provider.go`` ``DiffConfig``: a provider is replaced when ``clusterIdentifier`` changes, or, without
  an unchanged ``clusterIdentifier``, when the cluster its kubeconfig/context points at changes; every
  object it manages is then replaced too.
- ``await.go``, ``awaiters.go``, ``service.go``, ``statefulset.go``: what create and update wait for.
  ``pulumi.com/skipAwait: "true"`` skips it; ``customTimeouts`` bound it (default 10 minutes).

pulumi engine (pkg v3.259.0-14, 1b5949891b):
- ``step_generator.go``: replacing a resource protected before and after fails ``pulumi up`` when that
  resource registers (steps of resources registered before it have run by then); ``--replace`` and
  ``replaceOnChanges`` replace create-before-delete unless the resource sets
  ``deleteBeforeReplace`` (the provider's flag applies only to its own replacements).
- ``await.go`` ``Creation``: since 4.29 a create of an existing object fails with "already exists":
  a create-before-delete of a named object can never succeed (a preview does not show it).
- ``step.go`` ``DeleteStep.Apply``: deleting a protected resource fails; ``deployment_executor.go``
  then skips every delete of what that resource depends on (transitively: dependencies, parent,
  provider), and goes on with the rest.
- The API server refuses a PersistentVolumeClaim whose storage request goes down.

Not modelled: the engine's replacement of dependents of a delete-before-replace whose inputs use
its outputs (``calculateDependentReplacements``; no input here uses a replaced object's outputs,
and routine operations replace nothing); drift, since inputs are compared, not live objects; the
order in which independent steps run.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from .rendered import Registration, Rendered, unwrap

K8S_PREFIX = "kubernetes:"
PROVIDER_TYPE = "pulumi:providers:kubernetes"
RANDOM_PASSWORD = "random:index/randomPassword:RandomPassword"
SKIP_AWAIT = "pulumi.com/skipAwait"
DEFAULT_TIMEOUT_SECONDS = 600

Path = tuple[str, ...]

# diff.go forceNew, for the kinds this program creates (plus PersistentVolumeClaim for its patch).
FORCE_NEW: dict[str, list[Path]] = {
    "apps/v1/StatefulSet": [
        ("spec", "podManagementPolicy"),
        ("spec", "revisionHistoryLimit"),
        ("spec", "selector"),
        ("spec", "serviceName"),
        ("spec", "volumeClaimTemplates"),
    ],
    "v1/Service": [("spec", "clusterIP")],
    "batch/v1/Job": [("spec", "completions"), ("spec", "parallelism"), ("spec", "selector"), ("spec", "template")],
    "v1/Secret": [("type",)],
    "v1/PersistentVolumeClaim": [
        ("spec", "accessModes"),
        ("spec", "selector"),
        ("spec", "storageClassName"),
        ("spec", "volumeName"),
    ],
}
SECRET_DATA: list[Path] = [("type",), ("stringData",), ("data",)]
IDENTITY: list[Path] = [("metadata", "name"), ("metadata", "namespace")]
# terraform-provider-random's password schema: every argument but keepers' null values replaces.
RANDOM_PASSWORD_FORCE_NEW: list[Path] = [
    (key,)
    for key in (
        "length", "special", "upper", "lower", "number", "numeric", "minNumeric", "minUpper",
        "minLower", "minSpecial", "overrideSpecial", "keepers",
    )
]  # fmt: skip


@dataclass(frozen=True)
class Step:
    urn: str
    typ: str
    name: str
    op: str
    """create, update, replace, delete, same, or delete-from-state (retainOnDelete)."""
    changed: tuple[str, ...] = ()
    """Input paths that differ (update, replace)."""
    replace_keys: tuple[str, ...] = ()
    delete_before_replace: bool = False
    rolls_pods: bool = False
    """A StatefulSet whose pod template changed: its pods restart one by one."""
    waits_for: str | None = None
    never_finishes_when: str | None = None
    """A cluster condition under which the await of this step times out however healthy things are."""
    timeout_seconds: int | None = None
    failure: str | None = None
    """Why ``pulumi up`` fails at this step; None when it succeeds."""
    skipped: bool = False
    """A delete the engine skips because a delete that depends on it failed."""

    @property
    def kind(self) -> str:
        return "Provider" if self.typ.startswith("pulumi:providers:") else self.typ.rsplit(":", 1)[-1]

    def label(self) -> str:
        return f"{self.kind} {self.name}"


@dataclass
class Plan:
    steps: list[Step] = field(default_factory=list)

    def by_op(self, op: str) -> list[Step]:
        return [s for s in self.steps if s.op == op and not s.skipped]

    @property
    def failures(self) -> list[Step]:
        return [s for s in self.steps if s.failure]

    @property
    def succeeds(self) -> bool:
        return not self.failures

    def changes(self) -> list[Step]:
        return [s for s in self.steps if s.op != "same"]


def plain(value: Any) -> Any:
    """Inputs as compared: whole floats back to ints (the mock engine makes every number a float),
    and each secret replaced by a digest of its value, which is all a comparison needs and all a
    recorded state file may hold."""
    return unwrap(value, secret=_digest)


def _digest(value: Any) -> dict[str, str]:
    return {SECRET_DIGEST: hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()}


SECRET_DIGEST = "secret-sha256"


def _flatten(value: Any, prefix: Path = ()) -> dict[Path, Any]:
    """Leaf path -> value. An empty map or list has no leaves: ``{}`` and an absent key compare equal,
    as they do for the API server."""
    if isinstance(value, dict | list):
        items = value.items() if isinstance(value, dict) else enumerate(value)
        out: dict[Path, Any] = {}
        for key, item in items:
            out |= _flatten(item, (*prefix, str(key)))
        return out
    return {prefix: value}


def changed_paths(old: Any, new: Any) -> set[Path]:
    before, after = _flatten(old), _flatten(new)
    return {p for p in before.keys() | after.keys() if before.get(p, _MISSING) != after.get(p, _MISSING)}


_MISSING = object()


def _under(path: Path, prefixes: list[Path]) -> list[Path]:
    """Prefixes that ``path`` lies under, or that lie under ``path`` (a whole subtree changed)."""
    n = len
    return [p for p in prefixes if path[: n(p)] == p or p[: n(path)] == path]


def parse_path(text: str) -> Path:
    """``spec.volumeClaimTemplates[0].spec.resources`` -> path parts."""
    return tuple(part for part in re.split(r"\.|\[(\d+)\]", text) if part)


def _get(value: Any, path: Path) -> Any:
    for part in path:
        if isinstance(value, list):
            value = value[int(part)] if int(part) < len(value) else _MISSING
        elif isinstance(value, dict):
            value = value.get(part, _MISSING)
        else:
            return _MISSING
        if value is _MISSING:
            return _MISSING
    return value


def _set(value: Any, path: Path, item: Any) -> None:
    for part in path[:-1]:
        value = value[int(part)] if isinstance(value, list) else value.setdefault(part, {})
    last = path[-1]
    if isinstance(value, list):
        value[int(last)] = item
    elif item is _MISSING:
        value.pop(last, None)
    else:
        value[last] = item


def with_ignored(old: dict[str, Any], new: dict[str, Any], ignore: tuple[str, ...]) -> dict[str, Any]:
    """New inputs with every ``ignoreChanges`` path taken from the old inputs, as the engine does."""
    result = copy.deepcopy(new)
    for text in ignore:
        path = parse_path(text)
        if _get(result, path[:-1]) is not _MISSING:
            _set(result, path, copy.deepcopy(_get(old, path)))
    return result


def _gvk(inputs: dict[str, Any]) -> str:
    return f"{inputs.get('apiVersion')}/{inputs.get('kind')}"


def _is_patch(typ: str) -> bool:
    return typ.startswith(K8S_PREFIX) and typ.endswith("Patch")


def _identity(reg: Registration) -> tuple[str, str, str] | None:
    """(kind, namespace, name) of a Kubernetes object, for name collisions; None for others."""
    if not reg.typ.startswith(K8S_PREFIX) or _is_patch(reg.typ):
        return None
    meta = reg.inputs.get("metadata") or {}
    return (str(reg.inputs.get("kind")), str(meta.get("namespace", "")), str(meta.get("name", "")))


def _named(reg: Registration) -> bool:
    meta = reg.inputs.get("metadata") or {}
    return bool(meta.get("name")) and "pulumi.com/autonamed" not in (meta.get("annotations") or {})


def _secret_mutable(rendered: Rendered) -> bool:
    providers = [r for r in rendered.registrations.values() if r.typ == PROVIDER_TYPE]
    return any(plain(p.inputs).get("enableSecretMutable") in (True, "true") for p in providers)


def _force_new(reg: Registration, inputs: dict[str, Any], secret_mutable: bool) -> list[Path]:
    if reg.typ == RANDOM_PASSWORD:
        return RANDOM_PASSWORD_FORCE_NEW
    if _is_patch(reg.typ):
        return IDENTITY
    gvk = _gvk(inputs)
    if gvk == "v1/Secret" and (not secret_mutable or inputs.get("immutable") is True):
        return IDENTITY + SECRET_DATA
    return IDENTITY + FORCE_NEW.get(gvk, [])


def _timeout(reg: Registration, op: str, inputs: dict[str, Any]) -> int:
    text = reg.custom_timeouts.get("update" if op == "update" else "create")
    if text:
        return _seconds(text)
    annotation = ((inputs.get("metadata") or {}).get("annotations") or {}).get("pulumi.com/timeoutSeconds")
    return int(annotation) if annotation else DEFAULT_TIMEOUT_SECONDS


def _seconds(text: str) -> int:
    units = {"h": 3600, "m": 60, "s": 1}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([hms])", text))


def _await(reg: Registration, op: str, inputs: dict[str, Any]) -> tuple[str | None, str | None]:
    """(what the provider waits for, a cluster condition under which that never happens)."""
    annotations = (inputs.get("metadata") or {}).get("annotations") or {}
    kind, spec = inputs.get("kind"), inputs.get("spec") or {}
    waits, never = None, None
    if annotations.get(SKIP_AWAIT) == "true" or not reg.typ.startswith(K8S_PREFIX):
        pass
    elif kind == "StatefulSet":
        waits = "every replica Ready at the new revision"
    elif kind == "Service" and spec.get("type") == "LoadBalancer":
        waits, never = "a load-balancer address", "no load-balancer controller serves the Service"
    elif kind == "Service" and spec.get("selector") and spec.get("clusterIP") != "None":
        waits = "its endpoints to settle with no not-ready address"
    elif kind == "Job":
        waits, never = "the Job to complete", "the Job runs until a person stops it"
    elif kind == "PersistentVolumeClaim" and op == "create" and _is_patch(reg.typ):
        waits = "the claim to be Bound, or Pending under a WaitForFirstConsumer StorageClass"
        never = "the StorageClass binds WaitForFirstConsumer: the claim is already Bound, never Pending"
    elif kind == "PersistentVolumeClaim" and op == "create":
        waits = "the claim to be Bound (Pending under WaitForFirstConsumer)"
    return waits, never


def _shrinks_claim(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """The API server refuses a claim whose storage request goes down (PersistentVolumeClaim
    validation: "field can not be less than previous value")."""
    path = ("spec", "resources", "requests", "storage")
    if new.get("kind") != "PersistentVolumeClaim":
        return None
    before, after = _get(old, path), _get(new, path)
    if before is _MISSING or after is _MISSING or _bytes(after) >= _bytes(before):
        return None
    return f"refused by Kubernetes: a claim cannot shrink ({before} to {after})"


def _bytes(quantity: str) -> int:
    units = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4}
    number, unit = re.fullmatch(r"(\d+)([KMGT]i)?", quantity).groups()  # type: ignore[union-attr]
    return int(number) * units.get(unit or "", 1)


def _rolls(old: dict[str, Any], new: dict[str, Any]) -> bool:
    return new.get("kind") == "StatefulSet" and (old.get("spec") or {}).get("template") != (new.get("spec") or {}).get(
        "template"
    )


def transitive_dependencies(rendered: Rendered, urn: str) -> set[str]:
    """What ``urn`` depends on in the engine's graph: dependencies, parent, provider, deletedWith."""
    registrations = rendered.registrations
    seen: set[str] = set()
    todo = [urn]
    while todo:
        reg = registrations.get(todo.pop())
        if reg is None:
            continue
        edges = set(reg.dependencies) | {reg.parent, _provider_urn(reg), reg.deleted_with}
        for dep in edges - {""} - seen:
            seen.add(dep)
            todo.append(dep)
    return seen


def _provider_urn(reg: Registration) -> str:
    """A provider reference is ``<urn>::<id>``."""
    return reg.provider.rsplit("::", 1)[0] if reg.provider else ""


def plan(before: Rendered, after: Rendered) -> Plan:
    """The steps ``pulumi up`` of ``after`` takes on a stack whose state is ``before``."""
    result = Plan()
    old, new = before.registrations, after.registrations
    secret_mutable = _secret_mutable(after)
    deleted_identities = {_identity(r): r.urn for urn, r in old.items() if urn not in new and _identity(r)}
    replaced_providers = {
        urn for urn, r in new.items() if r.typ == PROVIDER_TYPE and urn in old and _provider_replaced(old[urn], r)
    }
    for urn, reg in new.items():
        if not reg.custom:
            continue
        after_inputs = plain(reg.inputs)
        if urn not in old:
            waits, never = _await(reg, "create", after_inputs)
            failure = None
            identity = _identity(reg)
            if identity is not None and identity in deleted_identities:
                failure = (
                    f"already exists: {identity[0]} {identity[2]} still belongs to {deleted_identities[identity]}, "
                    "deleted only after every create (a rename needs an alias)"
                )
            result.steps.append(
                Step(
                    urn,
                    reg.typ,
                    reg.name,
                    "create",
                    waits_for=waits,
                    never_finishes_when=never,
                    timeout_seconds=_timeout(reg, "create", after_inputs),
                    failure=failure,
                )
            )
            continue
        prior = old[urn]
        before_inputs = plain(prior.inputs)
        compared = with_ignored(before_inputs, after_inputs, reg.ignore_changes)
        changed = changed_paths(before_inputs, compared)
        provider_ref = _provider_urn(reg)
        if reg.typ == PROVIDER_TYPE:
            op = "replace" if urn in replaced_providers else ("update" if changed else "same")
            result.steps.append(Step(urn, reg.typ, reg.name, op, tuple(sorted(".".join(p) for p in changed))))
            continue
        keys = sorted({".".join(f) for p in changed for f in _under(p, _force_new(reg, compared, secret_mutable))})
        if provider_ref in replaced_providers:
            keys.append("provider")
        if not changed and not keys:
            result.steps.append(Step(urn, reg.typ, reg.name, "same"))
            continue
        on_changes = [text for text in reg.replace_on_changes if _under(parse_path(text), list(changed))]
        if not keys and not on_changes:
            waits, never = _await(reg, "update", compared)
            shrink = _shrinks_claim(before_inputs, compared)
            result.steps.append(
                Step(
                    urn,
                    reg.typ,
                    reg.name,
                    "update",
                    tuple(sorted(".".join(p) for p in changed)),
                    rolls_pods=_rolls(before_inputs, compared),
                    waits_for=waits,
                    never_finishes_when=never,
                    timeout_seconds=_timeout(reg, "update", compared),
                    failure=shrink,
                )
            )
            continue
        result.steps.append(_replacement(prior, reg, compared, keys or on_changes, provider_driven=bool(keys)))
    result.steps += _deletes(before, after)
    return result


def _replacement(
    prior: Registration, reg: Registration, inputs: dict[str, Any], keys: list[str], provider_driven: bool
) -> Step:
    old_meta, new_meta = prior.inputs.get("metadata") or {}, inputs.get("metadata") or {}
    same_identity = old_meta.get("name") == new_meta.get("name") and old_meta.get("namespace") == new_meta.get(
        "namespace"
    )
    provider_dbr = provider_driven and "provider" not in keys and _named(reg) and same_identity
    dbr = reg.delete_before_replace or provider_dbr
    failure = None
    if prior.protect and reg.protect:
        failure = f"protected: replacing {reg.name} ({', '.join(keys)}) needs `protect` off first"
    elif not dbr and reg.typ.startswith(K8S_PREFIX) and not _is_patch(reg.typ) and _named(reg) and same_identity:
        failure = f"already exists: create-before-delete of {new_meta.get('name')} (a preview does not show it)"
    waits, never = _await(reg, "create", inputs)
    return Step(
        reg.urn, reg.typ, reg.name, "replace", replace_keys=tuple(keys), delete_before_replace=dbr,
        waits_for=waits, never_finishes_when=never, timeout_seconds=_timeout(reg, "create", inputs), failure=failure,
    )  # fmt: skip


def _deletes(before: Rendered, after: Rendered) -> list[Step]:
    gone = {urn: r for urn, r in before.registrations.items() if urn not in after.registrations and r.custom}
    dependencies = {urn: transitive_dependencies(before, urn) & gone.keys() for urn in gone}
    # The engine deletes dependents before what they depend on, and skips the dependencies of a
    # delete that failed.
    order: list[str] = []

    def visit(urn: str) -> None:
        if urn in order:
            return
        for dependent in (d for d, deps in dependencies.items() if urn in deps):
            visit(dependent)
        order.append(urn)

    for urn in gone:
        visit(urn)
    steps = []
    skipped: set[str] = set()
    for urn in order:
        reg = gone[urn]
        if urn in skipped:
            steps.append(Step(urn, reg.typ, reg.name, "delete", skipped=True))
        elif reg.protect:
            steps.append(Step(urn, reg.typ, reg.name, "delete", failure=f"protected: {reg.name} cannot be deleted"))
            skipped |= dependencies[urn]
        else:
            steps.append(Step(urn, reg.typ, reg.name, "delete-from-state" if reg.retain_on_delete else "delete"))
    return steps


def _provider_replaced(old: Registration, new: Registration) -> bool:
    """DiffConfig: the cluster identity changed. Without ``clusterIdentifier`` a change of kubeconfig
    or context may point at another cluster; this model takes every such change as a new cluster."""
    before, after = plain(old.inputs), plain(new.inputs)
    if before.get("clusterIdentifier") and after.get("clusterIdentifier"):
        return bool(before["clusterIdentifier"] != after["clusterIdentifier"])
    if before.get("renderYamlToDirectory") != after.get("renderYamlToDirectory"):
        return True
    return any(before.get(k) != after.get(k) for k in ("kubeconfig", "context", "cluster"))


def replace_by_hand(rendered: Rendered, urn: str) -> Step:
    """``pulumi up --replace <urn>``: the provider is not asked, so only the resource's own
    ``deleteBeforeReplace`` avoids a create-before-delete."""
    reg = rendered.registrations[urn]
    inputs = plain(reg.inputs)
    failure = None
    if reg.protect:
        failure = f"protected: {reg.name} cannot be replaced"
    elif not reg.delete_before_replace and reg.typ.startswith(K8S_PREFIX) and not _is_patch(reg.typ) and _named(reg):
        failure = f"already exists: create-before-delete of {inputs['metadata']['name']} (a preview does not show it)"
    return Step(urn, reg.typ, reg.name, "replace", delete_before_replace=reg.delete_before_replace, failure=failure)


def save_state(rendered: Rendered) -> str:
    """A render as the state a ``pulumi up`` would leave: each resource's URN, graph edges, options and
    inputs, secrets as digests. ``load_state`` reads it back as the "before" of a later plan."""
    resources = [
        {
            "urn": r.urn,
            "type": r.typ,
            "name": r.name,
            "custom": r.custom,
            "parent": r.parent,
            "dependencies": sorted(r.dependencies),
            "provider": r.provider,
            "protect": r.protect,
            "deleteBeforeReplace": r.delete_before_replace,
            "ignoreChanges": list(r.ignore_changes),
            "replaceOnChanges": list(r.replace_on_changes),
            "retainOnDelete": r.retain_on_delete,
            "customTimeouts": r.custom_timeouts,
            "deletedWith": r.deleted_with,
            "inputs": plain(r.inputs),
        }
        for r in sorted(rendered.registrations.values(), key=lambda r: r.urn)
    ]
    return json.dumps({"stack": rendered.stack, "resources": resources}, indent=1, sort_keys=True) + "\n"


def load_state(text: str) -> Rendered:
    data = json.loads(text)
    registrations = {
        r["urn"]: Registration(
            urn=r["urn"],
            typ=r["type"],
            name=r["name"],
            custom=r["custom"],
            parent=r["parent"],
            dependencies=frozenset(r["dependencies"]),
            provider=r["provider"],
            protect=r["protect"],
            delete_before_replace=r["deleteBeforeReplace"],
            ignore_changes=tuple(r["ignoreChanges"]),
            replace_on_changes=tuple(r["replaceOnChanges"]),
            retain_on_delete=r["retainOnDelete"],
            custom_timeouts=r["customTimeouts"],
            deleted_with=r["deletedWith"],
            inputs=r["inputs"],
        )
        for r in data["resources"]
    }
    return Rendered(data["stack"], {}, {}, set(), registrations=registrations)
