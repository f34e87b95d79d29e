"""Rules between stack config fields, each reported against the one key a user would change."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ByteSize

from .config import (
    MAXMEMORY_SHARE_OF_LIMIT,
    StackConfig,
    backlog_bytes,
    memory_limit_bytes,
    server_maxmemory_bytes,
    tls_enabled,
)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the configuration, phrased for the person who wrote it."""

    key: str
    """Config key path without the namespace, e.g. ``instances.sessions.maxmemory``."""
    given: object
    accepted: str


def cross_checks(cfg: StackConfig, stack: str) -> list[Problem]:
    """Rules between fields, each reported against the key a user would change."""
    problems: list[Problem] = []
    if cfg.role == "replica" and cfg.primary_stack is None:
        problems.append(
            Problem(
                "primaryStack",
                None,
                "required when role is replica: the primary's stack, e.g. organization/valkey/region1",
            )
        )
    if cfg.role == "primary" and cfg.primary_stack is not None:
        problems.append(
            Problem(
                "primaryStack",
                cfg.primary_stack,
                "only with role replica; remove it on a primary stack (after a promotion too)",
            )
        )
    if cfg.primary_stack is not None and cfg.primary_stack.rsplit("/", 1)[-1] == stack:
        problems.append(Problem("primaryStack", cfg.primary_stack, f"another stack than this one ({stack})"))
    needs_external = [n for n, i in cfg.instances.items() if i.dr and i.external_host is None]
    if needs_external and cfg.external_domain is None:
        problems.append(
            Problem(
                "externalDomain",
                None,
                "a domain such as example.com, needed for the external names of DR instances "
                f"({', '.join(sorted(needs_external))}), or set instances.<name>.externalHost on each",
            )
        )
    problems += _security_checks(cfg)
    for name, inst in cfg.instances.items():
        key = f"instances.{name}"
        if inst.dr and not inst.persistence:
            problems.append(
                Problem(
                    f"{key}.persistence",
                    False,
                    "true while dr is true: a DR primary that restarts empty would wipe its replica too",
                )
            )
        if inst.external_host is not None and not inst.dr:
            problems.append(Problem(f"{key}.externalHost", inst.external_host, "only on instances with dr: true"))
        limit = memory_limit_bytes(inst)
        server = server_maxmemory_bytes(inst)
        if server > limit * MAXMEMORY_SHARE_OF_LIMIT:
            backlog = backlog_bytes(inst)
            problems.append(
                Problem(
                    f"{key}.maxmemory",
                    _size(inst.maxmemory),
                    f"at most {ByteSize(int(limit * MAXMEMORY_SHARE_OF_LIMIT) - backlog).human_readable()}: "
                    f"maxmemory plus the {ByteSize(backlog).human_readable()} replication backlog (Valkey "
                    f"counts it in maxmemory) may use 80% of the {ByteSize(limit).human_readable()} memory "
                    "limit (resources.memory)",
                )
            )
        if inst.storage.size is not None and inst.storage.size < inst.maxmemory:
            problems.append(
                Problem(
                    f"{key}.storage.size",
                    _size(inst.storage.size),
                    f"at least maxmemory ({inst.maxmemory.human_readable()}); 3x is recommended for AOF rewrites",
                )
            )
        if inst.resources.cpu_limit is not None and _cpu_millis(inst.resources.cpu_limit) < _cpu_millis(
            inst.resources.cpu
        ):
            problems.append(
                Problem(
                    f"{key}.resources.cpuLimit",
                    inst.resources.cpu_limit,
                    f"at least the CPU request ({inst.resources.cpu})",
                )
            )
    return problems


def _security_checks(cfg: StackConfig) -> list[Problem]:
    problems = []
    if tls_enabled(cfg):
        sources = [cfg.tls.issuer is not None, cfg.tls.existing_secret is not None]
        if sum(sources) != 1:
            given = {"issuer": cfg.tls.issuer and cfg.tls.issuer.name, "existingSecret": cfg.tls.existing_secret}
            problems.append(
                Problem(
                    "tls",
                    given,
                    "exactly one certificate source while TLS is on (the default with DR instances): "
                    "tls.issuer (cert-manager) or tls.existingSecret; or tls.enabled: false",
                )
            )
        if cfg.tls.ca_bundle is None:
            problems.append(Problem("tls.caBundle", None, "the PEM of the CA that signs this stack's certificates"))
    replicated = [n for n, i in cfg.instances.items() if i.dr]
    if cfg.network_policy.enabled and replicated and not cfg.peer_cidrs:
        problems.append(
            Problem(
                "peerCidrs",
                [],
                "the other region's CIDRs: with networkPolicy.enabled only they may replicate "
                f"with the DR instances ({', '.join(sorted(replicated))}); or networkPolicy.enabled: false",
            )
        )
    return problems


def _cpu_millis(quantity: str) -> float:
    return float(quantity[:-1]) if quantity.endswith("m") else float(quantity) * 1000


def _size(value: int) -> str:
    return f"{int(value)} bytes ({ByteSize(value).human_readable()})"
