"""Value types of the stack configuration: sizes, durations, names, image references.

Each type is a pydantic ``Annotated`` type whose error message says what is accepted, so the
config loader can report "key, value given, what is accepted" without knowing the type.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import AfterValidator, ByteSize, ConfigDict, ValidationError, WrapValidator
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

MODEL_CONFIG = ConfigDict(
    extra="forbid",
    alias_generator=to_camel,
    populate_by_name=True,
    # Field docstrings become descriptions: Pulumi.yaml's config block is checked against them.
    use_attribute_docstrings=True,
    frozen=True,
)
"""Every stack config model's settings: camelCase keys, unknown keys refused, immutable."""


# Kubernetes writes binary sizes as "10Gi"; pydantic's ByteSize knows them as "10GiB".
_K8S_BINARY_SUFFIX = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGTPE]i)\s*$")


def _size(value: Any, handler: Any) -> ByteSize:
    if isinstance(value, str):
        match = _K8S_BINARY_SUFFIX.match(value)
        if match:
            value = f"{match.group(1)}{match.group(2)}B"
    try:
        size: ByteSize = handler(value)
    except ValidationError:  # pydantic's own message does not list the accepted forms
        raise PydanticCustomError(
            "size",
            "expected a size such as 512mb, 2GiB or 10Gi (kb/mb/gb are powers of 1000, "
            "KiB/Ki, MiB/Mi, GiB/Gi powers of 1024)",
        ) from None
    if size <= 0:
        raise PydanticCustomError("size", "expected a size greater than zero")
    return size


Size = Annotated[ByteSize, WrapValidator(_size)]
"""A byte size; pydantic's ``ByteSize`` units plus Kubernetes' ``Ki``/``Mi``/``Gi`` suffixes."""

_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d)\s*$")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(value: Any, handler: Any) -> timedelta:
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            value = int(match.group(1)) * _DURATION_UNITS[match.group(2)]
    try:
        result: timedelta = handler(value)
    except ValidationError:
        raise PydanticCustomError(
            "duration", "expected a duration such as 30s, 5m, 24h or 1d, or a number of seconds"
        ) from None
    if result.total_seconds() <= 0:
        raise PydanticCustomError("duration", "expected a duration greater than zero")
    return result


Duration = Annotated[timedelta, WrapValidator(_duration)]
"""A duration: ``30s``, ``5m``, ``24h``, ``1d``, a number of seconds, or ISO 8601."""


def _pattern(name: str, regex: str, accepted: str, max_length: int = 253) -> AfterValidator:
    compiled = re.compile(regex)

    def check(value: str) -> str:
        if len(value) > max_length or not compiled.fullmatch(value):
            raise PydanticCustomError(name, accepted)
        return value

    return AfterValidator(check)


# Instance names become Service names (RFC 1035 labels) with suffixes such as "-headless", and
# pod names "<name>-0" carry a controller-revision hash label that must stay under 63 characters.
InstanceName = Annotated[
    str,
    _pattern(
        "instance_name",
        r"[a-z]([-a-z0-9]*[a-z0-9])?",
        "expected a DNS label of at most 40 characters: lowercase letters, digits and '-', "
        "starting with a letter and ending with a letter or digit",
        max_length=40,
    ),
]

DnsLabel = Annotated[
    str,
    _pattern(
        "dns_label",
        r"[a-z0-9]([-a-z0-9]*[a-z0-9])?",
        "expected a DNS label (RFC 1123) of at most 63 characters: lowercase letters, digits "
        "and '-', starting and ending with a letter or digit",
        max_length=63,
    ),
]

Hostname = Annotated[
    str,
    _pattern(
        "hostname",
        r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*",
        "expected a lowercase DNS name such as valkey.region1.example.com",
    ),
]

StackName = Annotated[
    str,
    _pattern(
        "stack_name",
        r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+",
        "expected a fully qualified stack name <organization>/<project>/<stack>, such as organization/valkey/region1",
    ),
]

# A registry path with a tag, a digest, or both. An image without either, or tagged only
# "latest", is not a pin: the same config could deploy a different server tomorrow.
_IMAGE = re.compile(
    r"(?P<repo>[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[a-f0-9]{64}))?"
)


def _image(value: str) -> str:
    match = _IMAGE.fullmatch(value)
    if not match or not (match["tag"] or match["digest"]):
        raise PydanticCustomError(
            "image",
            "expected a pinned image reference: repository:tag, repository@sha256:<64 hex> "
            "or both, such as valkey/valkey:8.1.8-alpine",
        )
    if match["tag"] == "latest" and not match["digest"]:
        raise PydanticCustomError("image", "the tag 'latest' is not a pin: use a version tag or a digest")
    return value


ImageRef = Annotated[str, AfterValidator(_image)]
"""A container image pinned by tag and/or sha256 digest."""

CpuQuantity = Annotated[
    str,
    _pattern(
        "cpu",
        r"([1-9][0-9]*m|[0-9]+(\.[0-9]{1,3})?)",
        "expected a Kubernetes CPU quantity such as 250m, 1 or 1.5",
        max_length=16,
    ),
]


def _cidr(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=True))
    except ValueError:
        raise PydanticCustomError("cidr", "expected a CIDR block such as 10.20.0.0/16 (host bits zero)") from None


Cidr = Annotated[str, AfterValidator(_cidr)]
