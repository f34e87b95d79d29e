"""Reading a resource's inputs the way CrossGuard hands them to a policy.

Kubernetes camelCase, secrets already decrypted, numbers as floats, and during a preview any value
not known yet raising ``UnknownValueError`` when read (the SDK then reports the policy as "can't
run during preview" instead of passing it). These helpers read such inputs without tripping on a
missing key or a value of the wrong shape.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pulumi_policy.proxy import UnknownValueError


def dig(value: Any, *path: str) -> Any:
    """``value[path[0]][path[1]]...``, or None where a key is missing."""
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return value


def as_list(value: Any) -> list[Any]:
    """A list input as a list (None or a non-list gives an empty one)."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        return list(value)
    return []


def strings(value: Any) -> list[str]:
    return [v for v in as_list(value) if isinstance(v, str)]


def describe(resource_type: str, props: Mapping[str, Any], fallback: str) -> str:
    """``StatefulSet sessions``: the kind and metadata.name (or the Pulumi name while unknown)."""
    try:
        name = dig(props, "metadata", "name")
    except UnknownValueError:
        name = None
    return f"{resource_type.rsplit(':', 1)[-1]} {name if isinstance(name, str) else fallback}"


def metadata_labels(props: Mapping[str, Any]) -> dict[str, Any]:
    labels = dig(props, "metadata", "labels")
    return dict(labels) if isinstance(labels, Mapping) else {}
