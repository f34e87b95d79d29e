"""PodRunner: a kubelet stand-in for tests. Owns the bridge, the name registry, the pods and the
proxies, and removes all of them on close()."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .names import NameRegistry
from .network import TMP_PREFIX, Bridge
from .objects import HasManifests, ObjectStore
from .pod import Pod
from .podspec import plan_pod
from .proxy import FaultProxy

Objects = HasManifests | Iterable[Mapping[str, Any]]


class PodRunner:
    """Use as a context manager (or call close()): every process, network namespace, address and
    temp dir it created is removed, also when the test failed. Pods survive the runner's process
    only as long as it lives: their shims kill them when it exits (the lifeline pipe)."""

    def __init__(self, cluster_domain: str = "cluster.local", init_timeout: float = 60.0):
        if os.geteuid() != 0:
            raise PermissionError("PodRunner needs root (namespaces, mounts, veth)")
        self.init_timeout = init_timeout
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-"))
        self.names = NameRegistry(cluster_domain)
        self.pods: list[Pod] = []
        self.proxies: list[FaultProxy] = []
        self._lifeline_read, self._lifeline_write = os.pipe()
        try:
            self.bridge = Bridge()
        except Exception:
            self._close_files()
            raise

    @property
    def lifeline(self) -> int:
        """Read end of a pipe whose write end only this process holds: EOF means the runner is gone."""
        return self._lifeline_read

    def __enter__(self) -> PodRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----- pods -----------------------------------------------------------------------------------
    def start_pod(
        self,
        objects: Objects,
        statefulset: str,
        ordinal: int = 0,
        *,
        region: str = "region1",
        namespace: str | None = None,
        wait_ready: float | None = 30.0,
        publish: bool = True,
    ) -> Pod:
        """Start pod ``ordinal`` of a StatefulSet from rendered manifests (a harness ``Rendered`` or
        a list of manifest dicts) in ``region``. Everything unsupported is refused before anything
        starts. ``publish`` registers the pod's DNS name and those of the Services selecting it."""
        store = ObjectStore(objects)
        plan = plan_pod(store, statefulset, ordinal, namespace)
        key = f"{region}/{plan.namespace}/{plan.name}"
        if any(p.key == key for p in self.pods):
            raise ValueError(f"pod {key} is already running in this runner")
        pod = Pod(self, store, plan, region, publish)
        self.pods.append(pod)
        try:
            pod.start()
        except BaseException:
            pod.teardown()
            raise
        if wait_ready:
            pod.wait_ready(wait_ready)
        return pod

    def forget(self, pod: Pod) -> None:
        if pod in self.pods:
            self.pods.remove(pod)
        self.refresh_hosts()

    def claim_path(self, region: str, namespace: str, claim: str) -> Path:
        """The directory standing in for PersistentVolumeClaim ``claim`` (e.g. data-sessions-0)."""
        return self.workdir / region / "claims" / namespace / claim

    # ----- names ----------------------------------------------------------------------------------
    def add_host(self, name: str, address: str, region: str | None = None) -> None:
        """Make ``name`` resolve to ``address`` in pods of ``region`` (None: every region). Wins over
        names published from pods and Services, e.g. to route an external name through a proxy."""
        self.names.set_manual(name, address, region)
        self.refresh_hosts()

    def remove_host(self, name: str, region: str | None = None) -> None:
        self.names.set_manual(name, None, region)
        self.refresh_hosts()

    def resolve(self, name: str, region: str) -> list[str]:
        return self.names.resolve(name, region)

    def refresh_hosts(self) -> None:
        for pod in self.pods:
            if pod.network is not None:
                pod.write_hosts()

    # ----- proxies --------------------------------------------------------------------------------
    def proxy(self, target: Pod | tuple[str, int], *, port: int | None = None, latency: float = 0.0) -> FaultProxy:
        """A fault-injecting proxy on a new address every pod can reach, forwarding to ``target``.
        Listens on ``port`` (default: the target's port), so a name pointed at it keeps its port."""
        host, target_port = (target.address, target.port) if isinstance(target, Pod) else target
        proxy = FaultProxy((self.bridge.add_local_address(), port or target_port), (host, target_port), latency=latency)
        self.proxies.append(proxy)
        proxy.start()
        return proxy

    # ----- cleanup --------------------------------------------------------------------------------
    def close(self) -> None:
        errors: list[BaseException] = []
        for action in [
            *(p.teardown for p in list(self.pods)),
            *(p.close for p in self.proxies),
            self.bridge.close,
            self._close_files,
        ]:
            try:
                action()
            except Exception as exc:  # noqa: BLE001 - keep cleaning, report at the end
                errors.append(exc)
        self.pods.clear()
        self.proxies.clear()
        shutil.rmtree(self.workdir, ignore_errors=True)
        if errors:
            raise RuntimeError(f"podrunner cleanup failed: {errors}")

    def _close_files(self) -> None:
        for fd in (self._lifeline_read, self._lifeline_write):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._lifeline_read = self._lifeline_write = -1


__all__ = ["Objects", "PodRunner"]
