"""PodRunner: a kubelet stand-in for tests. Owns the bridge, the name registry, the pods and the
proxies, and removes all of them on close()."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .apiserver import ApiServer
from .cluster import Cluster
from .kubelet import BACKOFF_INITIAL, BACKOFF_MAX
from .names import NameRegistry
from .network import TMP_PREFIX, Bridge
from .objects import HasManifests, Manifest, ObjectStore, as_int
from .pod import Pod
from .podspec import PodPlan, plan_pod
from .proxy import FaultProxy

Objects = HasManifests | Iterable[Mapping[str, Any]]


def _first_rollout(objects: Objects) -> Objects:
    """What a new StatefulSet's pods read at their first start: of a harness ``Rendered``, not the
    ConfigMaps and Secrets Pulumi creates only after the StatefulSet's await (``first_rollout``:
    the marker ConfigMap the pods read at each start). Services created then (an external one)
    stay: the runner's names have no notion of when they appear. Later calls with the whole
    render (``restart``, ``update_volumes``) are the cluster once that ``pulumi up`` completed."""
    first_rollout = getattr(objects, "first_rollout", None)
    if first_rollout is None:
        return objects
    first: list[Manifest] = first_rollout()
    later = [m for m in ObjectStore(objects).all() if m not in first]
    return first + [m for m in later if m.get("kind") not in ("ConfigMap", "Secret")]


class PodRunner:
    """Use as a context manager (or call close()): every process, network namespace, address and
    temp dir it created is removed, also when the test failed. Pods survive the runner's process
    only as long as it lives: their shims kill them when it exits (the lifeline pipe)."""

    def __init__(
        self,
        cluster_domain: str = "cluster.local",
        init_timeout: float = 60.0,
        *,
        backoff_initial: float = BACKOFF_INITIAL,
        backoff_max: float = BACKOFF_MAX,
        probe_period_scale: float = 1.0,
    ):
        """``backoff_initial``/``backoff_max``: the kubelet's crash-loop back-off (10 s doubling to 300 s),
        e.g. 0.2/2.0 in a test; they apply to pods started afterwards. ``probe_period_scale``
        multiplies every probe's periodSeconds in the background prober (0.1: ten times faster)."""
        if os.geteuid() != 0:
            raise PermissionError("PodRunner needs root (namespaces, mounts, veth)")
        self.init_timeout = init_timeout
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.probe_period_scale = probe_period_scale
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-"))
        self.names = NameRegistry(cluster_domain)
        self.pods: list[Pod] = []
        self.proxies: list[FaultProxy] = []
        self.clusters: dict[str, Cluster] = {}
        self._lock = threading.RLock()
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
        """Start pod ``ordinal`` of a StatefulSet from rendered manifests (a harness ``Rendered``, as
        its first rollout sees them: ``_first_rollout``; or a list of manifest dicts) in ``region``.
        Everything unsupported is refused before anything starts. ``publish`` registers the pod's
        DNS name and those of the Services selecting it."""
        store = ObjectStore(_first_rollout(objects))
        pod = self._new_pod(store, plan_pod(store, statefulset, ordinal, namespace), region, publish)
        self._launch(pod)
        if wait_ready:
            pod.wait_ready(wait_ready)
        return pod

    def start_statefulset(
        self,
        objects: Objects,
        name: str,
        *,
        region: str = "region1",
        namespace: str | None = None,
        wait_ready: float | None = 30.0,
        publish: bool = True,
    ) -> list[Pod]:
        """Start every replica of a StatefulSet as its controller would: ordinals ``start`` ..
        ``start + replicas - 1``, each with its own claims and per-pod name. OrderedReady (the default)
        creates pod N+1 only once pod N is Ready (``wait_ready`` seconds per pod, required); Parallel
        creates them all at once, then waits for all (``wait_ready`` None: not at all). Every pod is
        planned, and anything unsupported refused, before the first one starts."""
        store = ObjectStore(_first_rollout(objects))
        spec = store.statefulset(name, namespace)["spec"]
        first = as_int((spec.get("ordinals") or {}).get("start", 0), "spec.ordinals.start")
        replicas = as_int(spec.get("replicas", 1), "spec.replicas")
        plans = [plan_pod(store, name, first + i, namespace) for i in range(replicas)]
        pods = [self._new_pod(store, plan, region, publish) for plan in plans]
        ordered = all(plan.pod_management_policy == "OrderedReady" for plan in plans)
        if ordered and not wait_ready:
            raise ValueError(f"StatefulSet {name} is OrderedReady: each pod must be Ready first (give wait_ready)")
        for pod in pods:
            self._launch(pod)
            if ordered and wait_ready:
                pod.wait_ready(wait_ready)
        if not ordered and wait_ready:
            for pod in pods:
                pod.wait_ready(wait_ready)
        return pods

    def rolling_restart(
        self,
        pods: Sequence[Pod],
        objects: Objects | None = None,
        *,
        grace: float | None = None,
        wait_ready: float = 60.0,
    ) -> list[Pod]:
        """The StatefulSet controller's RollingUpdate: highest ordinal first, each pod deleted and
        recreated (``objects``: the new revision's manifests, else the same ones, as ``kubectl rollout
        restart``), then waited for until Ready before the next; before each step every pod must be
        Ready. Each deletion is a graceful one (Pod.stop(): preStop hooks, SIGTERM, SIGKILL within
        ``grace``, default each pod's terminationGracePeriodSeconds). Returns the pods in the order
        they were restarted."""
        ordered = sorted(pods, key=lambda p: p.ordinal, reverse=True)
        for pod in ordered:
            for other in pods:
                if not other.ready:
                    other.wait_ready(wait_ready)
            pod.restart(grace, objects, wait_ready)
        return ordered

    def _new_pod(self, store: ObjectStore, plan: PodPlan, region: str, publish: bool) -> Pod:
        key = f"{region}/{plan.namespace}/{plan.name}"
        if any(p.key == key for p in self.pods):
            raise ValueError(f"pod {key} is already running in this runner")
        return Pod(self, store, plan, region, publish)

    def _launch(self, pod: Pod) -> None:
        with self._lock:
            self.pods.append(pod)
        try:
            pod.start()
        except BaseException:
            pod.teardown()
            raise

    def forget(self, pod: Pod) -> None:
        with self._lock:
            if pod in self.pods:
                self.pods.remove(pod)
        self.republish()

    # ----- the API server -------------------------------------------------------------------------
    def cluster(self, region: str) -> Cluster:
        """The region's API server, CA and ``kubernetes`` Service, made for its first pod."""
        with self._lock:
            if region not in self.clusters:
                address = self.bridge.add_local_address()
                cluster = Cluster(region, address, self.workdir / region / "cluster", self.names.cluster_domain)
                cluster.api.on_change(lambda namespace, name: self.republish())
                self.names.publish(cluster.dns_name, address, region, f"cluster:{region}")
                self.clusters[region] = cluster
            return self.clusters[region]

    def api(self, region: str = "region1") -> ApiServer:
        """The region's API server: ``api.pod(ns, name)``, ``api.requests`` (what clients sent)..."""
        return self.cluster(region).api

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

    def republish(self) -> None:
        """Recompute every pod's published names (readiness, current labels) and rewrite /etc/hosts."""
        with self._lock:
            for pod in list(self.pods):
                self.names.unpublish(pod.key)
                with contextlib.suppress(RuntimeError):  # torn down meanwhile
                    address = pod.address
                    for e in pod.published_entries():
                        self.names.publish(e.name, address, e.region, pod.key)
            self.refresh_hosts()

    def refresh_hosts(self) -> None:
        with self._lock:
            for pod in list(self.pods):
                if pod.network is not None:
                    with contextlib.suppress(RuntimeError, FileNotFoundError):
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
            *(c.close for c in self.clusters.values()),
            self.bridge.close,
            self._close_files,
        ]:
            try:
                action()
            except Exception as exc:  # noqa: BLE001 - keep cleaning, report at the end
                errors.append(exc)
        self.pods.clear()
        self.proxies.clear()
        self.clusters.clear()
        shutil.rmtree(self.workdir, ignore_errors=True)
        if errors:
            raise RuntimeError(f"podrunner cleanup failed: {errors}")

    def _close_files(self) -> None:
        for fd in (self._lifeline_read, self._lifeline_write):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._lifeline_read = self._lifeline_write = -1


__all__ = ["Objects", "PodRunner"]
