"""Pod Security Standards checks (baseline + restricted), as the PodSecurity admission plugin
applies them at ``enforce-version: latest``. Returns the violations of one pod spec."""

from __future__ import annotations

from typing import Any

ALLOWED_VOLUME_TYPES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret",
}  # fmt: skip
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}  # fmt: skip
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}


def restricted_violations(pod: dict[str, Any], annotations: dict[str, str] | None = None) -> list[str]:
    """Everything in ``pod`` (a PodSpec) that the restricted profile refuses."""
    v: list[str] = []
    psc = pod.get("securityContext") or {}
    containers = [
        (kind, c) for kind in ("initContainers", "containers", "ephemeralContainers") for c in pod.get(kind) or []
    ]

    # Baseline: host namespaces, host paths and ports, privileged, capabilities, /proc, sysctls.
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(field):
            v.append(f"{field} is true")
    if (psc.get("windowsOptions") or {}).get("hostProcess"):
        v.append("pod windowsOptions.hostProcess")
    for vol in pod.get("volumes") or []:
        types = set(vol) - {"name"}
        if "hostPath" in types:
            v.append(f"volume {vol['name']} is a hostPath")
        if not types <= ALLOWED_VOLUME_TYPES:
            v.append(f"volume {vol['name']} has type {sorted(types - ALLOWED_VOLUME_TYPES)}")
    for sysctl in psc.get("sysctls") or []:
        if sysctl["name"] not in SAFE_SYSCTLS:
            v.append(f"unsafe sysctl {sysctl['name']}")
    for key, value in (annotations or {}).items():
        if (
            key.startswith("container.apparmor.security.beta.kubernetes.io/")
            and value not in ("runtime/default",)
            and not value.startswith("localhost/")
        ):
            v.append(f"AppArmor annotation {key}={value}")
    _check_context(psc, "pod", v)

    # Restricted: non-root, no escalation, seccomp, capabilities dropped.
    pod_non_root = psc.get("runAsNonRoot") is True
    pod_seccomp = (psc.get("seccompProfile") or {}).get("type")
    if psc.get("runAsUser") == 0:
        v.append("pod runAsUser is 0")
    if pod_seccomp == "Unconfined":
        v.append("pod seccompProfile is Unconfined")
    for kind, c in containers:
        name = f"{kind}/{c['name']}"
        sc = c.get("securityContext") or {}
        _check_context(sc, name, v)
        if sc.get("privileged"):
            v.append(f"{name} is privileged")
        for port in c.get("ports") or []:
            if port.get("hostPort"):
                v.append(f"{name} uses hostPort {port['hostPort']}")
        if sc.get("procMount", "Default") != "Default":
            v.append(f"{name} procMount {sc['procMount']}")
        if sc.get("allowPrivilegeEscalation") is not False:
            v.append(f"{name} does not set allowPrivilegeEscalation: false")
        if sc.get("runAsNonRoot") is False or not (pod_non_root or sc.get("runAsNonRoot") is True):
            v.append(f"{name} may run as root (runAsNonRoot not true)")
        if sc.get("runAsUser") == 0:
            v.append(f"{name} runAsUser is 0")
        seccomp = (sc.get("seccompProfile") or {}).get("type") or pod_seccomp
        if seccomp not in ("RuntimeDefault", "Localhost"):
            v.append(f"{name} seccompProfile is {seccomp!r}, not RuntimeDefault or Localhost")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            v.append(f"{name} does not drop ALL capabilities")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            v.append(f"{name} adds capabilities {caps['add']}")
    return v


def _check_context(sc: dict[str, Any], where: str, v: list[str]) -> None:
    se = sc.get("seLinuxOptions") or {}
    if se.get("type", "") not in SELINUX_TYPES or se.get("user") or se.get("role"):
        v.append(f"{where} seLinuxOptions {se}")
    apparmor = (sc.get("appArmorProfile") or {}).get("type")
    if apparmor == "Unconfined":
        v.append(f"{where} appArmorProfile Unconfined")
    if (sc.get("windowsOptions") or {}).get("hostProcess"):
        v.append(f"{where} windowsOptions.hostProcess")
