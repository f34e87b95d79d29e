"""Security settings of a stack: TLS, network policy, password rotation, denied commands."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

from .names import DnsLabel, DnsSubdomain, LabelKey, LabelValue
from .pem import PemBundle
from .types import ConfigModel, Integer, within
from .valkey_commands import category_members, known_categories, known_commands, versions, versions_knowing

MAX_LIST = 64
"""Upper bound of every list and map in the config a person writes by hand (CIDRs, clients, labels)."""


class IssuerRef(ConfigModel):
    """The cert-manager Issuer or ClusterIssuer that signs the server certificates."""

    name: DnsSubdomain
    """The issuer's name."""
    kind: Literal["Issuer", "ClusterIssuer"] = "ClusterIssuer"
    """An Issuer must live in the stack's namespace; a ClusterIssuer serves every namespace."""


class Tls(ConfigModel):
    """TLS for every client and replication connection of the stack's instances.

    On by default whenever the stack has a DR instance (its replication crosses regions).
    Certificates come from cert-manager (``issuer``) or from an existing Secret
    (``existingSecret``, keys tls.crt and tls.key, valid for every instance's names).
    """

    enabled: bool | None = None
    """Default: true if any instance has dr: true."""
    issuer: IssuerRef | None = None
    """cert-manager issues a Certificate <instance>-tls per instance; exactly one of issuer and existingSecret."""
    existing_secret: DnsSubdomain | None = None
    """Instead of issuer: a Secret (not one the program creates) with tls.crt and tls.key valid for
    every instance's names."""
    ca_bundle: PemBundle | None = None
    """PEM of the CA that signs this stack's server certificates. Exported (not secret) so the
    other region's replicas can verify this one's primaries; probes verify against it too."""


PodLabels = Annotated[dict[LabelKey, LabelValue], Field(max_length=MAX_LIST)]


class ClientPeer(ConfigModel):
    """Pods allowed to connect as clients."""

    namespace: DnsLabel
    """The clients' namespace (its kubernetes.io/metadata.name label)."""
    pod_labels: PodLabels = {}
    """Only pods with these labels; empty means every pod of the namespace."""


class NetworkPolicy(ConfigModel):
    """Default deny for Valkey pods, then: clients from ``clients``, metrics scrapes from
    ``monitoringNamespace``, replication from ``peerCidrs``."""

    enabled: bool = True
    """A default-deny NetworkPolicy per instance."""
    clients: Annotated[list[ClientPeer], Field(max_length=MAX_LIST)] = []
    """Pods allowed to connect to the client port. Empty: no application can connect."""
    monitoring_namespace: DnsLabel = "monitoring"
    """The namespace that may scrape the metrics port."""


MAX_GENERATION = 10_000


class Rotation(ConfigModel):
    """One password's rotation state. Raise ``generation`` to get a new password; keep
    ``acceptPrevious`` true until every client has the new one, then set it false."""

    generation: Annotated[Integer, within(1, MAX_GENERATION)] = 1
    """Raise it by one for a new password."""
    accept_previous: bool = False
    """Keep accepting the password of the previous generation while clients move to the new one."""


class PasswordRotation(ConfigModel):
    """Passwords that rotate without restarting Valkey (the reloader sidecar applies them)."""

    client: Rotation = Rotation()
    """The default user's password, which applications use."""
    replication: Rotation = Rotation()
    """The password the other region's replicas log in with."""
    metrics: Rotation = Rotation()
    """The metrics exporter's password."""


# Commands applications, probes and failover need; denying them breaks the deployment itself.
NEVER_DENIED = frozenset({"auth", "hello", "ping", "quit", "reset", "select"})


def _command(value: str) -> str:
    """A command, ``container|subcommand`` or ``@category`` every supported Valkey knows: an unknown
    name in the ACL file makes Valkey refuse to start, a crash loop instead of a config error."""
    name = value.lower()
    supported = ", ".join(sorted(versions()))
    if name.startswith("@"):
        category = name[1:]
        if category not in known_categories():
            raise PydanticCustomError(
                "command", f"an ACL category Valkey {supported} all know: @{', @'.join(sorted(known_categories()))}"
            )
        needed = sorted(category_members(category) & NEVER_DENIED)
        if needed:
            raise PydanticCustomError(
                "command", f"a category without {', '.join(needed)}: @{category} would lock applications out"
            )
        return name
    if name in NEVER_DENIED:
        raise PydanticCustomError("command", f"a command other than {', '.join(sorted(NEVER_DENIED))}")
    if name not in known_commands():
        knowing = versions_knowing(name)
        detail = f"only Valkey {', '.join(knowing)} knows {name}" if knowing else f"Valkey knows no command {name!r}"
        raise PydanticCustomError(
            "command",
            f"a command (or container|subcommand, or @category) that Valkey {supported} all know; {detail}",
        )
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
