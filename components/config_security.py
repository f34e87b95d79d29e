"""Security settings of a stack: TLS, network policy, password rotation, denied commands."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field
from pydantic_core import PydanticCustomError

from .config_types import MODEL_CONFIG, DnsLabel


class _Model(BaseModel):
    model_config = MODEL_CONFIG


_PEM_CERT = re.compile(r"-----BEGIN CERTIFICATE-----\s+[A-Za-z0-9+/=\s]+-----END CERTIFICATE-----")


def _pem_bundle(value: str) -> str:
    if not _PEM_CERT.search(value) or "PRIVATE KEY" in value:
        raise PydanticCustomError(
            "pem", "expected one or more PEM certificates (-----BEGIN CERTIFICATE----- ...), and no private key"
        )
    return value.strip() + "\n"


PemBundle = Annotated[str, AfterValidator(_pem_bundle)]


class IssuerRef(_Model):
    """The cert-manager Issuer or ClusterIssuer that signs the server certificates."""

    name: str = Field(min_length=1)
    kind: Literal["Issuer", "ClusterIssuer"] = "ClusterIssuer"


class Tls(_Model):
    """TLS for every client and replication connection of the stack's instances.

    On by default whenever the stack has a DR instance (its replication crosses regions).
    Certificates come from cert-manager (``issuer``) or from an existing Secret
    (``existingSecret``, keys tls.crt and tls.key, valid for every instance's names).
    """

    enabled: bool | None = None
    """Default: true if any instance has dr: true."""
    issuer: IssuerRef | None = None
    existing_secret: DnsLabel | None = None
    ca_bundle: PemBundle | None = None
    """PEM of the CA that signs this stack's server certificates. Exported (not secret) so the
    other region's replicas can verify this one's primaries; probes verify against it too."""


class ClientPeer(_Model):
    """Pods allowed to connect as clients."""

    namespace: DnsLabel
    pod_labels: dict[str, str] = {}
    """Only pods with these labels; empty means every pod of the namespace."""


class NetworkPolicy(_Model):
    """Default deny for Valkey pods, then: clients from ``clients``, metrics scrapes from
    ``monitoringNamespace``, replication from ``externalService.loadBalancerSourceRanges``."""

    enabled: bool = True
    clients: list[ClientPeer] = []
    monitoring_namespace: DnsLabel = "monitoring"


class Rotation(_Model):
    """One password's rotation state. Raise ``generation`` to get a new password; keep
    ``acceptPrevious`` true until every client has the new one, then set it false."""

    generation: int = Field(default=1, ge=1)
    accept_previous: bool = False


class PasswordRotation(_Model):
    """Passwords that rotate without restarting Valkey (the reloader sidecar applies them)."""

    client: Rotation = Rotation()
    replication: Rotation = Rotation()
    metrics: Rotation = Rotation()


_COMMAND = re.compile(r"[a-z][a-z-]*(\|[a-z][a-z-]*)?")
# Commands applications, probes and failover need; denying them breaks the deployment itself.
NEVER_DENIED = {"auth", "hello", "ping", "quit", "reset", "select"}


def _command(value: str) -> str:
    name = value.lower()
    if not _COMMAND.fullmatch(name):
        raise PydanticCustomError("command", "expected a Valkey command name such as flushall or config|set")
    if name in NEVER_DENIED:
        raise PydanticCustomError("command", f"a command other than {', '.join(sorted(NEVER_DENIED))}")
    return name


CommandName = Annotated[str, AfterValidator(_command)]

DEFAULT_DENIED_COMMANDS = (
    "flushall",
    "flushdb",
    "debug",
    "config",
    "shutdown",
    "keys",
    "acl",
    "monitor",
    "replicaof",
    "slaveof",
    "failover",
    "module",
    "save",
    "bgsave",
    "bgrewriteaof",
    "sync",
    "psync",
    # Valkey's @dangerous category, except what clients commonly need (INFO, ROLE, CLIENT LIST,
    # SORT, LASTSAVE): one application must not cut other clients (or the DR replication link)
    # off, pause the server, or replace data wholesale.
    "client|kill",
    "client|pause",
    "client|unpause",
    "client|unblock",
    "client|no-evict",
    "swapdb",
    "migrate",
    "restore",
    "restore-asking",
    "function|flush",
    "script|flush",
    "pfdebug",
    "pfselftest",
    "latency|reset",
    "slowlog|reset",
    "commandlog|reset",
    "cluster",
)
"""Denied to applications (the default user) unless the stack says otherwise; operators use the
admin user for these."""
