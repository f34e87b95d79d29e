"""Pod N of a StatefulSet, run on this machine as a kubelet would run it."""

from __future__ import annotations

import shutil
import signal
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .container import ContainerProcess, ExecResult
from .env import container_argv, pod_fields, resolve_env
from .errors import PodStartError, UnsupportedPodFeature
from .httpprobe import http_get
from .names import Entry
from .network import PodNetwork
from .objects import HasManifests, ObjectStore, as_int
from .podspec import ContainerPlan, PodPlan, plan_pod
from .volumes import (
    prepare_claim,
    prepare_empty_dir,
    projected_files,
    sub_path_source,
    update_projected,
    write_projected,
)

if TYPE_CHECKING:
    from .runner import PodRunner

EXTERNAL_DNS_HOSTNAME = "external-dns.alpha.kubernetes.io/hostname"
ETC_FILES = ("hosts", "hostname", "resolv.conf")


@dataclass(frozen=True)
class ProbeResult:
    kind: str
    success: bool
    output: str
    exit_code: int | None
    timed_out: bool = False
    defined: bool = True
    http_status: int | None = None
    """The response status of an httpGet probe (None: no response, or an exec probe)."""


class Pod:
    """A started pod. Its directory, network namespace and IP live until delete(); claims (PVC
    directories) until delete() too; container processes between start and stop/kill9."""

    def __init__(self, runner: PodRunner, store: ObjectStore, plan: PodPlan, region: str, publish: bool):
        self.runner = runner
        self.store = store
        self.plan = plan
        self.region = region
        self.publish = publish
        self.key = f"{region}/{plan.namespace}/{plan.name}"
        self.dir = runner.workdir / region / plan.namespace / plan.name
        self.claims = self._claims()
        self._names = self._names_to_publish()  # refuses untranslatable Services before anything starts
        policies = store.of_kind("NetworkPolicy", plan.namespace)
        self.not_enforced = [
            f"NetworkPolicy {n['metadata']['name']}"
            for n in policies
            if _selects((n.get("spec") or {}).get("podSelector") or {}, plan.labels)
        ]
        """Objects that would restrict this pod on a cluster but are not emulated here."""
        self.processes: dict[str, ContainerProcess] = {}
        self.uid = ""
        self.network: PodNetwork | None = None
        self.deleted = False

    # ----- identity -------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.plan.name

    @property
    def namespace(self) -> str:
        return self.plan.namespace

    @property
    def address(self) -> str:
        if self.network is None:
            raise RuntimeError(f"pod {self.key} has no network (deleted?)")
        return self.network.address

    @property
    def port(self) -> int:
        """The first declared port of the first container."""
        port = next(iter(self.plan.containers[0].ports.values()), None)
        if port is None:
            raise ValueError(f"{self.key}: its first container declares no port")
        return port

    @property
    def fqdn(self) -> str:
        return f"{self.name}.{self.plan.subdomain}.{self.namespace}.svc.{self.runner.names.cluster_domain}"

    def log_path(self, container: str | None = None) -> Path:
        return self.dir / "logs" / f"{container or self.plan.containers[0].name}.log"

    def logs(self, container: str | None = None) -> str:
        path = self.log_path(container)
        return path.read_text(errors="replace") if path.exists() else ""

    def container_pid(self, container: str | None = None) -> int:
        """Host pid of the container's PID 1."""
        return self._process(container).pid

    @property
    def running(self) -> bool:
        return bool(self.processes) and all(p.running for p in self.processes.values())

    # ----- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        if self.deleted:
            raise RuntimeError(f"pod {self.key} was deleted")
        if self.processes and any(p.running for p in self.processes.values()):
            raise RuntimeError(f"pod {self.key} is already running")
        if self.network is None:
            self.network = PodNetwork(self.runner.bridge)
            (self.dir / "etc").mkdir(parents=True, exist_ok=True)
            (self.dir / "logs").mkdir(exist_ok=True)
            (self.dir / "etc" / "hostname").write_text(f"{self.name}\n")
            (self.dir / "etc" / "resolv.conf").write_text(self.runner.names.resolv_conf(self.namespace))
            if self.publish:
                for e in self._names:
                    self.runner.names.publish(e.name, self.address, e.region, self.key)
            self.runner.refresh_hosts()
        self.uid = str(uuid.uuid4())
        self.processes = {}
        self._prepare_volumes()
        for plan in self.plan.init_containers:
            proc = self._launch(plan)
            code = proc.wait(self.runner.init_timeout)
            if code is None:
                proc.kill()
                raise PodStartError(
                    f"{self.key}: init container {plan.name} still running after "
                    f"{self.runner.init_timeout}s\n{self._tail(plan.name)}"
                )
            if code != 0:
                raise PodStartError(f"{self.key}: init container {plan.name} exited {code}\n{self._tail(plan.name)}")
        for plan in self.plan.containers:
            self.processes[plan.name] = self._launch(plan)

    def stop(self, grace: float | None = None) -> dict[str, int]:
        """SIGTERM every container, SIGKILL what is left after the grace period (default: the pod's
        terminationGracePeriodSeconds). Returns exit codes."""
        grace = float(self.plan.grace_seconds if grace is None else grace)
        for proc in self.processes.values():
            proc.signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        codes = {}
        for name, proc in self.processes.items():
            code = proc.wait(max(0.0, deadline - time.monotonic()))
            codes[name] = proc.kill() if code is None else code
        return codes

    def kill9(self) -> dict[str, int]:
        """SIGKILL every container (as an OOM kill or a node crash would); nothing restarts it."""
        return {name: proc.kill() for name, proc in self.processes.items()}

    def restart(
        self,
        grace: float | None = None,
        objects: HasManifests | Iterable[Mapping[str, Any]] | None = None,
        wait_ready: float | None = 30.0,
    ) -> None:
        """Delete and recreate the pod as the StatefulSet controller would: same name, IP and claims;
        fresh emptyDirs and projected files; init containers run again. ``objects`` replaces the
        manifests (e.g. a re-rendered config Secret)."""
        self.stop(grace)
        if objects is not None:
            self.store = ObjectStore(objects)
            self.plan = plan_pod(self.store, self.plan.statefulset, self.plan.ordinal, self.namespace)
            self.claims = self._claims()
            self.runner.names.unpublish(self.key)
            self._names = self._names_to_publish()
            for e in self._names if self.publish else []:
                self.runner.names.publish(e.name, self.address, e.region, self.key)
            self.runner.refresh_hosts()
        self.start()
        if wait_ready:
            self.wait_ready(wait_ready)

    def delete(self, grace: float | None = None) -> None:
        """Stop, then remove everything of the pod including its claims' directories."""
        self.stop(grace)
        self.teardown()
        for path in self.claims.values():
            shutil.rmtree(path, ignore_errors=True)

    def teardown(self) -> None:
        """Kill processes, remove the network and the pod directory; claims stay."""
        for proc in self.processes.values():
            proc.kill()
        self.runner.names.unpublish(self.key)
        if self.network is not None:
            self.network.close()
        self.network = None
        self.deleted = True
        self.runner.forget(self)
        shutil.rmtree(self.dir, ignore_errors=True)

    # ----- exec and probes ------------------------------------------------------------------------
    def exec(
        self, argv: list[str], container: str | None = None, timeout: float | None = 30.0, input: str | None = None
    ) -> ExecResult:
        """Like ``kubectl exec``: same namespaces, root filesystem, user and environment as the container."""
        return self._process(container).exec(argv, timeout, input)

    def probe(self, kind: str, container: str | None = None) -> ProbeResult:
        """Run the container's probe once, as the kubelet does. exec: exit code 0 passes. httpGet: a
        GET from the node to the pod IP, 200-399 passes (see httpprobe). Running past timeoutSeconds
        fails. An undefined probe passes."""
        plan = self._plan(container)
        probe = plan.probes.get(kind)
        if kind not in ("startup", "liveness", "readiness"):
            raise ValueError(f"unknown probe {kind!r}")
        if probe is None:
            return ProbeResult(kind, True, "", None, defined=False)
        proc = self._process(plan.name)
        if probe.http_get is not None:
            if not proc.running:
                return ProbeResult(kind, False, f"container {plan.name} is not running", None)
            outcome = http_get(self.address, probe.http_get, probe.timeout)
            return ProbeResult(
                kind, outcome.success, outcome.output, None, outcome.timed_out, http_status=outcome.status
            )
        result = proc.exec(list(probe.command), timeout=probe.timeout)
        output = (result.stdout + result.stderr)[:10240]  # the kubelet keeps 10 KiB of probe output
        return ProbeResult(kind, result.ok, output, result.returncode, result.timed_out)

    def wait_ready(self, timeout: float = 30.0, interval: float = 0.1, container: str | None = None) -> None:
        """Poll as the kubelet's prober does, faster: after initialDelaySeconds, the startup probe until
        it passes, then the readiness probe until successThreshold passes in a row. Fails at once if
        the container exits. ``container`` None: every container, in order (the pod's Ready condition);
        ``timeout`` covers them all."""
        deadline = time.monotonic() + timeout
        for plan in [self._plan(container)] if container else self.plan.containers:
            self._wait_container_ready(plan, deadline, timeout, interval)

    def _wait_container_ready(self, plan: ContainerPlan, deadline: float, timeout: float, interval: float) -> None:
        proc = self._process(plan.name)
        last: ProbeResult | None = None
        successes = 0
        for kind in ("startup", "readiness"):
            probe = plan.probes.get(kind)
            needed = probe.success_threshold if probe else 1
            if probe:
                delay = proc.started_at + probe.initial_delay - time.monotonic()
                time.sleep(max(0.0, min(delay, deadline - time.monotonic())))
            successes = 0
            while successes < needed:
                if not proc.running:
                    raise PodStartError(
                        f"{self.key}: container {plan.name} exited {proc.exit_code} "
                        f"while waiting for {kind}\n{self._tail(plan.name)}"
                    )
                last = self.probe(kind, plan.name)
                successes = successes + 1 if last.success else 0
                if successes >= needed:
                    break
                if time.monotonic() >= deadline:
                    raise TimeoutError(
                        f"{self.key}: {kind} probe not passing after {timeout}s; last output "
                        f"{last.output!r}\n{self._tail(plan.name)}"
                    )
                time.sleep(interval)

    # ----- mounted Secrets and ConfigMaps ----------------------------------------------------------
    def update_volumes(self, objects: HasManifests | Iterable[Mapping[str, Any]]) -> dict[str, bool]:
        """Refresh the running pod's Secret and ConfigMap volumes from re-rendered manifests, as the
        kubelet's periodic sync does (here at once, not within its ~1 min): per volume whose files
        changed, a new timestamped directory, then an atomic rename of ``..data`` onto it, then the
        top-level symlinks added/removed, then the old directory removed (AtomicWriter). Containers
        keep running; environment variables and subPath mounts keep the old values, as on a node.

        Refused (ValueError) when the objects change the pod template: a StatefulSet would replace the
        pod, use restart(objects=...). Returns volume name -> whether its files changed."""
        store = ObjectStore(objects)
        new_sts = store.statefulset(self.plan.statefulset, self.namespace)
        old_sts = self.store.statefulset(self.plan.statefulset, self.namespace)
        if new_sts["spec"]["template"] != old_sts["spec"]["template"]:
            raise ValueError(
                f"{self.key}: the new objects change StatefulSet {self.plan.statefulset}'s pod template: "
                "the controller would replace the pod (use restart(objects=...))"
            )
        if not self.processes or not any(p.running for p in self.processes.values()):
            raise RuntimeError(f"pod {self.key} is not running")
        changed = {}
        for v in self.plan.volumes.values():
            if v.kind not in ("secret", "configMap"):
                continue
            files = projected_files(v, store, self.namespace)
            changed[v.name] = update_projected(self.dir / "volumes" / v.name, files or {}, self.plan.fs_group)
        self.store = store
        return changed

    # ----- internals ------------------------------------------------------------------------------
    def _claims(self) -> dict[str, Path]:
        """Volume name -> the directory of its claim (``<template>-<pod>``, e.g. data-sessions-0)."""
        return {
            v.name: self.runner.claim_path(self.region, self.namespace, v.source["claimName"])
            for v in self.plan.volumes.values()
            if v.kind == "claim"
        }

    def _plan(self, container: str | None) -> ContainerPlan:
        plans = {c.name: c for c in self.plan.containers}
        if container is None:
            return self.plan.containers[0]
        if container not in plans:
            raise KeyError(f"no container {container!r} in {self.key} (have {sorted(plans)})")
        return plans[container]

    def _process(self, container: str | None) -> ContainerProcess:
        name = self._plan(container).name
        if name not in self.processes:
            raise RuntimeError(f"container {name} of {self.key} was never started")
        return self.processes[name]

    def _tail(self, container: str, lines: int = 20) -> str:
        return "\n".join(self.logs(container).splitlines()[-lines:])

    def _names_to_publish(self) -> list[Entry]:
        """The pod's own DNS name and those of the Services selecting it (LoadBalancer hostnames
        published by external-dns are global; cluster names are visible in the pod's region only)."""
        domain = self.runner.names.cluster_domain
        entries = []
        if self.plan.subdomain:
            entries.append(Entry(self.fqdn, "", self.region, self.key))
        ports = {name: port for c in self.plan.containers for name, port in c.ports.items()}
        for svc in self.store.of_kind("Service", self.namespace):
            spec = svc.get("spec") or {}
            selector = spec.get("selector") or {}
            if not selector or any(self.plan.labels.get(k) != v for k, v in selector.items()):
                continue
            name = svc["metadata"]["name"]
            for i, p in enumerate(spec.get("ports") or []):
                port = as_int(p["port"], f"Service {name} port")
                target = p.get("targetPort", port)
                target_port = ports.get(target) if isinstance(target, str) else as_int(target, "targetPort")
                if target_port != port:
                    raise UnsupportedPodFeature(
                        f"Service {name}.spec.ports[{i}]",
                        f"maps {port} to {target!r}: port "
                        "translation is not emulated (publish=False, then runner.proxy())",
                    )
            entries.append(Entry(f"{name}.{self.namespace}.svc.{domain}", "", self.region, self.key))
            if spec.get("type") == "LoadBalancer":
                hosts = (svc["metadata"].get("annotations") or {}).get(EXTERNAL_DNS_HOSTNAME, "")
                entries += [Entry(h.strip(), "", None, self.key) for h in hosts.split(",") if h.strip()]
        return entries

    def hosts_file(self) -> str:
        return self.runner.names.hosts_file(
            region=self.region,
            namespace=self.namespace,
            pod_ip=self.address,
            hostname=self.name,
            subdomain=self.plan.subdomain,
            aliases=self.plan.host_aliases,
        )

    def write_hosts(self) -> None:
        path = self.dir / "etc" / "hosts"
        # In place: the file is bind-mounted into running containers by inode.
        with open(path, "r+" if path.exists() else "w") as f:
            f.write(self.hosts_file())
            f.truncate()

    def _prepare_volumes(self) -> None:
        volumes = self.dir / "volumes"
        shutil.rmtree(volumes, ignore_errors=True)
        volumes.mkdir(parents=True)
        volumes.chmod(0o700)
        for v in self.plan.volumes.values():
            if v.kind == "claim":
                prepare_claim(self.claims[v.name], self.plan.fs_group, self.plan.fs_group_policy)
            elif v.kind == "emptyDir":
                prepare_empty_dir(volumes / v.name, self.plan.fs_group)
            else:
                files = projected_files(v, self.store, self.namespace)
                write_projected(volumes / v.name, files or {}, self.plan.fs_group)

    def _volume_dir(self, name: str) -> Path:
        return self.claims[name] if name in self.claims else self.dir / "volumes" / name

    def _launch(self, plan: ContainerPlan) -> ContainerProcess:
        fields = pod_fields(
            name=self.name,
            namespace=self.namespace,
            uid=self.uid,
            pod_ip=self.address,
            host_ip=self.runner.bridge.gateway,
            labels=self.plan.labels,
            annotations=self.plan.annotations,
        )
        env = resolve_env(plan, self.store, self.namespace, fields)
        argv = container_argv(plan, env)
        passwd = {
            int(f[2]): f[5]
            for f in (line.split(":") for line in plan.image.files.get("/etc/passwd", "").splitlines())
            if len(f) > 5
        }
        full_env = {**dict(plan.image.env), "HOSTNAME": self.name, "HOME": passwd.get(plan.uid, "/"), **env}
        binds = [{"source": src, "target": dst, "read_only": True} for dst, src in plan.image.binaries.items()]
        binds += [{"source": str(self.dir / "etc" / f), "target": f"/etc/{f}", "read_only": True} for f in ETC_FILES]
        for m in sorted(plan.mounts, key=lambda m: m.path.count("/")):
            volume = self.plan.volumes[m.volume]
            source = self._volume_dir(m.volume)
            if m.sub_path:
                source = sub_path_source(source, m.sub_path, create=volume.kind in ("emptyDir", "claim"))
            # Secret and ConfigMap volumes are always mounted read-only.
            read_only = m.read_only or volume.kind in ("secret", "configMap")
            binds.append({"source": str(source), "target": m.path, "read_only": read_only})
        cdir = self.dir / "containers" / plan.name
        shutil.rmtree(cdir, ignore_errors=True)
        (cdir / "rootfs").mkdir(parents=True)
        (cdir / "scratch").mkdir()
        spec = {
            "netns": self.network.path if self.network else "",
            "hostname": self.name,
            "rootfs": str(cdir / "rootfs"),
            "scratch": str(cdir / "scratch"),
            "read_only_root": plan.read_only_root,
            "dirs": [{"path": d.path, "uid": d.uid, "gid": d.gid, "mode": d.mode} for d in plan.image.dirs],
            "files": [
                *({"path": p, "content": c, "mode": 0o644} for p, c in plan.image.files.items()),
                *({"path": p, "content": c, "mode": 0o755} for p, c in plan.image.executables.items()),
            ],
            "binds": binds,
            "process": {
                "argv": argv,
                "env": list(full_env.items()),
                "cwd": plan.working_dir,
                "uid": plan.uid,
                "gid": plan.gid,
                "groups": list(plan.groups),
                "capabilities": list(plan.capabilities),
                "no_new_privs": plan.no_new_privs,
            },
        }
        return ContainerProcess(plan.name, spec, cdir / "spec.json", self.log_path(plan.name), self.runner.lifeline)


def _selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A LabelSelector match (matchLabels and matchExpressions)."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if not {
            "In": key in labels and labels[key] in values,
            "NotIn": labels.get(key) not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]:
            return False
    return True
