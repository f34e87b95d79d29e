"""Kubernetes recommended labels shared by every object of one Valkey instance."""

from __future__ import annotations

PART_OF = "valkey"


def instance_labels(instance: str, component: str = "server") -> dict[str, str]:
    """Labels for objects of one instance. ``selector_labels`` is the stable subset."""
    return {
        **selector_labels(instance),
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": "pulumi",
    }


def selector_labels(instance: str) -> dict[str, str]:
    """Pod selector labels: never change them, a StatefulSet's selector is immutable."""
    return {"app.kubernetes.io/name": "valkey", "app.kubernetes.io/instance": instance}
