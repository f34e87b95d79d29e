"""Pod networking: one bridge per runner on a private /24 (10.213.K.0/24), one network namespace
per pod with a veth into the bridge. Proxies get extra addresses on the bridge. Everything carries
the creating process's pid so leftovers of a killed test run can be swept."""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

PREFIX = "10.213"
ALIAS = "podrunner pid="
NETNS_PREFIX = "podrunner-"
TMP_PREFIX = "podrunner-"
POD_HOSTS = range(10, 200)
EXTRA_HOSTS = range(200, 255)


def ip(*args: str) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale() -> None:
    """Remove bridges, network namespaces and temp dirs left by runner processes that no longer exist."""
    for link in json.loads(ip("-j", "-d", "link", "show", "type", "bridge") or "[]"):
        owner = link.get("ifalias", "").removeprefix(ALIAS) if link.get("ifalias", "").startswith(ALIAS) else ""
        if owner.isdigit() and not _alive(int(owner)):
            subprocess.run(["ip", "link", "del", link["ifname"]], capture_output=True, check=False)
    for line in ip("netns", "list").splitlines():
        name = line.split()[0] if line.strip() else ""
        owner = name[len(NETNS_PREFIX) :].split("-")[0] if name.startswith(NETNS_PREFIX) else ""
        if owner.isdigit() and not _alive(int(owner)):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
    for entry in Path(tempfile.gettempdir()).glob(f"{TMP_PREFIX}*-*"):
        pid = entry.name[len(TMP_PREFIX) :].split("-")[0]
        if entry.is_dir() and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)


class Bridge:
    """The runner's L2 segment. The root namespace (the tests, the proxies) owns the gateway address."""

    def __init__(self) -> None:
        self.name = f"pb{secrets.token_hex(5)}"
        with open(Path(tempfile.gettempdir()) / "podrunner.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            sweep_stale()
            used = {a["local"] for link in json.loads(ip("-j", "addr") or "[]") for a in link.get("addr_info", [])}
            third = next((k for k in range(256) if not any(u.startswith(f"{PREFIX}.{k}.") for u in used)), None)
            if third is None:
                raise RuntimeError(f"no free /24 in {PREFIX}.0.0/16")
            self.network = ipaddress.ip_network(f"{PREFIX}.{third}.0/24")
            self.gateway = str(self.network[1])
            ip("link", "add", self.name, "type", "bridge")
            # A fixed address of its own: a bridge without one takes the lowest MAC among its
            # ports and changes it as pods (veths) come and go. Pods that cached the old one for
            # the gateway, the API stand-in or a proxy then send into the void until their
            # neighbour entry expires: 30 s and more of connect timeouts from one pod while the
            # others pass (seen in the label updaters' requests, docs/testing.md).
            mac = "02:" + ":".join(secrets.token_hex(1) for _ in range(5))
            ip("link", "set", self.name, "address", mac)
            ip("link", "set", self.name, "alias", f"{ALIAS}{os.getpid()}")
            ip("addr", "add", f"{self.gateway}/24", "dev", self.name)
            ip("link", "set", self.name, "up")
        self._next = {"pod": iter(POD_HOSTS), "extra": iter(EXTRA_HOSTS)}

    def allocate(self, kind: str = "pod") -> str:
        try:
            return str(self.network[next(self._next[kind])])
        except StopIteration:
            raise RuntimeError(f"out of {kind} addresses in {self.network}") from None

    def add_local_address(self) -> str:
        """A new address in the root namespace that every pod reaches (for proxies)."""
        address = self.allocate("extra")
        ip("addr", "add", f"{address}/32", "dev", self.name)
        return address

    def close(self) -> None:
        subprocess.run(["ip", "link", "del", self.name], capture_output=True, check=False)


class PodNetwork:
    """A pod's network namespace: lo, and eth0 with the pod IP, default route via the bridge."""

    _count = 0

    def __init__(self, bridge: Bridge):
        PodNetwork._count += 1
        self.address = bridge.allocate()
        self.netns = f"{NETNS_PREFIX}{os.getpid()}-{bridge.name}-{PodNetwork._count}"
        host_if = f"pv{secrets.token_hex(6)}"
        self.host_if = host_if
        self.isolated = False
        ip("netns", "add", self.netns)
        try:
            ip("link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", self.netns)
            ip("link", "set", host_if, "master", bridge.name, "up")
            ip("-n", self.netns, "addr", "add", f"{self.address}/24", "dev", "eth0")
            ip("-n", self.netns, "link", "set", "lo", "up")
            ip("-n", self.netns, "link", "set", "eth0", "up")
            ip("-n", self.netns, "route", "add", "default", "via", bridge.gateway)
        except Exception:
            self.close()
            raise

    @property
    def path(self) -> str:
        return f"/run/netns/{self.netns}"

    def isolate(self) -> None:
        """The bridge side of the veth down: eth0 loses its carrier, its routes and address stay, so
        nothing it sends arrives and nothing reaches it (a partition: no RST, no ICMP, timeouts);
        loopback inside the namespace keeps working."""
        ip("link", "set", self.host_if, "down")
        self.isolated = True

    def rejoin(self) -> None:
        ip("link", "set", self.host_if, "up")
        self.isolated = False

    def close(self) -> None:
        # Deleting the namespace destroys the veth pair with it.
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True, check=False)
