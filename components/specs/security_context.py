"""The container security context every sidecar and server gets: Pod Security Standards
"restricted", plus a read-only root filesystem."""

from __future__ import annotations

import pulumi_kubernetes as k8s


def restricted_pod(uid: int, gid: int, **extra: str) -> k8s.core.v1.PodSecurityContextArgs:
    """The pod's part: a non-root user and group, Secret and volume files of that group (fsGroup),
    the runtime's default seccomp profile. ``extra``: further fields, e.g. fs_group_change_policy."""
    return k8s.core.v1.PodSecurityContextArgs(
        run_as_non_root=True,
        run_as_user=uid,
        run_as_group=gid,
        fs_group=gid,
        seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault"),
        **extra,  # type: ignore[arg-type]
    )


def restricted(uid: int, gid: int) -> k8s.core.v1.SecurityContextArgs:
    return k8s.core.v1.SecurityContextArgs(
        allow_privilege_escalation=False,
        read_only_root_filesystem=True,
        run_as_non_root=True,
        run_as_user=uid,
        run_as_group=gid,
        capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"]),
        seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault"),
    )
