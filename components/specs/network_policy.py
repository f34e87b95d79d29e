"""The NetworkPolicy of one Valkey instance: deny by default, then allow what the stack names."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi_kubernetes as k8s

from ..config.models import SENTINEL_METRICS_PORT
from ..config.security import ClientPeer

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


@dataclass(frozen=True)
class NetworkPolicyRules:
    clients: list[ClientPeer]
    """Namespaces (and pod labels) whose pods may connect to the client port."""
    peer_cidrs: list[str]
    """The other region's addresses: may replicate from a DR primary; a replica connects to them."""
    monitoring_namespace: str
    metrics_port: int | None = None
    """Port the metrics exporter listens on, scraped from the monitoring namespace; with
    ``sentinel_port``, the Sentinel's exporter's port is scraped too."""
    accepts_replicas: bool = False
    """A DR primary: the other region replicates from it."""
    upstream_port: int | None = None
    """On a replica: the port of the primary it connects to."""
    group: bool = False
    """A group: its members reach each other's Valkey (and Sentinels), and the label updater the
    Kubernetes API."""
    sentinel_port: int | None = None
    """A group that leads (has Sentinels): members and clients reach the Sentinels too."""
    copy_job: dict[str, str] | None = None
    """The pod labels of the instance's keyspace copy Job (specs/migration.py), which writes to it."""
    source: tuple[list[str], int] | None = None
    """A group migrating by replication: the source's CIDRs and port, which its head connects to."""


API_SERVER_PORTS = (443, 6443)
"""The API server behind the ``kubernetes`` Service: NetworkPolicy sees the address after the
Service's translation, which is the cluster's own (a control plane's, often outside the pod
network), so the label updater's egress is limited by port only."""


def _namespace(name: str) -> k8s.meta.v1.LabelSelectorArgs:
    return k8s.meta.v1.LabelSelectorArgs(match_labels={NAMESPACE_NAME_LABEL: name})


def network_policy_spec(
    rules: NetworkPolicyRules, pod_labels: dict[str, str], port: int
) -> k8s.networking.v1.NetworkPolicySpecArgs:
    valkey_port = [k8s.networking.v1.NetworkPolicyPortArgs(port=port, protocol="TCP")]
    group_ports = list(valkey_port)
    if rules.sentinel_port is not None:
        group_ports.append(k8s.networking.v1.NetworkPolicyPortArgs(port=rules.sentinel_port, protocol="TCP"))
    members = [
        k8s.networking.v1.NetworkPolicyPeerArgs(pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=pod_labels))
    ]
    ingress = []
    if rules.group:
        ingress.append(k8s.networking.v1.NetworkPolicyIngressRuleArgs(from_=members, ports=group_ports))
    if rules.clients:
        ingress.append(
            k8s.networking.v1.NetworkPolicyIngressRuleArgs(
                from_=[
                    k8s.networking.v1.NetworkPolicyPeerArgs(
                        namespace_selector=_namespace(c.namespace),
                        pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=c.pod_labels or None),
                    )
                    for c in rules.clients
                ],
                # Sentinel-aware clients ask a group's Sentinels for the primary.
                ports=group_ports,
            )
        )
    if rules.copy_job is not None:
        copier = k8s.meta.v1.LabelSelectorArgs(match_labels=rules.copy_job)
        ingress.append(
            k8s.networking.v1.NetworkPolicyIngressRuleArgs(
                from_=[k8s.networking.v1.NetworkPolicyPeerArgs(pod_selector=copier)], ports=valkey_port
            )
        )
    if rules.accepts_replicas and rules.peer_cidrs:
        ingress.append(
            k8s.networking.v1.NetworkPolicyIngressRuleArgs(
                from_=[
                    k8s.networking.v1.NetworkPolicyPeerArgs(ip_block=k8s.networking.v1.IPBlockArgs(cidr=cidr))
                    for cidr in rules.peer_cidrs
                ],
                ports=valkey_port,
            )
        )
    if rules.metrics_port is not None:
        scraped = [rules.metrics_port]
        if rules.sentinel_port is not None:
            # Where there are Sentinels and exporters, each Sentinel has its own exporter (specs/exporter.py).
            scraped.append(SENTINEL_METRICS_PORT)
        ingress.append(
            k8s.networking.v1.NetworkPolicyIngressRuleArgs(
                from_=[
                    k8s.networking.v1.NetworkPolicyPeerArgs(namespace_selector=_namespace(rules.monitoring_namespace))
                ],
                ports=[k8s.networking.v1.NetworkPolicyPortArgs(port=p, protocol="TCP") for p in scraped],
            )
        )
    # Egress: DNS anywhere, and a replica's connection to the other region's primary.
    egress = [
        k8s.networking.v1.NetworkPolicyEgressRuleArgs(
            ports=[
                k8s.networking.v1.NetworkPolicyPortArgs(port=53, protocol="UDP"),
                k8s.networking.v1.NetworkPolicyPortArgs(port=53, protocol="TCP"),
            ]
        )
    ]
    if rules.group:
        egress += [
            k8s.networking.v1.NetworkPolicyEgressRuleArgs(to=members, ports=group_ports),
            k8s.networking.v1.NetworkPolicyEgressRuleArgs(
                ports=[k8s.networking.v1.NetworkPolicyPortArgs(port=p, protocol="TCP") for p in API_SERVER_PORTS]
            ),
        ]
    if rules.upstream_port is not None and rules.peer_cidrs:
        egress.append(
            k8s.networking.v1.NetworkPolicyEgressRuleArgs(
                to=[
                    k8s.networking.v1.NetworkPolicyPeerArgs(ip_block=k8s.networking.v1.IPBlockArgs(cidr=cidr))
                    for cidr in rules.peer_cidrs
                ],
                ports=[k8s.networking.v1.NetworkPolicyPortArgs(port=rules.upstream_port, protocol="TCP")],
            )
        )
    if rules.source is not None:
        cidrs, port = rules.source
        egress.append(
            k8s.networking.v1.NetworkPolicyEgressRuleArgs(
                to=[
                    k8s.networking.v1.NetworkPolicyPeerArgs(ip_block=k8s.networking.v1.IPBlockArgs(cidr=c))
                    for c in cidrs
                ],
                ports=[k8s.networking.v1.NetworkPolicyPortArgs(port=port, protocol="TCP")],
            )
        )
    return k8s.networking.v1.NetworkPolicySpecArgs(
        pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=pod_labels),
        policy_types=["Ingress", "Egress"],
        ingress=ingress,
        egress=egress,
    )
