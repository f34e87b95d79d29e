"""How many of an instance's pods a voluntary disruption (a node drain) may take."""

from __future__ import annotations

import pulumi_kubernetes as k8s


def disruption_budget_spec(
    selector: dict[str, str], block_voluntary_eviction: bool
) -> k8s.policy.v1.PodDisruptionBudgetSpecArgs:
    """``block_voluntary_eviction``: minAvailable 1, so a drain waits for a person; else
    maxUnavailable 1 (seconds of downtime while the pod restarts elsewhere)."""
    return k8s.policy.v1.PodDisruptionBudgetSpecArgs(
        selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector),
        min_available=1 if block_voluntary_eviction else None,
        max_unavailable=None if block_voluntary_eviction else 1,
        # A pod that is not Ready protects nothing: let a drain evict it.
        unhealthy_pod_eviction_policy="AlwaysAllow",
    )
