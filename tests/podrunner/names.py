"""Name resolution for pods: each pod gets its own /etc/hosts, generated from names the runner or
the test registers. In-cluster names are visible only inside their region (cluster); external names
(external-dns hostnames, test-registered names) everywhere."""

from __future__ import annotations

from dataclasses import dataclass

KUBELET_HEADER = """# Kubernetes-managed hosts file.
127.0.0.1\tlocalhost
::1\tlocalhost ip6-localhost ip6-loopback
fe00::0\tip6-localnet
fe00::0\tip6-mcastprefix
fe00::1\tip6-allnodes
fe00::2\tip6-allrouters
"""


@dataclass(frozen=True)
class Entry:
    name: str
    address: str
    region: str | None
    """None: visible from every region."""
    owner: str | None
    """The pod that published it (removed with the pod); None: registered by the test (wins)."""


class NameRegistry:
    def __init__(self, cluster_domain: str):
        self.cluster_domain = cluster_domain
        self._entries: list[Entry] = []

    def publish(self, name: str, address: str, region: str | None, owner: str) -> None:
        entry = Entry(name.lower(), address, region, owner)
        if entry not in self._entries:
            self._entries.append(entry)

    def unpublish(self, owner: str) -> None:
        self._entries = [e for e in self._entries if e.owner != owner]

    def set_manual(self, name: str, address: str | None, region: str | None) -> None:
        name = name.lower()
        self._entries = [e for e in self._entries if not (e.owner is None and e.name == name and e.region == region)]
        if address is not None:
            self._entries.append(Entry(name, address, region, None))

    def resolve(self, name: str, region: str) -> list[str]:
        """Addresses a pod in ``region`` gets: test-set beats published, regional beats global."""
        name = name.lower()
        for manual in (True, False):
            for scope in (region, None):
                found = [
                    e.address
                    for e in self._entries
                    if e.name == name and e.region == scope and (e.owner is None) == manual
                ]
                if found:
                    return list(dict.fromkeys(found))
        return []

    def hosts_file(
        self,
        *,
        region: str,
        namespace: str,
        pod_ip: str,
        hostname: str,
        subdomain: str,
        aliases: tuple[tuple[str, tuple[str, ...]], ...],
    ) -> str:
        lines = [KUBELET_HEADER.rstrip("\n")]
        if subdomain:
            lines.append(f"{pod_ip}\t{hostname}.{subdomain}.{namespace}.svc.{self.cluster_domain}\t{hostname}")
        else:
            lines.append(f"{pod_ip}\t{hostname}")
        if aliases:
            lines.append("\n# Entries added by HostAliases.")
            lines += [f"{ip}\t{chr(9).join(names)}" for ip, names in aliases]
        lines.append("\n# podrunner: cluster DNS and external names (search domains expanded)")
        for name in dict.fromkeys(e.name for e in self._entries if e.region in (region, None)):
            names = " ".join([name, *self.short_names(name, namespace)])
            lines += [f"{address}\t{names}" for address in self.resolve(name, region)]
        return "\n".join(lines) + "\n"

    def search_domains(self, namespace: str) -> list[str]:
        d = self.cluster_domain
        return [f"{namespace}.svc.{d}", f"svc.{d}", d]

    def short_names(self, name: str, namespace: str) -> list[str]:
        """The names by which a pod's resolver would find ``name`` through its search domains
        (glibc applies search domains only to DNS, not to /etc/hosts, so they are listed)."""
        return [name[: -len(d) - 1] for d in self.search_domains(namespace) if name.endswith(f".{d}")]

    def resolv_conf(self, namespace: str) -> str:
        # No nameserver: lookups that /etc/hosts does not answer fail fast on the pod's loopback.
        return f"search {' '.join(self.search_domains(namespace))}\noptions ndots:5\n"
