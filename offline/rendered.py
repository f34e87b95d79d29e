"""What a run of the program under the mock engine (``offline.engine``) leaves: every resource's
inputs and options, and the stack's exports, with accessors that read them as a reviewer would.

The accessors return fresh plain values (secret envelopes unwrapped, whole floats back to ints),
built from the captured inputs on every call: a caller may change what it gets without changing the
render. They name objects the way ``kubectl`` does (kind and ``metadata.name``), and the files of
an instance the way its pod sees them (keys of ``<instance>-config``): they know the object names a
Valkey instance gets, never the program's own constants, so a test that uses them checks those
names too.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

SECRET_SIG = "4dabf18193072939515e22adb298388d"
SECRET_VALUE = "1b47061264138c4ac30d75fd1eb44270"
CHECKSUM_ANNOTATION = "checksum/config"
"""The pod template annotation that rolls the pods when a file they read at start changes."""


@dataclass
class Captured:
    typ: str
    name: str
    inputs: dict[str, Any]
    """Inputs as the engine received them; secrets still wrapped in Pulumi's secret envelope."""
    provider: str | None = None
    """Reference (URN::id) of the provider resource that manages it; None means the default."""


@dataclass
class Registration:
    """What the engine learns of a resource besides its inputs: its URN and place in the graph, and
    the resource options that decide what ``pulumi up`` does with it (offline/plan.py reads them)."""

    urn: str
    typ: str
    name: str
    custom: bool
    """False for component resources."""
    parent: str
    dependencies: frozenset[str]
    """URNs it depends on: ``depends_on`` and every Output its inputs were built from."""
    provider: str
    protect: bool
    delete_before_replace: bool
    ignore_changes: tuple[str, ...]
    replace_on_changes: tuple[str, ...]
    retain_on_delete: bool
    custom_timeouts: dict[str, str]
    """create/update/delete -> duration text such as "15m"; empty when not set."""
    deleted_with: str
    inputs: dict[str, Any] = field(default_factory=dict)


def unwrap(value: Any, secret: Callable[[Any], Any] | None = None) -> Any:
    """Drop Pulumi's secret envelopes, keeping the values (or what ``secret`` makes of each unwrapped
    value); whole floats (the mock engine turns every number into one) become ints again, as they
    would in the JSON sent to Kubernetes."""
    if isinstance(value, dict):
        if value.get(SECRET_SIG) == SECRET_VALUE:
            inner = unwrap(value["value"], secret)
            return secret(inner) if secret else inner
        return {k: unwrap(v, secret) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v, secret) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def is_secret_envelope(value: Any) -> bool:
    return isinstance(value, dict) and value.get(SECRET_SIG) == SECRET_VALUE


def conf_directive(conf: str, name: str) -> str | None:
    """The value of directive ``name`` in valkey.conf text (as written: quotes kept), or None when it
    is not set. A directive set twice fails: Valkey would take the last, a reviewer the first."""
    found = re.findall(rf"^{re.escape(name)} (.*)$", conf, flags=re.MULTILINE)
    assert len(found) <= 1, f"{name} set {len(found)} times"
    return found[0] if found else None


@dataclass
class Rendered:
    stack: str
    resources: dict[tuple[str, str], Captured]
    exports: dict[str, Any]
    secret_exports: set[str]
    references: list[str] = field(default_factory=list)
    passwords: list[str] = field(default_factory=list)
    registrations: dict[str, Registration] = field(default_factory=dict)

    @property
    def protected(self) -> set[tuple[str, str]]:
        """(type, name) of every resource registered with ``protect``."""
        return {(r.typ, r.name) for r in self.registrations.values() if r.protect}

    def of_type(self, typ: str) -> dict[str, Captured]:
        return {name: c for (t, name), c in self.resources.items() if t == typ}

    def _kubernetes(self) -> Iterator[Captured]:
        for (typ, _), captured in sorted(self.resources.items()):
            if typ.startswith("kubernetes:") and "Provider" not in typ:
                yield captured

    def manifests(self) -> list[dict[str, Any]]:
        """Every Kubernetes object, as plain manifests (secret envelopes unwrapped)."""
        return [unwrap(c.inputs) for c in self._kubernetes()]

    def first_rollout(self) -> list[dict[str, Any]]:
        """The objects that exist while the stack's first ``pulumi up`` waits for its StatefulSets:
        every one but those that depend on a StatefulSet, directly or through another resource,
        which the engine creates only once that StatefulSet's await has seen every pod Ready (an
        instance's marker ConfigMap, its claim patches, its external Service)."""
        by_urn = self.registrations
        after: set[str] = {urn for urn, r in by_urn.items() if r.typ == "kubernetes:apps/v1:StatefulSet"}
        changed = True
        while changed:
            changed = False
            for urn, registration in by_urn.items():
                if urn not in after and registration.dependencies & after:
                    after.add(urn)
                    changed = True
        waiting = {(by_urn[urn].typ, by_urn[urn].name) for urn in after} - {
            (r.typ, r.name) for r in by_urn.values() if r.typ == "kubernetes:apps/v1:StatefulSet"
        }
        return [unwrap(c.inputs) for c in self._kubernetes() if (c.typ, c.name) not in waiting]

    def objects(self, kind: str) -> dict[str, dict[str, Any]]:
        """Manifests of one kind, by metadata.name (of same-named objects in several namespaces, the
        last by resource name: use ``manifest`` with a namespace to choose)."""
        return {m["metadata"]["name"]: m for m in self._of_kind(kind)}

    def _of_kind(self, kind: str, name: str | None = None, namespace: str | None = None) -> list[dict[str, Any]]:
        found = []
        for captured in self._kubernetes():
            if captured.inputs.get("kind") != kind:
                continue
            manifest: dict[str, Any] = unwrap(captured.inputs)
            meta = manifest["metadata"]
            if (name is None or meta["name"] == name) and (namespace is None or meta.get("namespace") == namespace):
                found.append(manifest)
        return found

    # --- one object, by what a reviewer knows of it ----------------------------------------------

    def manifest(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        """The one object of ``kind`` named ``name`` (in ``namespace``, when given)."""
        found = self._of_kind(kind, name, namespace)
        if len(found) != 1:
            where = sorted(str(m["metadata"].get("namespace")) for m in found)
            raise AssertionError(f"{self.stack}: {len(found)} {kind} objects named {name!r} (namespaces {where})")
        return found[0]

    def secret_data(self, name: str, namespace: str | None = None) -> dict[str, str]:
        """``stringData`` of the Secret ``name``. Without ``namespace``, copies of it in several
        namespaces (a client Secret and its copies in the client namespaces) must hold the same data."""
        found = self._of_kind("Secret", name, namespace)
        assert found, f"{self.stack}: no Secret named {name!r}"
        data: list[dict[str, str]] = [m.get("stringData", {}) for m in found]
        assert all(d == data[0] for d in data), f"{self.stack}: the copies of Secret {name!r} differ"
        return data[0]

    # --- one Valkey instance -----------------------------------------------------------------------

    def config_files(self, instance: str) -> dict[str, str]:
        """The files the instance's pod reads from its config Secret ``<instance>-config``, by key
        (valkey.conf, users.acl, ca-bundle.crt, password files)."""
        return self.secret_data(f"{instance}-config")

    def valkey_conf(self, instance: str) -> str:
        return self.config_files(instance)["valkey.conf"]

    def users_acl(self, instance: str) -> str:
        return self.config_files(instance)["users.acl"]

    def directive(self, instance: str, name: str) -> str | None:
        """The value of one directive of the instance's valkey.conf (see ``conf_directive``)."""
        return conf_directive(self.valkey_conf(instance), name)

    def upstream(self, instance: str) -> str | None:
        """``<host> <port>`` the instance replicates from across regions: a single pod's ``replicaof``,
        or a following group's upstream file (its head replicates from it); None on a primary."""
        files = self.config_files(instance)
        if "upstream" in files:
            return files["upstream"].strip()
        return self.directive(instance, "replicaof")

    def acl_line(self, instance: str, user: str) -> str:
        """The line of the instance's users.acl that defines ``user``."""
        lines = [line for line in self.users_acl(instance).splitlines() if line.split()[1:2] == [user]]
        assert len(lines) == 1, f"{self.stack}/{instance}: user {user!r} defined {len(lines)} times in users.acl"
        return lines[0]

    def statefulset(self, instance: str) -> dict[str, Any]:
        return self.manifest("StatefulSet", instance)

    def pod_template(self, instance: str) -> dict[str, Any]:
        """The StatefulSet's pod template: pod ``metadata`` (labels, annotations) and ``spec``."""
        template: dict[str, Any] = self.statefulset(instance)["spec"]["template"]
        return template

    def pod_spec(self, instance: str) -> dict[str, Any]:
        spec: dict[str, Any] = self.pod_template(instance)["spec"]
        return spec

    def container(self, instance: str, name: str) -> dict[str, Any]:
        """The container ``name`` of the instance's pods (valkey, reloader, exporter)."""
        containers = {c["name"]: c for c in self.pod_spec(instance)["containers"]}
        assert name in containers, f"{self.stack}/{instance}: no container {name!r} (has {sorted(containers)})"
        container: dict[str, Any] = containers[name]
        return container

    def checksum(self, instance: str) -> str:
        """The pod template's ``checksum/config``: when it changes, the pods roll."""
        annotations: dict[str, str] = self.pod_template(instance)["metadata"].get("annotations") or {}
        assert CHECKSUM_ANNOTATION in annotations, f"{self.stack}/{instance}: no {CHECKSUM_ANNOTATION} annotation"
        return annotations[CHECKSUM_ANNOTATION]
