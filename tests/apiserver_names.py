"""The name and label checks kube-apiserver makes that an OpenAPI schema cannot express.

kubernetes-validate (and the CRD schemas) check structure and types: a label value of 64
characters or a Service named ``1cache`` passes them and is refused by the API server half-way
through a deployment. These rules are written from k8s.io/apimachinery/pkg/util/validation
(``IsDNS1123Label``, ``IsDNS1123Subdomain``, ``IsDNS1035Label``, ``IsQualifiedName``,
``IsValidLabelValue``, ``IsValidPortName``) and apply to what the program renders. They are kept
apart from the program's own checks (components/config/names.py) on purpose: one is the
specification the other is tested against.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
PORT_NAME = re.compile(r"[-a-z0-9]+")
TOTAL_ANNOTATIONS_MAX = 256 * 1024
# Kinds whose names must be DNS labels (namespaces) or RFC 1035 labels (Services).
LABEL_NAMED = {"Namespace": DNS1123_LABEL, "Service": DNS1035_LABEL}


def dns_label(value: Any, pattern: re.Pattern[str] = DNS1123_LABEL) -> bool:
    return isinstance(value, str) and len(value) <= 63 and pattern.fullmatch(value) is not None


def dns_subdomain(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 253 and all(dns_label(p) for p in value.split("."))


def qualified_name(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    prefix, slash, name = value.rpartition("/")
    if slash and not dns_subdomain(prefix):
        return False
    return 0 < len(name) <= 63 and QUALIFIED_NAME.fullmatch(name) is not None


def label_value(value: Any) -> bool:
    return isinstance(value, str) and (
        value == "" or (len(value) <= 63 and QUALIFIED_NAME.fullmatch(value) is not None)
    )


def port_name(value: Any) -> bool:
    return (
        isinstance(value, str)
        and 0 < len(value) <= 15
        and PORT_NAME.fullmatch(value) is not None
        and "--" not in value
        and not value.startswith("-")
        and not value.endswith("-")
        and any(c.isalpha() for c in value)
    )


def _meta(where: str, meta: dict[str, Any]) -> Iterator[str]:
    for key, value in (meta.get("labels") or {}).items():
        if not qualified_name(key):
            yield f"{where}: label key {key!r}"
        if not label_value(value):
            yield f"{where}: label value {value!r} of {key!r}"
    annotations = meta.get("annotations") or {}
    for key in annotations:
        if not qualified_name(key):
            yield f"{where}: annotation key {key!r}"
    if sum(len(k) + len(str(v)) for k, v in annotations.items()) > TOTAL_ANNOTATIONS_MAX:
        yield f"{where}: annotations over {TOTAL_ANNOTATIONS_MAX} bytes"


def _selector(where: str, selector: dict[str, Any] | None) -> Iterator[str]:
    for key, value in ((selector or {}).get("matchLabels") or {}).items():
        if not qualified_name(key) or not label_value(value):
            yield f"{where}: selector {key!r}={value!r}"


def _pod(where: str, template: dict[str, Any]) -> Iterator[str]:
    yield from _meta(f"{where}.metadata", template.get("metadata") or {})
    spec = template["spec"]
    for container in spec.get("containers", []) + spec.get("initContainers", []):
        if not dns_label(container["name"]):
            yield f"{where}: container name {container['name']!r}"
        for port in container.get("ports") or []:
            if "name" in port and not port_name(port["name"]):
                yield f"{where}: container port name {port['name']!r}"
    for volume in spec.get("volumes") or []:
        if not dns_label(volume["name"]):
            yield f"{where}: volume name {volume['name']!r}"


def name_problems(manifest: dict[str, Any]) -> list[str]:
    """What the API server would refuse in ``manifest``'s names, labels and selectors."""
    kind, meta = manifest["kind"], manifest["metadata"]
    where = f"{kind} {meta.get('name')!r}"
    problems: list[str] = []
    name = meta.get("name")
    valid = dns_label(name, LABEL_NAMED[kind]) if kind in LABEL_NAMED else dns_subdomain(name)
    if not valid:
        problems.append(f"{where}: name")
    if "namespace" in meta and not dns_label(meta["namespace"]):
        problems.append(f"{where}: namespace {meta['namespace']!r}")
    problems += _meta(where, meta)
    spec = manifest.get("spec") or {}
    if kind in ("StatefulSet", "PodDisruptionBudget"):
        problems += _selector(where, spec.get("selector"))
    if kind == "StatefulSet":
        problems += _pod(f"{where}.spec.template", spec["template"])
        for claim in spec.get("volumeClaimTemplates") or []:
            if not dns_subdomain(claim["metadata"]["name"]):
                problems.append(f"{where}: claim template name {claim['metadata']['name']!r}")
            storage_class = claim["spec"].get("storageClassName")
            if storage_class is not None and not dns_subdomain(storage_class):
                problems.append(f"{where}: storageClassName {storage_class!r}")
    if kind == "Service":
        for port in spec.get("ports") or []:
            if "name" in port and not port_name(port["name"]):
                problems.append(f"{where}: port name {port['name']!r}")
            if isinstance(port.get("targetPort"), str) and not port_name(port["targetPort"]):
                problems.append(f"{where}: targetPort {port['targetPort']!r}")
        for key, value in (spec.get("selector") or {}).items():
            if not qualified_name(key) or not label_value(value):
                problems.append(f"{where}: selector {key!r}={value!r}")
        hostname = (meta.get("annotations") or {}).get("external-dns.alpha.kubernetes.io/hostname")
        if hostname is not None and not dns_subdomain(hostname):
            problems.append(f"{where}: external-dns hostname {hostname!r}")
        if "loadBalancerClass" in spec and not qualified_name(spec["loadBalancerClass"]):
            problems.append(f"{where}: loadBalancerClass {spec['loadBalancerClass']!r}")
    if kind == "NetworkPolicy":
        problems += _selector(where, spec.get("podSelector"))
    if kind == "Certificate":
        for dns_name in spec.get("dnsNames", []):
            if not dns_subdomain(dns_name.removeprefix("*.")):
                problems.append(f"{where}: dnsName {dns_name!r}")
        if not dns_subdomain(spec["issuerRef"]["name"]):
            problems.append(f"{where}: issuerRef.name {spec['issuerRef']['name']!r}")
        if not dns_subdomain(spec["secretName"]):
            problems.append(f"{where}: secretName {spec['secretName']!r}")
    return problems
