"""Pod checks beyond passwords: pinned images, memory limits, the restricted security context."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pods import all_containers, valkey_pod_spec
from resource_inputs import describe, dig, strings

_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


def image_pinned(image: str) -> bool:
    """``repo@sha256:<64 hex>``, or a tag other than ``latest``."""
    if "@" in image:
        return bool(_DIGEST.search(image))
    last = image.rsplit("/", 1)[-1]
    return ":" in last and last.split(":", 1)[1] not in ("", "latest")


def check_pinned_images(resource_type: str, props: Mapping[str, Any], name: str = "") -> list[str]:
    spec = valkey_pod_spec(resource_type, props)
    if spec is None:
        return []
    what = describe(resource_type, props, name)
    return [
        f"{what}: container '{c.get('name')}' image '{c.get('image')}' is not pinned: "
        "use a tag other than 'latest' or an @sha256 digest"
        for c in all_containers(spec)
        if not (isinstance(c.get("image"), str) and image_pinned(c["image"]))
    ]


def check_memory_limits(resource_type: str, props: Mapping[str, Any], name: str = "") -> list[str]:
    spec = valkey_pod_spec(resource_type, props)
    if spec is None:
        return []
    what = describe(resource_type, props, name)
    return [
        f"{what}: container '{c.get('name')}' sets no memory limit (resources.limits.memory)"
        for c in all_containers(spec)
        if dig(c, "resources", "limits", "memory") in (None, "", 0, "0")
    ]


def security_context_problems(pod: Mapping[str, Any], container: Mapping[str, Any]) -> list[str]:
    """What keeps a container from the restricted profile; the container's own securityContext
    overrides the pod's for runAsNonRoot, runAsUser and seccompProfile, as in Kubernetes."""
    sc = container.get("securityContext") or {}
    psc = pod.get("securityContext") or {}

    def effective(key: str) -> Any:
        value = sc.get(key)
        return psc.get(key) if value is None else value

    problems = []
    if effective("runAsNonRoot") is not True:
        problems.append("runAsNonRoot is not true")
    if effective("runAsUser") in (0, 0.0):
        problems.append("runAsUser is 0 (root)")
    if sc.get("allowPrivilegeEscalation") is not False:
        problems.append("allowPrivilegeEscalation is not false")
    if sc.get("privileged") is True:
        problems.append("privileged is true")
    if "ALL" not in strings(dig(sc, "capabilities", "drop")):
        problems.append("capabilities.drop does not include ALL")
    if strings(dig(sc, "capabilities", "add")):
        problems.append("capabilities.add is not empty")
    seccomp = effective("seccompProfile") or {}
    if seccomp.get("type") not in ("RuntimeDefault", "Localhost"):
        problems.append("seccompProfile.type is not RuntimeDefault or Localhost")
    if sc.get("readOnlyRootFilesystem") is not True:
        problems.append("readOnlyRootFilesystem is not true")
    return problems


def check_security_context(resource_type: str, props: Mapping[str, Any], name: str = "") -> list[str]:
    spec = valkey_pod_spec(resource_type, props)
    if spec is None:
        return []
    what = describe(resource_type, props, name)
    messages = []
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(key) is True:
            messages.append(f"{what}: {key} is true")
    for c in all_containers(spec):
        problems = security_context_problems(spec, c)
        if problems:
            messages.append(f"{what}: container '{c.get('name')}' security context: {'; '.join(problems)}")
    return messages
