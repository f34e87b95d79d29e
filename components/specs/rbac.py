"""The label updater's ServiceAccount, Role and RoleBinding (specs/labeler.py says what it does)."""

from __future__ import annotations

import pulumi_kubernetes as k8s

from .labeler import role_rules


def role_ref(role: str) -> k8s.rbac.v1.RoleRefArgs:
    return k8s.rbac.v1.RoleRefArgs(api_group="rbac.authorization.k8s.io", kind="Role", name=role)


def subjects(service_account: str, namespace: str) -> list[k8s.rbac.v1.SubjectArgs]:
    return [k8s.rbac.v1.SubjectArgs(kind="ServiceAccount", name=service_account, namespace=namespace)]


__all__ = ["role_ref", "role_rules", "subjects"]
