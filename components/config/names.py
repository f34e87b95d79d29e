"""Name types of the stack configuration: each kind of name Kubernetes, DNS or cert-manager checks,
checked here the same way, so a name they would refuse at apply time stops the program first.

The rules are the API server's (k8s.io/apimachinery/pkg/util/validation): a DNS label (RFC 1123,
namespace names), an RFC 1035 label (Service names: starts with a letter), a DNS subdomain (most
object names: Secrets, StorageClasses, Issuers), a qualified name (label and annotation keys, a
Service's ``loadBalancerClass``), a label value, and an IANA service name (port names).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated

from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

DNS_LABEL_MAX = 63
DNS_SUBDOMAIN_MAX = 253
LABEL_VALUE_MAX = 63
PORT_NAME_MAX = 15

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_RFC1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_QUALIFIED_NAME_PART = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_PORT_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def is_dns_label(value: str) -> bool:
    return len(value) <= DNS_LABEL_MAX and _DNS_LABEL.fullmatch(value) is not None


def is_rfc1035_label(value: str) -> bool:
    return len(value) <= DNS_LABEL_MAX and _RFC1035_LABEL.fullmatch(value) is not None


def is_dns_subdomain(value: str) -> bool:
    """Lowercase labels joined by dots, each a DNS label, at most 253 characters in all."""
    return 0 < len(value) <= DNS_SUBDOMAIN_MAX and all(is_dns_label(label) for label in value.split("."))


def is_qualified_name(value: str) -> bool:
    """``[prefix/]name``: an optional DNS subdomain prefix, a name of at most 63 characters."""
    prefix, _, name = value.rpartition("/")
    if "/" in value and not is_dns_subdomain(prefix):
        return False
    return len(name) <= DNS_LABEL_MAX and _QUALIFIED_NAME_PART.fullmatch(name) is not None


def is_label_value(value: str) -> bool:
    return value == "" or (len(value) <= LABEL_VALUE_MAX and _QUALIFIED_NAME_PART.fullmatch(value) is not None)


def is_port_name(value: str) -> bool:
    """IANA service name: at most 15 lowercase letters, digits and '-', with a letter, no '--'."""
    return (
        len(value) <= PORT_NAME_MAX
        and _PORT_NAME.fullmatch(value) is not None
        and "--" not in value
        and any(c.isalpha() for c in value)
    )


def checked(kind: str, predicate: Callable[[str], bool], accepted: str) -> AfterValidator:
    """A pydantic validator that refuses a string ``predicate`` rejects, saying what is ``accepted``."""

    def check(value: str) -> str:
        if not predicate(value):
            raise PydanticCustomError(kind, accepted)
        return value

    return AfterValidator(check)


DNS_LABEL_TEXT = (
    "a DNS label (RFC 1123): at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit"
)
DNS_SUBDOMAIN_TEXT = (
    "a DNS subdomain: lowercase labels of at most 63 letters, digits and '-' (each starting and ending with a "
    "letter or digit) joined by '.', at most 253 characters, such as fast-ssd or fast.ssd"
)

DnsLabel = Annotated[str, checked("dns_label", is_dns_label, f"expected {DNS_LABEL_TEXT}")]
"""Namespace names, region names."""

DnsSubdomain = Annotated[str, checked("dns_subdomain", is_dns_subdomain, f"expected {DNS_SUBDOMAIN_TEXT}")]
"""Names of Secrets, StorageClasses, Issuers; DNS domains and host names."""

Hostname = Annotated[
    str,
    checked(
        "hostname",
        is_dns_subdomain,
        "expected a lowercase DNS name such as valkey.region1.example.com: labels of at most 63 letters, digits "
        "and '-' joined by '.', at most 253 characters",
    ),
]

LabelKey = Annotated[
    str,
    checked(
        "label_key",
        is_qualified_name,
        "expected a Kubernetes label or annotation key: [prefix/]name, the prefix a DNS subdomain, the name at "
        "most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit",
    ),
]

LabelValue = Annotated[
    str,
    checked(
        "label_value",
        is_label_value,
        "expected a Kubernetes label value: empty, or at most 63 letters, digits, '-', '_' and '.', starting "
        "and ending with a letter or digit",
    ),
]

PortName = Annotated[
    str,
    checked(
        "port_name",
        is_port_name,
        "expected a port name: at most 15 lowercase letters, digits and '-', with at least one letter, "
        "no leading, trailing or doubled '-'",
    ),
]

# Instance names become Service names (RFC 1035 labels) with suffixes up to "-headless", and pod
# names "<name>-<ordinal>", whose controller-revision-hash label ("<name>-<10 characters>") must be
# a label value.
INSTANCE_NAME_MAX = 40
InstanceName = Annotated[
    str,
    checked(
        "instance_name",
        lambda value: len(value) <= INSTANCE_NAME_MAX and is_rfc1035_label(value),
        f"expected a DNS label of at most {INSTANCE_NAME_MAX} characters: lowercase letters, digits and '-', "
        "starting with a letter and ending with a letter or digit",
    ),
]

# A Sentinel master name is written into sentinel.conf and the pods' environment, and travels in
# Sentinel hellos split on ','; it is kept to the characters of a label value, longer.
MASTER_NAME_MAX = 127
SentinelMasterName = Annotated[
    str,
    checked(
        "master_name",
        lambda value: len(value) <= MASTER_NAME_MAX and _QUALIFIED_NAME_PART.fullmatch(value) is not None,
        f"expected a Sentinel master name: at most {MASTER_NAME_MAX} letters, digits, '-', '_' and '.', starting "
        "and ending with a letter or digit",
    ),
]
