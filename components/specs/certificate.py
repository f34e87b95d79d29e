"""Server certificates of a Valkey instance: where they come from, and the cert-manager
Certificate's spec when cert-manager issues them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config.security import IssuerRef
from ..object_names import InstanceNames

API_VERSION = "cert-manager.io/v1"


@dataclass(frozen=True)
class TlsSource:
    """Where an instance's certificate comes from, and which CA its peers trust."""

    ca_bundle: str
    """PEM of the CAs this instance trusts: its own, and on a replica its primary's."""
    issuer: IssuerRef | None = None
    """cert-manager issuer; a Certificate <instance>-tls is created."""
    existing_secret: str | None = None
    """Secret with tls.crt and tls.key, managed outside this program."""

    def secret_name(self, instance: str) -> str:
        return self.existing_secret or InstanceNames(instance).certificate


def dns_names(instance: str, namespace: str, cluster_domain: str, external_host: str | None) -> list[str]:
    """Every name a client or a replica may use to reach the instance."""
    svc = f"{instance}.{namespace}.svc"
    names = [instance, f"{instance}.{namespace}", svc, f"{svc}.{cluster_domain}"]
    names.append(f"*.{InstanceNames(instance).headless_service}.{namespace}.svc.{cluster_domain}")
    if external_host:
        names.append(external_host)
    return names


def certificate_spec(instance: str, names: list[str], issuer: IssuerRef) -> dict[str, Any]:
    """A Certificate whose Secret ``<instance>-tls`` holds tls.crt and tls.key."""
    return {
        "secretName": InstanceNames(instance).certificate,
        "issuerRef": {"name": issuer.name, "kind": issuer.kind, "group": "cert-manager.io"},
        "dnsNames": names,
        # Sidecars (probes, reloader, the metrics exporter) connect to 127.0.0.1; Go's TLS
        # client, in the exporter, checks that the certificate names that address.
        "ipAddresses": ["127.0.0.1"],
        # Renewed 30 days before expiry; the reloader sidecar loads the renewed files.
        "duration": "2160h",
        "renewBefore": "720h",
        "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
        "usages": ["server auth", "client auth"],
    }
