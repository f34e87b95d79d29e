"""The Services of an instance: headless (pod DNS names, the metrics port), client (ClusterIP),
and on a DR primary the LoadBalancer the other region replicates through."""

from __future__ import annotations

import pulumi_kubernetes as k8s

from ..config.models import METRICS_PORT, SENTINEL_METRICS_PORT
from .exporter import PORT_NAME as METRICS_PORT_NAME
from .exporter import SENTINEL_PORT_NAME as SENTINEL_METRICS_PORT_NAME
from .pod import VALKEY_PORT_NAME
from .sentinel import PORT_NAME as SENTINEL_PORT_NAME


def valkey_port(port: int) -> k8s.core.v1.ServicePortArgs:
    return k8s.core.v1.ServicePortArgs(name=VALKEY_PORT_NAME, port=port, target_port=VALKEY_PORT_NAME, protocol="TCP")


def metrics_port(name: str = METRICS_PORT_NAME, port: int = METRICS_PORT) -> k8s.core.v1.ServicePortArgs:
    return k8s.core.v1.ServicePortArgs(name=name, port=port, target_port=name, protocol="TCP")


def headless_spec(
    selector: dict[str, str], port: int, metrics: bool, sentinel_metrics: bool = False
) -> k8s.core.v1.ServiceSpecArgs:
    """``sentinel_metrics``: the pods also run the Sentinel's exporter (a group with Sentinels)."""
    ports = [valkey_port(port)]
    if metrics:
        ports.append(metrics_port())
    if sentinel_metrics:
        ports.append(metrics_port(SENTINEL_METRICS_PORT_NAME, SENTINEL_METRICS_PORT))
    return k8s.core.v1.ServiceSpecArgs(
        cluster_ip="None",
        publish_not_ready_addresses=True,
        selector=selector,
        # The only Service with the metrics ports: on two, every series would be scraped twice.
        ports=ports,
    )


def client_spec(selector: dict[str, str], port: int) -> k8s.core.v1.ServiceSpecArgs:
    return k8s.core.v1.ServiceSpecArgs(type="ClusterIP", selector=selector, ports=[valkey_port(port)])


def external_spec(
    selector: dict[str, str], port: int, load_balancer_class: str | None, source_ranges: list[str]
) -> k8s.core.v1.ServiceSpecArgs:
    return k8s.core.v1.ServiceSpecArgs(
        type="LoadBalancer",
        # Local keeps the client's source address, which source ranges and network policies match on.
        external_traffic_policy="Local",
        load_balancer_class=load_balancer_class,
        load_balancer_source_ranges=source_ranges or None,
        selector=selector,
        ports=[valkey_port(port)],
    )


def sentinel_spec(selector: dict[str, str], port: int) -> k8s.core.v1.ServiceSpecArgs:
    """A group's Sentinels, for Sentinel-aware clients. Also in pods that are not Ready: a Sentinel
    answers while its pod's Valkey waits to rejoin, which is when clients ask."""
    return k8s.core.v1.ServiceSpecArgs(
        type="ClusterIP",
        publish_not_ready_addresses=True,
        selector=selector,
        ports=[k8s.core.v1.ServicePortArgs(name=SENTINEL_PORT_NAME, port=port, target_port=SENTINEL_PORT_NAME)],
    )
