"""Every label this program puts on Kubernetes objects, and what reads each one.

Selectors (``selector_labels``) never change: a StatefulSet's selector is immutable. The pod-only
labels feed the scrape's relabelings (``specs.monitoring``); the role labels are what the policy
pack (policy/) keys on.
"""

from __future__ import annotations

PART_OF = "valkey"
APP_NAME = "valkey"
"""The ``app.kubernetes.io/name`` of every Valkey pod: what the ServiceMonitor selects Services by."""
NAME_LABEL = "app.kubernetes.io/name"
INSTANCE_LABEL = "app.kubernetes.io/instance"
"""Also the ``instance`` label of every scraped series."""
DR_LABEL = "valkey.io/dr"
"""On the pod (for the scrape) and on the StatefulSet and config Secret (for the policy pack)."""
ROLE_LABEL = "valkey.io/role"
"""The stack's role for the instance (primary or replica region), on the StatefulSet and Secret."""
NODE_ROLE_LABEL = "valkey.io/node-role"
"""A group member's role now: primary, replica or unknown. Set at run time by the pod's label
updater (specs/labeler.py), never in the pod template: Pulumi would reset it at every rollout."""
PRIMARY = "primary"
POLICY_POD_LABEL = "valkey.io/maxmemory-policy"
PSS_LABELS = {
    f"pod-security.kubernetes.io/{mode}{suffix}": value
    for mode in ("enforce", "audit", "warn")
    for suffix, value in (("", "restricted"), ("-version", "latest"))
}
"""On the namespace: the API server enforces Pod Security Standards "restricted" on every pod."""


def selector_labels(instance: str) -> dict[str, str]:
    """Pod selector labels: never change them, a StatefulSet's selector is immutable."""
    return {NAME_LABEL: APP_NAME, INSTANCE_LABEL: instance}


def primary_selector(instance: str) -> dict[str, str]:
    """The group member that is the primary now: what the client and external Services select."""
    return {**selector_labels(instance), NODE_ROLE_LABEL: PRIMARY}


def stack_labels() -> dict[str, str]:
    """Labels of every object this program creates."""
    return {"app.kubernetes.io/part-of": PART_OF, "app.kubernetes.io/managed-by": "pulumi"}


def instance_labels(instance: str, component: str = "server") -> dict[str, str]:
    """Labels for objects of one instance. ``selector_labels`` is the stable subset."""
    return {**selector_labels(instance), "app.kubernetes.io/component": component, **stack_labels()}


def role_labels(dr: bool, role: str) -> dict[str, str]:
    """What the policy pack keys on (a DR primary must persist). Only on the StatefulSet and the
    config Secret: on the pod template or claim template a change would roll or replace."""
    return {DR_LABEL: str(dr).lower(), ROLE_LABEL: role}


def scrape_labels(dr: bool, maxmemory_policy: str) -> dict[str, str]:
    """Labels the Valkey pod template carries for the scrape: whether the instance is replicated to
    the other region, and its configured eviction policy."""
    return {DR_LABEL: str(dr).lower(), POLICY_POD_LABEL: maxmemory_policy}
