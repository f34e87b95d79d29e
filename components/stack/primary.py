"""The primary region's stack outputs, read by the DR region through a StackReference.

What another stack exports is input like any config key: an old output, a doctored state file or a
bug there would otherwise write whatever it holds into this region's valkey.conf. Every value used
here is validated with the same types as the config before anything reaches a file, and a problem
stops the program with one RunError before any Kubernetes object is declared.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import pulumi
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError
from pydantic.alias_generators import to_camel

from ..config.models import MAX_MAXMEMORY, Instance
from ..config.names import Hostname, SentinelMasterName, checked
from ..config.pem import PemBundle
from ..config.problems import Described, Problem, described_size, format_problems, not_shown
from ..config.types import MIB, Integer, within
from ..render.valkey_conf import Upstream
from .outputs import CA_BUNDLE, INSTANCES, REPLICATION_CREDENTIALS

_CA_BUNDLE: TypeAdapter[str] = TypeAdapter(PemBundle)

AclUsername = Annotated[
    str,
    checked(
        "username",
        lambda value: re.fullmatch(r"[a-z][a-z0-9_-]{0,63}", value) is not None,
        "an ACL user name: lowercase letters, digits, '_' and '-'",
    ),
]
GeneratedPassword = Annotated[
    str,
    checked(
        "password",
        lambda value: re.fullmatch(r"[A-Za-z0-9]{16,256}", value) is not None,
        "a password of 16 to 256 letters and digits, as the program makes",
    ),
]


class _Output(BaseModel):
    # Newer primaries may export more keys than this version reads: ignore them, validate the rest.
    model_config = ConfigDict(extra="ignore", frozen=True, alias_generator=to_camel, populate_by_name=True)


class ExportedInstance(_Output):
    """The fields of ``instances.<name>`` a replica uses."""

    external_host: Hostname | None = None
    port: Annotated[Integer, within(1, 65535)]
    tls: bool
    maxmemory_bytes: Annotated[Integer, within(MIB, MAX_MAXMEMORY)]
    sentinel_master_name: SentinelMasterName | None = None


class ReplicationLogin(_Output):
    username: AclUsername
    password: GeneratedPassword


@dataclass
class PrimaryRegion:
    upstreams: dict[str, pulumi.Output[Upstream]]
    """Per replicated instance: the primary's external endpoint and the replication login (secret)."""
    ca_bundle: str | None
    """PEM of the CA that signs the primary's certificates, to verify them; None without TLS."""


async def read_primary(
    stack_name: str, replicas: dict[str, Instance], tls: bool, master_names: Mapping[str, str]
) -> PrimaryRegion:
    """Awaited before any Kubernetes resource is declared, so a replica stack that does not match
    its primary stops with one message and creates nothing."""
    reference = pulumi.StackReference("primary-stack", stack_name=stack_name)
    instances = await reference.get_output_details(INSTANCES)
    credentials = await reference.get_output_details(REPLICATION_CREDENTIALS)
    ca_bundle = await reference.get_output_details(CA_BUNDLE)
    if instances.value is None or credentials.secret_value is None:
        raise pulumi.RunError(
            f"valkey:primaryStack: stack {stack_name} exports no {INSTANCES!r} and secret "
            f"{REPLICATION_CREDENTIALS!r} this stack can read: run `pulumi up` on it first, and make sure both "
            "stacks use the same secrets passphrase (an output this stack cannot decrypt reads as nothing)"
        )
    upstreams, trusted, problems = check_primary(
        stack_name,
        replicas=replicas,
        instances=instances.value,
        credentials=credentials.secret_value,
        ca_bundle=ca_bundle.value,
        tls=tls,
        master_names=master_names,
    )
    if problems:
        title = f"Stack {pulumi.get_stack()!r} does not match its primary stack {stack_name}"
        raise pulumi.RunError(format_problems(problems, pulumi.get_stack(), title=title))
    return PrimaryRegion(
        upstreams={name: pulumi.Output.secret(upstream) for name, upstream in upstreams.items()},
        ca_bundle=trusted,
    )


def _output_problems(stack_name: str, path: str, error: ValidationError, secret: bool = False) -> list[Problem]:
    problems = []
    for e in error.errors(include_url=False):
        where = ".".join([path, *(str(part) for part in e["loc"])])
        given = not_shown(e.get("input")) if secret else e.get("input")
        message = "a value (this output is required)" if e["type"] == "missing" else e["msg"]
        problems.append(Problem("primaryStack", given, f"stack {stack_name}'s output {where}: {message}"))
    return problems


def check_primary(
    stack_name: str,
    *,
    replicas: dict[str, Instance],
    instances: Any,
    credentials: Any,
    ca_bundle: Any,
    tls: bool,
    master_names: Mapping[str, str],
) -> tuple[dict[str, Upstream], str | None, list[Problem]]:
    """Upstreams per replicated instance, the primary's CA bundle, and what is wrong with either.
    Pure: the StackReference's values in, validated settings out. ``master_names``: this region's
    Sentinel master name of each replicated group, which must not be the primary region's."""
    problems: list[Problem] = []
    upstreams: dict[str, Upstream] = {}
    if not isinstance(instances, dict) or not isinstance(credentials, dict):
        given = type(instances).__name__ if not isinstance(instances, dict) else not_shown(credentials)
        return {}, None, [Problem("primaryStack", given, f"stack {stack_name}'s outputs as this program exports them")]
    trusted = None
    serves_tls = False
    for name, settings in replicas.items():
        key = f"instances.{name}"
        if name not in instances or name not in credentials:
            problems.append(
                Problem(
                    key,
                    Described("dr: true"),
                    f"an instance stack {stack_name} replicates (its DR instances: {sorted(credentials)}); "
                    "set dr: false here or dr: true there",
                )
            )
            continue
        try:
            primary = ExportedInstance.model_validate(instances[name])
        except ValidationError as error:
            problems += _output_problems(stack_name, f"{INSTANCES}.{name}", error)
            continue
        try:
            login = ReplicationLogin.model_validate(credentials[name])
        except ValidationError as error:
            # A secret output: what it holds never reaches a message.
            problems += _output_problems(stack_name, f"{REPLICATION_CREDENTIALS}.{name}", error, secret=True)
            continue
        mismatch = _mismatch(stack_name, name, settings, primary, tls=tls, master_name=master_names.get(name))
        if mismatch is not None:
            problems.append(mismatch)
        else:
            serves_tls = serves_tls or primary.tls
            upstreams[name] = Upstream(
                host=primary.external_host or "", port=primary.port, username=login.username, password=login.password
            )
    if serves_tls:
        try:
            trusted = _CA_BUNDLE.validate_python(ca_bundle)
        except ValidationError as error:
            problems += _output_problems(stack_name, CA_BUNDLE, error)
    return upstreams, trusted, problems


def _mismatch(
    stack_name: str, name: str, settings: Instance, primary: ExportedInstance, *, tls: bool, master_name: str | None
) -> Problem | None:
    """What makes this region's settings of a replicated instance unfit for the primary's, if anything."""
    key = f"instances.{name}"
    if primary.external_host is None:
        return Problem("primaryStack", None, f"stack {stack_name} to export an externalHost for {name}")
    if primary.port != settings.port:
        return Problem(f"{key}.port", settings.port, f"the primary's port {primary.port}")
    if primary.tls != tls:
        return Problem(
            "tls.enabled",
            tls,
            f"{str(primary.tls).lower()}, as stack {stack_name} serves {name}: a replica replicates over TLS "
            "exactly when its primary serves TLS",
        )
    if settings.replicas > 1 and master_name == primary.sentinel_master_name:
        return Problem(
            f"{key}.sentinelMasterName",
            master_name,
            f"a name other than {primary.sentinel_master_name!r}, stack {stack_name}'s for {name} (unset, it is "
            "<instance>-<region>): the regions' Sentinels would hear each other through the replication stream "
            "and take each other's primary",
        )
    if settings.maxmemory < primary.maxmemory_bytes:
        return Problem(
            f"{key}.maxmemory",
            described_size(settings.maxmemory),
            f"at least the primary's {primary.maxmemory_bytes} bytes (a replica does not evict; it would run out)",
        )
    return None
