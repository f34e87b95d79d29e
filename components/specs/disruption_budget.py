"""How many of an instance's pods a voluntary disruption (a node drain) may take."""

from __future__ import annotations

import pulumi_kubernetes as k8s


def disruption_budget_spec(
    selector: dict[str, str], block_voluntary_eviction: bool, group: bool = False
) -> k8s.policy.v1.PodDisruptionBudgetSpecArgs:
    """A single pod with ``block_voluntary_eviction``: minAvailable 1, so a drain waits for a
    person; else maxUnavailable 1 (seconds of downtime while the pod restarts elsewhere). A group:
    maxUnavailable 1 always, so drains proceed one member at a time and a majority stays up."""
    block = block_voluntary_eviction and not group
    return k8s.policy.v1.PodDisruptionBudgetSpecArgs(
        selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector),
        min_available=1 if block else None,
        max_unavailable=None if block else 1,
        # A pod that is not Ready protects nothing: let a drain evict it.
        unhealthy_pod_eviction_policy="AlwaysAllow",
    )
