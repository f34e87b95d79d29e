"""CrossGuard policies for Valkey workloads, as plain functions the tests call directly.

Each ``check_*`` function takes a resource's type and its inputs the way CrossGuard hands them to a
policy: Kubernetes camelCase, secrets already decrypted, numbers as floats, and during a preview
any value not known yet raising ``UnknownValueError`` when read (the SDK then reports the policy
as "can't run during preview" instead of passing it). They return violation messages, which never
quote a secret value: messages end up in CI logs and pull-request comments.

The checks live in the modules next to this one: ``resource_inputs`` (reading inputs), ``pods``
(pod-spec inspection: what a *Valkey pod* is), ``passwords``, ``hardening`` (pinned images, memory
limits, security context) and ``dr`` (persistence of DR primaries, per resource and per stack).
This module adapts them to CrossGuard's ``(args, report_violation)`` signature (the ``validate_*``
functions) and defines ``POLICIES``, what ``__main__.py`` puts in the pack; it re-exports what the
tests read.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

# policy/ is a policy pack, not a package: its modules import each other by plain name. The CLI
# runs __main__.py with policy/ as sys.path[0]; the tests load this file by path, so put its
# directory on sys.path before importing its siblings.
_POLICY_DIR = str(Path(__file__).resolve().parent)
if _POLICY_DIR not in sys.path:
    sys.path.insert(0, _POLICY_DIR)

from dr import (  # noqa: E402
    DR_LABEL,
    ROLE_LABEL,
    check_dr_endpoints,
    check_dr_primary_aof,
    check_dr_primary_persistence,
    dr_endpoints,
)
from hardening import check_memory_limits, check_pinned_images, check_security_context  # noqa: E402
from passwords import check_no_passwords  # noqa: E402
from pods import all_containers, is_valkey_pod, pod_spec, runs_server  # noqa: E402

__all__ = [
    "DR_LABEL",
    "MANDATORY",
    "POLICIES",
    "ROLE_LABEL",
    "all_containers",
    "check_dr_endpoints",
    "check_dr_primary_aof",
    "check_dr_primary_persistence",
    "check_memory_limits",
    "check_no_passwords",
    "check_pinned_images",
    "check_security_context",
    "dr_endpoints",
    "is_valkey_pod",
    "pod_spec",
    "runs_server",
    "validate_dr_endpoints",
    "validate_dr_primary_aof",
    "validate_dr_primary_persistence",
    "validate_memory_limits",
    "validate_no_passwords",
    "validate_pinned_images",
    "validate_security_context",
]

Check = Callable[[str, Mapping[str, Any], str], list[str]]


def _resource_validation(check: Check) -> Callable[[ResourceValidationArgs, ReportViolation], None]:
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        for message in check(args.resource_type, args.props, args.name):
            report_violation(message, None)

    validate.__name__ = check.__name__.replace("check_", "validate_")
    validate.__doc__ = check.__doc__
    return validate


validate_no_passwords = _resource_validation(check_no_passwords)
validate_pinned_images = _resource_validation(check_pinned_images)
validate_memory_limits = _resource_validation(check_memory_limits)
validate_security_context = _resource_validation(check_security_context)
validate_dr_primary_persistence = _resource_validation(check_dr_primary_persistence)
validate_dr_primary_aof = _resource_validation(check_dr_primary_aof)


def validate_dr_endpoints(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    for urn, message in check_dr_endpoints(args.resources):
        report_violation(message, urn)


MANDATORY = EnforcementLevel.MANDATORY
# list[Policy]: what PolicyPack takes (a list of the union would not do: list is invariant).
POLICIES: list[Policy] = [
    ResourceValidationPolicy(
        name="valkey-no-password-in-pod-spec",
        description="Valkey pods read passwords from mounted Secrets: none in command, args, probes or env values.",
        validate=validate_no_passwords,
        enforcement_level=MANDATORY,
    ),
    ResourceValidationPolicy(
        name="valkey-pinned-images",
        description="Every container of a Valkey pod uses a tag other than latest, or a sha256 digest.",
        validate=validate_pinned_images,
        enforcement_level=MANDATORY,
    ),
    ResourceValidationPolicy(
        name="valkey-memory-limits",
        description="Every container of a Valkey pod sets a memory limit.",
        validate=validate_memory_limits,
        enforcement_level=MANDATORY,
    ),
    ResourceValidationPolicy(
        name="valkey-restricted-security-context",
        description="Every container of a Valkey pod meets the Pod Security Standards restricted profile.",
        validate=validate_security_context,
        enforcement_level=MANDATORY,
    ),
    ResourceValidationPolicy(
        name="valkey-dr-primary-persistence",
        description=f"A workload labelled {DR_LABEL}=true, {ROLE_LABEL}=primary keeps /data on a volumeClaimTemplate.",
        validate=validate_dr_primary_persistence,
        enforcement_level=MANDATORY,
    ),
    ResourceValidationPolicy(
        name="valkey-dr-primary-aof",
        description=f"The config Secret labelled {DR_LABEL}=true, {ROLE_LABEL}=primary sets appendonly yes.",
        validate=validate_dr_primary_aof,
        enforcement_level=MANDATORY,
    ),
    StackValidationPolicy(
        name="valkey-dr-endpoint-persistence",
        description="A Valkey StatefulSet exposed to another region (external-dns LoadBalancer) keeps its data "
        "dir on a volumeClaimTemplate and its valkey.conf sets appendonly yes.",
        validate=validate_dr_endpoints,
        enforcement_level=MANDATORY,
    ),
]
