"""The name of every object an instance creates, in Kubernetes and in Pulumi, in one place.

The components take their names from here, and the config checks use ``kubernetes_objects`` and
``pulumi_resources`` to refuse two instances whose objects would collide: instance ``a``'s admin
Secret is ``a-admin-credentials``, which is also instance ``a-admin``'s client Secret; instance
``sessions-external`` would be a second Service ``sessions-external``. Pulumi names are part of each
resource's URN: renaming one replaces the resource, so these strings never change.
"""

from __future__ import annotations

from dataclasses import dataclass

EXTERNAL_DNS_HOSTNAME = "external-dns.alpha.kubernetes.io/hostname"
"""The annotation external-dns publishes a LoadBalancer Service's name from."""
DATA_CLAIM = "data"
"""The StatefulSet's volumeClaimTemplate; the claim of pod N is ``data-<instance>-<N>``."""
ROTATING_USERS = ("client", "replication", "metrics")
MAX_PODS = 7
"""The largest group (config.models.MAX_REPLICAS): names of every pod it may have are reserved."""
FIXED_PASSWORDS = (
    "probe",
    "reloader",
    "admin",
    "sentinel",
    "sentinel-peer",
    "sentinel-client",
    "sentinel-metrics",
    "labeler",
)


@dataclass(frozen=True)
class InstanceNames:
    instance: str

    # Kubernetes objects (metadata.name), each also the Pulumi resource name unless noted.
    @property
    def statefulset(self) -> str:
        """Also the client Service, the PodDisruptionBudget and the NetworkPolicy."""
        return self.instance

    @property
    def config_secret(self) -> str:
        return f"{self.instance}-config"

    @property
    def headless_service(self) -> str:
        return f"{self.instance}-headless"

    @property
    def external_service(self) -> str:
        return f"{self.instance}-external"

    @property
    def read_service(self) -> str:
        """A group's Service over every Ready member, primary and replicas."""
        return f"{self.instance}-read"

    @property
    def sentinel_service(self) -> str:
        """A group's Service over its Sentinels."""
        return f"{self.instance}-sentinel"

    @property
    def labeler(self) -> str:
        """A group's ServiceAccount, Role and RoleBinding of the role-label updater."""
        return f"{self.instance}-labeler"

    @property
    def marker(self) -> str:
        """The ConfigMap that exists once the instance was first Ready (specs/marker.py)."""
        return f"{self.instance}-holds-data"

    @property
    def certificate(self) -> str:
        """The cert-manager Certificate, and the Secret cert-manager writes for it."""
        return f"{self.instance}-tls"

    @property
    def client_secret(self) -> str:
        return f"{self.instance}-credentials"

    @property
    def admin_secret(self) -> str:
        return f"{self.instance}-admin-credentials"

    @property
    def migration(self) -> str:
        """The keyspace copy's Job, and the Service and ServiceMonitor over its metrics."""
        return f"{self.instance}-migration"

    def pod(self, ordinal: int) -> str:
        return f"{self.statefulset}-{ordinal}"

    def member_domain(self, namespace: str, cluster_domain: str) -> str:
        """What a group member's DNS name ends in, ``<pod>.<member_domain>``: the name it announces to
        its peers and Sentinels, which the alerts also tell the group's own hosts by."""
        return f"{self.headless_service}.{namespace}.svc.{cluster_domain}"

    def claim(self, ordinal: int) -> str:
        return f"{DATA_CLAIM}-{self.statefulset}-{ordinal}"

    # Pulumi resource names that are not a Kubernetes name.
    def password(self, user: str, generation: int = 1) -> str:
        """RandomPassword of a user; a rotating one of generation N > 1 gets ``-g<N>``."""
        return f"{self.instance}-{user}" if generation == 1 else f"{self.instance}-{user}-g{generation}"

    @property
    def client_secret_resource(self) -> str:
        return f"{self.instance}-client"

    def client_secret_copy_resource(self, namespace: str) -> str:
        return f"{self.instance}-client-{namespace}"

    @property
    def admin_secret_resource(self) -> str:
        return f"{self.instance}-admin"

    def claim_patch_resource(self, ordinal: int = 0) -> str:
        """The PersistentVolumeClaimPatch that grows pod N's volume."""
        return f"{self.instance}-data-{ordinal}"

    def kubernetes_objects(self, namespace: str, client_namespaces: list[str]) -> set[tuple[str, str, str]]:
        """(kind, namespace, name) of everything that may exist for the instance, created by this
        program or, from its templates, by Kubernetes and cert-manager."""
        objects = {
            ("StatefulSet", namespace, self.statefulset),
            ("Service", namespace, self.statefulset),
            ("Service", namespace, self.headless_service),
            ("Service", namespace, self.external_service),
            ("Service", namespace, self.read_service),
            ("Service", namespace, self.sentinel_service),
            ("ServiceAccount", namespace, self.labeler),
            ("Role", namespace, self.labeler),
            ("RoleBinding", namespace, self.labeler),
            ("PodDisruptionBudget", namespace, self.statefulset),
            ("ConfigMap", namespace, self.marker),
            ("NetworkPolicy", namespace, self.statefulset),
            ("Job", namespace, self.migration),
            ("Service", namespace, self.migration),
            ("ServiceMonitor", namespace, self.migration),
            ("Certificate", namespace, self.certificate),
            ("Secret", namespace, self.certificate),
            ("Secret", namespace, self.config_secret),
            ("Secret", namespace, self.admin_secret),
            *(("Pod", namespace, self.pod(n)) for n in range(MAX_PODS)),
            *(("PersistentVolumeClaim", namespace, self.claim(n)) for n in range(MAX_PODS)),
        }
        objects |= {("Secret", ns, self.client_secret) for ns in {namespace, *client_namespaces}}
        return objects

    def pulumi_resources(self, client_namespaces: list[str], generations: dict[str, int]) -> set[tuple[str, str]]:
        """(kind of resource, Pulumi name): a URN is unique per type and name under one parent type."""
        secrets = {self.config_secret, self.client_secret_resource, self.admin_secret_resource}
        secrets |= {self.client_secret_copy_resource(ns) for ns in client_namespaces}
        passwords = {self.password(user) for user in FIXED_PASSWORDS}
        for user in ROTATING_USERS:
            generation = generations.get(user, 1)
            passwords |= {self.password(user, g) for g in {generation - 1, generation} if g >= 1}
        named = {
            ("StatefulSet", self.statefulset),
            ("Service", self.statefulset),
            ("Service", self.headless_service),
            ("Service", self.external_service),
            ("Service", self.read_service),
            ("Service", self.sentinel_service),
            ("ServiceAccount", self.labeler),
            ("Role", self.labeler),
            ("RoleBinding", self.labeler),
            ("Certificate", self.certificate),
            ("ConfigMap", self.marker),
            ("Job", self.migration),
            ("Service", self.migration),
            ("ServiceMonitor", self.migration),
            *(("PersistentVolumeClaimPatch", self.claim_patch_resource(n)) for n in range(MAX_PODS)),
            ("ValkeyServer", self.instance),
            ("Credentials", self.instance),
        }
        return named | {("Secret", n) for n in secrets} | {("RandomPassword", n) for n in passwords}
