"""Kubernetes objects as the runner reads them: plain manifest dicts, looked up by kind/namespace/name."""

from __future__ import annotations

import base64
import copy
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from .errors import UnsupportedPodFeature

Manifest = dict[str, Any]


class HasManifests(Protocol):
    def manifests(self) -> list[Manifest]: ...


class ObjectStore:
    """A snapshot of manifests (deep-copied: later edits by the caller do not leak in)."""

    def __init__(self, objects: HasManifests | Iterable[Mapping[str, Any]]):
        items = objects.manifests() if hasattr(objects, "manifests") else objects
        self._objects: list[Manifest] = [copy.deepcopy(dict(m)) for m in items]

    def all(self) -> list[Manifest]:
        return list(self._objects)

    def find(self, kind: str, namespace: str, name: str) -> Manifest | None:
        for m in self._objects:
            meta = m.get("metadata", {})
            if m.get("kind") == kind and meta.get("name") == name and namespace_of(m) == namespace:
                return m
        return None

    def of_kind(self, kind: str, namespace: str | None = None) -> list[Manifest]:
        return [m for m in self._objects if m.get("kind") == kind and namespace in (None, namespace_of(m))]

    def statefulset(self, name: str, namespace: str | None = None) -> Manifest:
        found = [m for m in self.of_kind("StatefulSet", namespace) if m["metadata"]["name"] == name]
        if len(found) != 1:
            where = f" in namespace {namespace}" if namespace else ""
            raise KeyError(f"{len(found)} StatefulSets named {name!r}{where} among the objects given")
        return found[0]

    def secret_data(self, namespace: str, name: str) -> dict[str, bytes] | None:
        """A Secret's keys as the API server stores them: ``data`` (base64), overlaid by ``stringData``."""
        secret = self.find("Secret", namespace, name)
        if secret is None:
            return None
        out = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
        out.update({k: str(v).encode() for k, v in (secret.get("stringData") or {}).items()})
        return out

    def config_map_data(self, namespace: str, name: str) -> dict[str, bytes] | None:
        cm = self.find("ConfigMap", namespace, name)
        if cm is None:
            return None
        out = {k: str(v).encode() for k, v in (cm.get("data") or {}).items()}
        out.update({k: base64.b64decode(v) for k, v in (cm.get("binaryData") or {}).items()})
        return out

    def source_data(self, kind: str, namespace: str, name: str) -> dict[str, bytes] | None:
        return self.secret_data(namespace, name) if kind == "Secret" else self.config_map_data(namespace, name)


def namespace_of(manifest: Mapping[str, Any]) -> str:
    return manifest.get("metadata", {}).get("namespace") or "default"


def as_int(value: Any, path: str) -> int:
    """An integer field; Pulumi mocks hand numbers back as floats (``6379.0``, ``288.0``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UnsupportedPodFeature(path, f"expected an integer, got {value!r}")
    if isinstance(value, float) and not value.is_integer():
        raise UnsupportedPodFeature(path, f"expected an integer, got {value!r}")
    return int(value)
