"""A region's control plane, as far as pods see it: the ``kubernetes`` Service of the ``default``
namespace (an address on the runner's bridge, port 443), a CA of its own, and the API stand-in
(apiserver.py) behind it, with the RBAC rules the manifests' Roles and RoleBindings grant.

Created by the runner for the first pod started in a region. Every container of the region gets the
Service's environment variables (the kubelet sets them whatever enableServiceLinks says:
pkg/kubelet/kubelet_pods.go getServiceEnvVarMap), and ``kubernetes.default.svc[.<domain>]``
resolves to it in the region's pods.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pki import make_ca

from .apiserver import ApiServer, Rule, ServiceAccount
from .errors import UnsupportedPodFeature
from .objects import ObjectStore, namespace_of

SERVICE_PORT = 443
RULE_KEYS = {"apiGroups", "resources", "verbs", "resourceNames"}


def make_apiserver_cert(directory: Path, ca: tuple[Path, Path], address: str, domain: str) -> tuple[Path, Path]:
    """(key, certificate) for the names and address kube-apiserver's serving certificate carries."""
    key, csr, cert, ext = (directory / f"apiserver.{suffix}" for suffix in ("key", "csr", "crt", "ext"))
    names = ["kubernetes", "kubernetes.default", "kubernetes.default.svc", f"kubernetes.default.svc.{domain}"]
    ext.write_text(
        "basicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n"
        f"subjectAltName={','.join(f'DNS:{n}' for n in names)},IP:{address}\n"
    )

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key),
            "-out", str(csr), "-subj", "/CN=kube-apiserver")  # fmt: skip
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca[1]), "-CAkey", str(ca[0]), "-CAcreateserial",
            "-out", str(cert), "-days", "2", "-extfile", str(ext))  # fmt: skip
    return key, cert


class Cluster:
    """One region's API server and CA. ``address`` is the ``kubernetes`` Service's ClusterIP here."""

    def __init__(self, region: str, address: str, workdir: Path, domain: str):
        self.region = region
        self.address = address
        self.domain = domain
        workdir.mkdir(parents=True, exist_ok=True)
        ca = make_ca(workdir, f"{region}-ca")
        self.ca_path = ca[1]
        self.ca = ca[1].read_bytes()
        self.api = ApiServer(tls=make_apiserver_cert(workdir, ca, address, domain), host=address, port=SERVICE_PORT)

    @property
    def audiences(self) -> tuple[str, ...]:
        """What a token must be for to be accepted (the API server's --api-audiences; its usual default,
        the issuer ``https://kubernetes.default.svc.<domain>``). A projected token naming another
        audience is written but refused here (401), as by kube-apiserver."""
        return ("", f"https://kubernetes.default.svc.{self.domain}")

    @property
    def dns_name(self) -> str:
        return f"kubernetes.default.svc.{self.domain}"

    def service_env(self) -> dict[str, str]:
        """envvars.FromServices for the ``kubernetes`` Service (one TCP port named https)."""
        host, port = self.address, str(SERVICE_PORT)
        url = f"tcp://{host}:{port}"
        return {
            "KUBERNETES_SERVICE_HOST": host,
            "KUBERNETES_SERVICE_PORT": port,
            "KUBERNETES_SERVICE_PORT_HTTPS": port,
            "KUBERNETES_PORT": url,
            f"KUBERNETES_PORT_{port}_TCP": url,
            f"KUBERNETES_PORT_{port}_TCP_PROTO": "tcp",
            f"KUBERNETES_PORT_{port}_TCP_PORT": port,
            f"KUBERNETES_PORT_{port}_TCP_ADDR": host,
        }

    def close(self) -> None:
        self.api.close()


def service_account(store: ObjectStore, namespace: str, name: str) -> ServiceAccount:
    """The identity of a token for ServiceAccount ``namespace/name`` and the rules that the manifests'
    RoleBindings in its namespace grant it (RBAC is additive: every binding's Role counts). A binding
    to a Role that does not exist grants nothing, as in RBAC. Refused: ClusterRoleBindings, bindings
    to ClusterRoles or to User/Group subjects, rules for non-resource URLs or unknown rule fields, and
    a binding elsewhere naming this account (the stand-in authorizes in the account's namespace only)."""
    if store.of_kind("ClusterRoleBinding") or store.of_kind("ClusterRole"):
        raise UnsupportedPodFeature("ClusterRole/ClusterRoleBinding", "cluster-wide RBAC is not emulated")
    rules: list[Rule] = []
    for binding in store.of_kind("RoleBinding"):
        where = f"RoleBinding {namespace_of(binding)}/{binding['metadata']['name']}"
        subjects = binding.get("subjects") or []
        for subject in subjects:
            if subject.get("kind") != "ServiceAccount":
                raise UnsupportedPodFeature(f"{where}.subjects", f"{subject.get('kind')!r} subjects are not emulated")
        mine = [
            s for s in subjects if s.get("name") == name and (s.get("namespace") or namespace_of(binding)) == namespace
        ]
        if not mine:
            continue
        if namespace_of(binding) != namespace:
            raise UnsupportedPodFeature(where, f"grants {namespace}/{name} rights in another namespace: not emulated")
        ref = binding.get("roleRef") or {}
        if ref.get("kind") != "Role" or ref.get("apiGroup", "rbac.authorization.k8s.io") != "rbac.authorization.k8s.io":
            raise UnsupportedPodFeature(f"{where}.roleRef", f"{ref.get('kind')!r}: only namespaced Roles are emulated")
        role = store.find("Role", namespace, ref.get("name", ""))
        for i, rule in enumerate((role or {}).get("rules") or []):
            rules += _rule(rule, f"Role {namespace}/{ref['name']}.rules[{i}]")
    return ServiceAccount(namespace, name, tuple(rules))


def _rule(rule: Mapping[str, Any], where: str) -> list[Rule]:
    unknown = set(rule) - RULE_KEYS
    if unknown:
        raise UnsupportedPodFeature(f"{where}.{sorted(unknown)[0]}", "not emulated")
    groups = rule.get("apiGroups") or []
    if "" not in groups and "*" not in groups:
        return []  # another API group: grants nothing on core pods (the stand-in serves nothing else)
    return [
        Rule(
            tuple(str(v) for v in rule.get("verbs") or []),
            tuple(str(r) for r in rule.get("resources") or []),
            tuple(str(n) for n in rule.get("resourceNames") or []),
        )
    ]
