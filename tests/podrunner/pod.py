"""Pod N of a StatefulSet, run on this machine as a kubelet would run it."""

from __future__ import annotations

import contextlib
import math
import secrets
import shutil
import signal
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .apiserver import ServiceAccount
from .cluster import Cluster, service_account
from .container import ContainerProcess, ExecResult
from .env import container_argv, pod_fields, resolve_env
from .errors import PodStartError, UnsupportedPodFeature
from .httpprobe import http_get
from .kubelet import Backoff, ContainerState
from .names import Entry
from .network import PodNetwork
from .objects import HasManifests, ObjectStore, as_int
from .podspec import ContainerPlan, PodPlan, plan_pod
from .volumes import (
    Projection,
    prepare_claim,
    prepare_empty_dir,
    projected_files,
    projected_volume_files,
    sub_path_source,
    update_projected,
    write_projected,
)

if TYPE_CHECKING:
    from .runner import PodRunner

EXTERNAL_DNS_HOSTNAME = "external-dns.alpha.kubernetes.io/hostname"
ETC_FILES = ("hosts", "hostname", "resolv.conf")
TICK = 0.05
"""How often a container's worker looks at its process (the kubelet's PLEG relists every second)."""
MINIMUM_GRACE = 2.0
"""The kubelet's minimumGracePeriodInSeconds: the least time between SIGTERM and SIGKILL, also after
a preStop hook that used up the grace period (kuberuntime_container.go killContainer)."""
HOOK_REAP = 5.0
"""How long to wait, after its container was SIGKILLed, for a cut preStop hook's exec to return."""


@dataclass(frozen=True)
class PreStopResult:
    """What a container's preStop hook did during the pod's termination."""

    container: str
    command: tuple[str, ...]
    exit_code: int | None
    """The command's exit status (137: killed with its container); None: no exec result at all."""
    output: str
    """stdout then stderr of the command (also appended to the container's log)."""
    started_at: float
    """time.monotonic() when the kubelet started the hook."""
    duration: float
    """Seconds until the command ended (a hook cut at the grace period ends with its container)."""
    completed: bool
    """It ended within the grace period; False: the kubelet stopped waiting and sent SIGTERM."""


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
    directories) until delete() too; container processes between start and stop/kill9.

    Between start() and stop()/kill9()/delete() the pod is supervised as by a kubelet with
    restartPolicy Always: a container whose process exits (kill_container(), a crash, a clean exit)
    is started again in the same pod (same network namespace, volumes and emptyDirs; a fresh root
    filesystem) after the kubelet's crash-loop back-off (kubelet.py), and counted (restart_count()).
    Each container's readiness probe runs in the background at its periodSeconds; the pod is Ready
    when every container is. The pod's Service names follow readiness and the pod object's current
    labels in the region's API server (``labels``), which clients may PATCH.

    stop(), restart() and delete() are the pod object's deletion through the API: the pod is
    ``terminating`` (out of ready endpoints, its object and labels kept), each container runs its
    preStop exec hook, then gets SIGTERM, then SIGKILL, all within the grace period (stop()).
    kill_container(), kill9() and teardown() run no hooks (a crash, a node failure, cleanup).
    Readiness probes go on while the pod terminates, as the kubelet's do (its ``serving``
    condition); nothing waits for them."""

    def __init__(self, runner: PodRunner, store: ObjectStore, plan: PodPlan, region: str, publish: bool):
        self.runner = runner
        self.store = store
        self.plan = plan
        self.region = region
        self.publish = publish
        self.key = f"{region}/{plan.namespace}/{plan.name}"
        self.dir = runner.workdir / region / plan.namespace / plan.name
        self.claims = self._claims()
        self._check_services()  # refuses untranslatable Services before anything starts
        self._account = self._service_account()  # refuses RBAC it cannot emulate, likewise
        self._lock = threading.RLock()
        self._supervised = False
        self._states: dict[str, ContainerState] = {}
        self._workers: dict[str, threading.Thread] = {}
        self._stop_workers = threading.Event()
        self._ready = False
        self.ready_at: float | None = None
        """When (time.monotonic()) the pod became Ready; None while it is not Ready."""
        self._token: str | None = None
        self._cluster: Cluster | None = None
        self.errors: list[str] = []
        """What went wrong in the pod's background workers (a test may assert it is empty)."""
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
        self._terminating = False
        self.prestop_results: dict[str, PreStopResult] = {}
        """Container -> its preStop hook's result in the pod's latest termination (stop(), restart(),
        delete()); containers without a hook are absent. Kept until the next termination starts."""
        self.stop_codes: dict[str, int] = {}
        """Container -> exit status in the pod's latest termination (what stop() returned)."""

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

    @property
    def ordinal(self) -> int:
        return self.plan.ordinal

    @property
    def labels(self) -> dict[str, str]:
        """The pod object's labels now: the template's plus the controller's when it was created,
        then whatever clients PATCHed. Gone with the pod object (restart() recreates it)."""
        if self._cluster is not None:
            obj = self._cluster.api.pod(self.namespace, self.name)
            if obj is not None:
                return dict(obj["metadata"].get("labels") or {})
        return dict(self.plan.labels)

    @property
    def ready(self) -> bool:
        """The pod's Ready condition as the background prober (or wait_ready) last found it."""
        return self._ready

    @property
    def terminating(self) -> bool:
        """Deleted through the API and not yet gone: from the start of stop()/restart()/delete() (the
        pod object gets its deletionTimestamp) until start() creates a new pod object."""
        return self._terminating

    @property
    def token(self) -> str | None:
        """The service account token projected into this pod (None: it mounts none)."""
        return self._token

    @property
    def isolated(self) -> bool:
        return self.network is not None and self.network.isolated

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
        self._cluster = self.runner.cluster(self.region)
        if self.network is None:
            self.network = PodNetwork(self.runner.bridge)
            (self.dir / "etc").mkdir(parents=True, exist_ok=True)
            (self.dir / "logs").mkdir(exist_ok=True)
            (self.dir / "etc" / "hostname").write_text(f"{self.name}\n")
            (self.dir / "etc" / "resolv.conf").write_text(self.runner.names.resolv_conf(self.namespace))
            self.runner.refresh_hosts()
        self.uid = str(uuid.uuid4())
        with self._lock:
            self._terminating = False
            self.processes = {}
            self._states = {
                c.name: ContainerState(Backoff(self.runner.backoff_initial, self.runner.backoff_max))
                for c in self.plan.containers
            }
        self._register()
        self._update_ready()
        self.runner.republish()  # a new pod object: names of Services publishing not-ready addresses
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
        with self._lock:
            for plan in self.plan.containers:
                proc = self._launch(plan)
                self.processes[plan.name] = proc
                self._states[plan.name].on_start(proc.started_at, plan)
            self._supervised = True
        self._ensure_workers()

    def _unsupervise(self) -> dict[str, ContainerProcess]:
        with self._lock:
            self._supervised = False
            return dict(self.processes)

    def stop(self, grace: float | None = None) -> dict[str, int]:
        """Terminate the pod as the kubelet does once the pod object is deleted through the API
        (``grace`` None: terminationGracePeriodSeconds; else the DELETE's gracePeriodSeconds):

        - at once the pod object gets its deletionTimestamp (labels and PATCHes keep working) and the
          pod leaves its Services' endpoints as ``ready: false, terminating: true`` (see
          published_entries); nothing restarts its containers any more;
        - every container in parallel: its preStop exec hook, if any, waited for at most ``grace``
          seconds; then SIGTERM; then SIGKILL after what is left of ``grace`` (less the hook's whole
          seconds, as the kubelet counts), but never less than MINIMUM_GRACE (2 s): a hook that overruns
          the grace period is followed by SIGTERM, and SIGKILL 2 s later (it dies with the container).

        ``grace`` 0 is the runner's forced kill, not the kubelet's: no hooks, SIGKILL at once (a
        kubelet would still give the pod at least 2 s, pod_workers.go calculateEffectiveGracePeriod).
        Returns exit codes (also in ``stop_codes``); hook results are in ``prestop_results``. The
        pod object stays in the API server, not Ready, until delete() or restart() removes it."""
        grace = float(self.plan.grace_seconds if grace is None else grace)
        self._begin_termination(grace)
        processes = self._unsupervise()
        codes: dict[str, int] = {}
        threads = [
            threading.Thread(
                target=self._terminate_container,
                args=(self._plan(name), proc, grace, codes),
                name=f"kubelet {self.key}/{name} termination",
                daemon=True,
            )
            for name, proc in processes.items()
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self._all_unready()
        self.stop_codes = {name: codes[name] for name in processes if name in codes}
        missing = sorted(set(processes) - set(codes))
        if missing:  # a termination worker died: kill what it left and say so
            for name in missing:
                self.stop_codes[name] = processes[name].kill()
            self.errors.append(f"termination of {missing} failed, killed")
        return dict(self.stop_codes)

    def _begin_termination(self, grace: float) -> None:
        """The API server's graceful DELETE and what the kubelet does at once about it: the object is
        marked, startup probes stop counting (pkg/kubelet/prober/worker.go sets their result to
        success on a deletionTimestamp), and the endpoints follow the terminating condition."""
        with self._lock:
            self._terminating = True
            self.prestop_results = {}
            self.stop_codes = {}
            for state in self._states.values():
                state.started = True
        if self._cluster is not None and not self.deleted:
            self._cluster.api.mark_deleted(self.namespace, self.name, math.ceil(grace))
        self.runner.republish()

    def _terminate_container(
        self, plan: ContainerPlan, proc: ContainerProcess, grace: float, codes: dict[str, int]
    ) -> None:
        """The kubelet's killContainer for one container (kuberuntime_container.go)."""
        if grace <= 0:
            proc.signal(signal.SIGTERM)
            codes[plan.name] = proc.kill()
            return
        remaining = grace
        hook: threading.Thread | None = None
        box: dict[str, Any] = {}
        if plan.pre_stop and proc.running:
            hook, waited = self._start_pre_stop(plan, proc, grace, box)
            remaining = grace - math.floor(waited)  # the kubelet subtracts whole seconds
        remaining = max(remaining, MINIMUM_GRACE)
        self._log(plan.name, f"stopping: SIGTERM, SIGKILL in {remaining:g}s if still running")
        proc.signal(signal.SIGTERM)
        code = proc.wait(remaining)
        if code is None:
            self._log(plan.name, f"grace period over: SIGKILL after {remaining:g}s")
            code = proc.kill()
        codes[plan.name] = code
        if hook is not None:
            hook.join(HOOK_REAP)
            self._record_pre_stop(plan, box)

    def _start_pre_stop(
        self, plan: ContainerPlan, proc: ContainerProcess, grace: float, box: dict[str, Any]
    ) -> tuple[threading.Thread, float]:
        """Run the hook inside the container (as exec()) and wait for it at most ``grace`` seconds
        (executePreStopHook). Returns the thread still running it, if cut, and the seconds waited."""
        self._log(plan.name, f"preStop hook {list(plan.pre_stop)}")
        box["started"] = started = time.monotonic()
        box["grace"] = grace

        def run() -> None:
            try:
                # No timeout of its own (lifecycle/handlers.go runs it with 0): it ends or dies with
                # the container; the bound only guards against a runner bug.
                box["result"] = proc.exec(list(plan.pre_stop), grace + MINIMUM_GRACE + 60.0)
            except RuntimeError as exc:  # the container exited before the hook could start
                box["result"] = ExecResult(-1, "", str(exc))
            box["ended"] = time.monotonic()

        thread = threading.Thread(target=run, name=f"kubelet {self.key}/{plan.name} preStop", daemon=True)
        thread.start()
        thread.join(grace)
        box["completed"] = not thread.is_alive()
        if thread.is_alive():
            self._log(plan.name, f"preStop hook not completed in grace period {grace:g}s: SIGTERM now")
        return thread, time.monotonic() - started

    def _record_pre_stop(self, plan: ContainerPlan, box: dict[str, Any]) -> None:
        started = box["started"]
        result: ExecResult | None = box.get("result")
        ended = box.get("ended", time.monotonic())
        duration = ended - started
        output = (result.stdout + result.stderr) if result is not None else ""
        code = result.returncode if result is not None else None
        completed = bool(box.get("completed")) and result is not None
        self.prestop_results[plan.name] = PreStopResult(
            plan.name, plan.pre_stop, code, output, started, duration, completed
        )
        lines = [f"preStop: {line}" for line in output.splitlines()]
        how = "completed" if completed else "cut at the grace period"
        self._log(plan.name, f"preStop hook exited {code} after {duration:.2f}s ({how})", lines)

    def _log(self, container: str, message: str, lines: Iterable[str] = ()) -> None:
        """A runner message in the container's log file, like its start and restart lines."""
        text = f"--- podrunner: {message} at {time.strftime('%H:%M:%S')} ---\n"
        text += "".join(f"{line}\n" for line in lines)
        with contextlib.suppress(OSError), open(self.log_path(container), "a") as log:
            log.write(text)

    def kill9(self) -> dict[str, int]:
        """SIGKILL every container at once, as a node crash would: the kubelet goes down with them, so
        nothing restarts them (start() or restart() does). To crash one container and have the
        kubelet restart it, use kill_container()."""
        codes = {name: proc.kill() for name, proc in self._unsupervise().items()}
        self._all_unready()
        return codes

    def kill_container(self, container: str | None = None, signal: int = 9, timeout: float = 10.0) -> int | None:
        """Send ``signal`` (default SIGKILL: a crash or an OOM kill) to one container's PID 1 and wait up
        to ``timeout`` for it to exit; returns its exit status (128+signal), None if it still runs.
        The kubelet then starts it again after its back-off (kubelet.py; restart_count() counts).
        No preStop hook runs: the kubelet runs hooks only when it stops a container itself (API
        deletion, a failed liveness probe...), not when the process dies on its own."""
        proc = self._process(container)
        proc.signal(signal)
        return proc.wait(timeout)

    def restart_count(self, container: str | None = None) -> int:
        """How often the kubelet restarted this container since the pod was (re)created."""
        return self._states[self._plan(container).name].restarts

    def wait_running(self, container: str | None = None, restarts: int | None = None, timeout: float = 30.0) -> None:
        """Wait until the container runs (again) and, with ``restarts``, has been restarted at least that
        often. Does not wait for Ready (wait_ready does)."""
        name = self._plan(container).name
        deadline = time.monotonic() + timeout
        while True:
            proc = self.processes.get(name)
            count = self._states[name].restarts if name in self._states else 0
            if proc is not None and proc.running and (restarts is None or count >= restarts):
                return
            if time.monotonic() >= deadline:
                state = self._states.get(name)
                wait = 0.0
                if state is not None and state.finished_at is not None:
                    wait = state.backoff.remaining(state.finished_at, time.monotonic())
                raise TimeoutError(
                    f"{self.key}: container {name} not running with {restarts} restarts after {timeout}s "
                    f"(restarts {count}, back-off left {wait:.1f}s, supervised {self._supervised})"
                )
            time.sleep(TICK)

    def isolate(self) -> None:
        """Cut the pod off the network: no other pod, proxy, the API server or the tests reach it, and it
        reaches none of them (packets are dropped: connections time out). ``exec`` and loopback inside
        the pod keep working, and so do its probes: exec probes run inside it, httpGet probes are then
        sent from inside its network namespace (the kubelet on its node still reaches it)."""
        if self.network is None:
            raise RuntimeError(f"pod {self.key} has no network")
        self.network.isolate()

    def rejoin(self) -> None:
        if self.network is None:
            raise RuntimeError(f"pod {self.key} has no network")
        self.network.rejoin()

    def restart(
        self,
        grace: float | None = None,
        objects: HasManifests | Iterable[Mapping[str, Any]] | None = None,
        wait_ready: float | None = 30.0,
    ) -> None:
        """Delete and recreate the pod as the StatefulSet controller would: same name, IP and claims;
        fresh emptyDirs and projected files (a new token); init containers run again; the pod object is
        created anew with the template's labels. ``objects`` replaces the manifests (e.g. a
        re-rendered config Secret)."""
        self.stop(grace)
        self._unregister()  # the pod object is deleted, with the labels clients set
        if objects is not None:
            store = ObjectStore(objects)
            plan = plan_pod(store, self.plan.statefulset, self.plan.ordinal, self.namespace)
            self.store, self.plan = store, plan
            self.claims = self._claims()
            self._check_services()
            self._account = self._service_account()
        self.start()
        if wait_ready:
            self.wait_ready(wait_ready)

    def delete(self, grace: float | None = None) -> None:
        """A DELETE of the pod object: stop() (hooks, SIGTERM, SIGKILL; the pod is terminating
        meanwhile), then, once every container has stopped, the pod object is removed and with it
        the pod's names; then everything of the pod including its claims' directories."""
        self.stop(grace)
        self.teardown()
        for path in self.claims.values():
            shutil.rmtree(path, ignore_errors=True)

    def teardown(self) -> None:
        """Kill processes, remove the network and the pod directory; claims stay."""
        processes = self._unsupervise()
        self._stop_workers.set()
        for proc in processes.values():
            proc.kill()
        for worker in self._workers.values():
            if worker is not threading.current_thread():
                worker.join(10.0)
        self._unregister()
        self._ready = False
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
            netns = self.network.path if self.network is not None and self.network.isolated else None
            outcome = http_get(self.address, probe.http_get, probe.timeout, netns)
            return ProbeResult(
                kind, outcome.success, outcome.output, None, outcome.timed_out, http_status=outcome.status
            )
        result = proc.exec(list(probe.command), timeout=probe.timeout)
        output = (result.stdout + result.stderr)[:10240]  # the kubelet keeps 10 KiB of probe output
        return ProbeResult(kind, result.ok, output, result.returncode, result.timed_out)

    def wait_ready(self, timeout: float = 30.0, interval: float = 0.1, container: str | None = None) -> None:
        """Poll as the kubelet's prober does, faster: after initialDelaySeconds, the startup probe until
        it passes, then the readiness probe until successThreshold passes in a row; the container then
        counts as Ready (the background prober takes over). Fails at once if the container exits
        while waiting (the kubelet will restart it); a container already exited when the wait starts
        is first waited for to run again. ``container`` None: every container, in order (the pod's
        Ready condition); ``timeout`` covers them all."""
        deadline = time.monotonic() + timeout
        for plan in [self._plan(container)] if container else self.plan.containers:
            self._wait_container_ready(plan, deadline, timeout, interval)

    def _wait_container_ready(self, plan: ContainerPlan, deadline: float, timeout: float, interval: float) -> None:
        proc = self._process(plan.name)
        if not proc.running and self._supervised:
            self.wait_running(plan.name, timeout=max(0.0, deadline - time.monotonic()))
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
                if self._terminating:
                    raise PodStartError(f"{self.key}: the pod is terminating (waiting for {plan.name}'s {kind})")
                if not proc.running:
                    raise PodStartError(
                        f"{self.key}: container {plan.name} exited {proc.exit_code} "
                        f"while waiting for {kind}\n{self._tail(plan.name)}"
                    )
                last = self.probe(kind, plan.name)
                successes = successes + 1 if last.success else 0
                if successes >= needed:
                    break
                if proc is not self.processes.get(plan.name):
                    raise PodStartError(f"{self.key}: container {plan.name} was restarted while waiting for {kind}")
                if time.monotonic() >= deadline:
                    raise TimeoutError(
                        f"{self.key}: {kind} probe not passing after {timeout}s; last output "
                        f"{last.output!r}\n{self._tail(plan.name)}"
                    )
                time.sleep(interval)
        with self._lock:
            state = self._states.get(plan.name)
            if state is not None and self.processes.get(plan.name) is proc:
                state.started = True
                state.successes, state.failures = max(state.successes, successes), 0
        self._set_container_ready(plan.name, True, proc)

    # ----- mounted Secrets and ConfigMaps ----------------------------------------------------------
    def update_volumes(
        self, objects: HasManifests | Iterable[Mapping[str, Any]], *, rollout_pending: bool = False
    ) -> dict[str, bool]:
        """Refresh the running pod's Secret and ConfigMap volumes from re-rendered manifests, as the
        kubelet's periodic sync does (here at once, not within its ~1 min): per volume whose files
        changed, a new timestamped directory, then an atomic rename of ``..data`` onto it, then the
        top-level symlinks added/removed, then the old directory removed (AtomicWriter). Containers
        keep running; environment variables and subPath mounts keep the old values, as on a node.

        Refused (ValueError) when the objects change the pod template: a StatefulSet would replace the
        pod, use restart(objects=...). With ``rollout_pending``, allowed: the pod still waits for its
        turn in that rollout while the kubelet already refreshed its Secrets, as during ``pulumi up``
        of a new template and Secret; the pod keeps its objects otherwise (its template, its plan).
        Returns volume name -> whether its files changed."""
        store = ObjectStore(objects)
        new_sts = store.statefulset(self.plan.statefulset, self.namespace)
        old_sts = self.store.statefulset(self.plan.statefulset, self.namespace)
        if new_sts["spec"]["template"] != old_sts["spec"]["template"] and not rollout_pending:
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
        if not rollout_pending:
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

    def _check_services(self) -> None:
        """Refuse Services that could select this pod (their selector does not contradict its template
        labels: a label a client PATCHes may complete it) and would translate ports."""
        if not self.publish:
            return
        ports = {name: port for c in self.plan.containers for name, port in c.ports.items()}
        for svc in self.store.of_kind("Service", self.namespace):
            spec = svc.get("spec") or {}
            selector = spec.get("selector") or {}
            if not selector or spec.get("clusterIP") == "None":
                continue  # a headless Service's ports translate nothing: clients dial the pod IPs
            if any(k in self.plan.labels and self.plan.labels[k] != v for k, v in selector.items()):
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

    def endpoint_conditions(self, service: str) -> dict[str, bool] | None:
        """This pod's endpoint in Service ``service``'s EndpointSlice, as the EndpointSlice controller
        writes it (staging/src/k8s.io/endpointslice/utils.go podToEndpoint): ``serving`` is the pod's
        Ready condition, ``terminating`` its deletionTimestamp, ``ready`` is publishNotReadyAddresses
        or (serving and not terminating). None: the Service (in the pod's namespace) does not select
        the pod's current labels, or the pod has no IP or object any more. A terminating pod stays in
        the slice (ShouldPodBeInEndpoints with includeTerminating) until its object is gone."""
        svc = self.store.find("Service", self.namespace, service)
        if svc is None or not self._selected_by(svc):
            return None
        return self._conditions(svc)

    def _selected_by(self, svc: Mapping[str, Any], labels: Mapping[str, str] | None = None) -> bool:
        if not self.publish or self.network is None or self.deleted:
            return False
        selector = (svc.get("spec") or {}).get("selector") or {}
        labels = self.labels if labels is None else labels
        return bool(selector) and all(labels.get(k) == v for k, v in selector.items())

    def _conditions(self, svc: Mapping[str, Any]) -> dict[str, bool]:
        serving, terminating = self._ready, self._terminating
        ready = bool((svc.get("spec") or {}).get("publishNotReadyAddresses")) or (serving and not terminating)
        return {"ready": ready, "serving": serving, "terminating": terminating}

    def _other_ready_endpoint(self, svc: Mapping[str, Any]) -> bool:
        """Whether another pod of the region is a ready endpoint of the Service."""
        for other in list(self.runner.pods):
            if other is self or other.region != self.region or other.namespace != self.namespace:
                continue
            with contextlib.suppress(RuntimeError):
                if other._selected_by(svc) and other._conditions(svc)["ready"]:
                    return True
        return False

    def published_entries(self) -> list[Entry]:
        """The names this pod is an endpoint of now, as the EndpointSlice controller, CoreDNS,
        kube-proxy and external-dns would publish them, for every Service whose selector matches the
        pod object's current labels (endpoint_conditions):

        - a headless Service's name, and the per-pod name ``<pod>.<serviceName>.<ns>.svc.<domain>``
          when ``serviceName`` is that Service: while the endpoint is ``ready`` (CoreDNS serves only
          ready endpoints: with publishNotReadyAddresses a not-ready or terminating pod keeps its
          names until its object is gone; without, they go when it stops being Ready or starts
          terminating);
        - a ClusterIP Service's name and LoadBalancer hostnames (external-dns, in every region), which
          stand for kube-proxy's routing: while the endpoint is ``ready``, or when it is serving and
          terminating and the Service has no ready endpoint left (kube-proxy's fallback,
          pkg/proxy/topology.go CategorizeEndpoints).

        Cluster names in the pod's region only. A ClusterIP Service name resolves straight to its
        endpoints' pod IPs (no virtual IP): as with kube-proxy, connections made before an endpoint
        left are not cut."""
        if not self.publish or self.network is None or self.deleted:
            return []
        domain = self.runner.names.cluster_domain
        labels = self.labels
        entries = []
        for svc in self.store.of_kind("Service", self.namespace):
            spec = svc.get("spec") or {}
            if not self._selected_by(svc, labels):
                continue
            conditions = self._conditions(svc)
            headless = spec.get("clusterIP") == "None"
            fallback = not headless and conditions["serving"] and conditions["terminating"]
            if not (conditions["ready"] or (fallback and not self._other_ready_endpoint(svc))):
                continue
            name = svc["metadata"]["name"]
            if name == self.plan.subdomain and headless:
                entries.append(Entry(self.fqdn, "", self.region, self.key))
            entries.append(Entry(f"{name}.{self.namespace}.svc.{domain}", "", self.region, self.key))
            if spec.get("type") == "LoadBalancer":
                hosts = (svc["metadata"].get("annotations") or {}).get(EXTERNAL_DNS_HOSTNAME, "")
                entries += [Entry(h.strip(), "", None, self.key) for h in hosts.split(",") if h.strip()]
        return entries

    # ----- the API server's view ----------------------------------------------------------------------
    def _token_sources(self) -> list[Mapping[str, Any]]:
        return [
            s["serviceAccountToken"]
            for v in self.plan.volumes.values()
            if v.kind == "projected"
            for s in v.source.get("sources") or []
            if s.get("serviceAccountToken") is not None
        ]

    def _service_account(self) -> ServiceAccount | None:
        if not self._token_sources():
            return None
        return service_account(self.store, self.namespace, self.plan.service_account)

    def _register(self) -> None:
        """Create the pod object (the template's labels) and, if a volume projects one, a new token."""
        cluster = self._cluster
        assert cluster is not None
        if self._token is not None:
            cluster.api.remove_token(self._token)
        self._token = None
        if self._account is not None:
            self._token = secrets.token_urlsafe(32)
            if all(str(t.get("audience") or "") in cluster.audiences for t in self._token_sources()):
                cluster.api.add_token(self._token, self._account)
        cluster.api.put_pod(self._api_object())

    def _unregister(self) -> None:
        if self._cluster is not None:
            if self._token is not None:
                self._cluster.api.remove_token(self._token)
            self._cluster.api.delete_pod(self.namespace, self.name)

    def _api_object(self) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "uid": self.uid,
                "labels": dict(self.plan.template_labels or self.plan.labels),
                "annotations": dict(self.plan.annotations),
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "StatefulSet",
                        "name": self.plan.statefulset,
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": {
                "hostname": self.name,
                "subdomain": self.plan.subdomain,
                "serviceAccountName": self.plan.service_account,
                "nodeName": "podrunner",
                "containers": [{"name": c.name, "image": c.image.reference} for c in self.plan.containers],
            },
            "status": self._status(),
        }

    def _status(self) -> dict[str, Any]:
        ready = "True" if self._ready else "False"
        return {
            "phase": "Running",
            "podIP": self.network.address if self.network else "",
            "hostIP": self.runner.bridge.gateway,
            "conditions": [{"type": "Ready", "status": ready}, {"type": "ContainersReady", "status": ready}],
            "containerStatuses": [
                {"name": n, "ready": s.ready, "started": s.started, "restartCount": s.restarts}
                for n, s in self._states.items()
            ],
        }

    def _publish_status(self) -> None:
        if self._cluster is not None and not self.deleted:
            self._cluster.api.set_status(self.namespace, self.name, self._status())

    # ----- the kubelet's workers --------------------------------------------------------------------
    def _ensure_workers(self) -> None:
        for plan in self.plan.containers:
            worker = self._workers.get(plan.name)
            if worker is None or not worker.is_alive():
                worker = threading.Thread(
                    target=self._work, args=(plan.name,), name=f"kubelet {self.key}/{plan.name}", daemon=True
                )
                self._workers[plan.name] = worker
                worker.start()

    def _work(self, name: str) -> None:
        while not self._stop_workers.wait(TICK):
            try:
                self._step(name)
            except Exception as exc:  # noqa: BLE001 - a worker must not die silently; tests read pod.errors
                self.errors.append(f"{name}: {type(exc).__name__}: {exc}")

    def _step(self, name: str) -> None:
        plan = next((c for c in self.plan.containers if c.name == name), None)
        state = self._states.get(name)
        proc = self.processes.get(name)
        if plan is None or state is None or proc is None:
            return
        now = time.monotonic()
        if not proc.running:
            if state.finished_at is None:
                state.finished_at, state.last_exit_code = now, proc.exit_code
            self._set_container_ready(name, False, proc)
            if self._supervised and not state.backoff.in_backoff_since(state.finished_at, now):
                self._restart_container(plan, proc, state)
            return
        if now >= state.next_probe:
            self._probe_step(plan, proc, state, now)

    def _restart_container(self, plan: ContainerPlan, old: ContainerProcess, state: ContainerState) -> None:
        with self._lock:
            if not self._supervised or self.deleted or self.processes.get(plan.name) is not old:
                return
            assert state.finished_at is not None
            state.backoff.next(state.finished_at, time.monotonic())
            try:
                proc = self._launch(plan)
            except (PodStartError, OSError, RuntimeError) as exc:
                state.finished_at = time.monotonic()  # a failed start backs off like a crash
                with contextlib.suppress(OSError), open(self.log_path(plan.name), "a") as log:
                    log.write(f"podrunner: restart failed: {exc}\n")
                return
            self.processes[plan.name] = proc
            state.restarts += 1
            state.on_start(proc.started_at, plan)
        self._publish_status()

    def _probe_step(self, plan: ContainerPlan, proc: ContainerProcess, state: ContainerState, now: float) -> None:
        scale = self.runner.probe_period_scale
        startup, readiness = plan.probes.get("startup"), plan.probes.get("readiness")
        if not state.started:
            assert startup is not None
            if self._probe_ok("startup", plan.name):
                state.started = True
                delay = readiness.initial_delay if readiness is not None else 0.0
                state.next_probe = max(time.monotonic(), proc.started_at + delay)
            else:  # failureThreshold would make the kubelet kill it: not emulated (no liveness either)
                state.next_probe = now + startup.period * scale
            return
        if readiness is None:
            self._set_container_ready(plan.name, True, proc)
            state.next_probe = now + 1.0
            return
        ok = self._probe_ok("readiness", plan.name)
        state.successes, state.failures = (state.successes + 1, 0) if ok else (0, state.failures + 1)
        if ok and state.successes >= readiness.success_threshold:
            self._set_container_ready(plan.name, True, proc)
        elif not ok and state.failures >= readiness.failure_threshold:
            self._set_container_ready(plan.name, False, proc)
        state.next_probe = now + readiness.period * scale

    def _probe_ok(self, kind: str, container: str) -> bool:
        try:
            return self.probe(kind, container).success
        except RuntimeError:  # the container exited meanwhile
            return False

    def _set_container_ready(self, name: str, ready: bool, proc: ContainerProcess) -> None:
        with self._lock:
            state = self._states.get(name)
            if state is None or state.ready == ready or (ready and self.processes.get(name) is not proc):
                return
            state.ready = ready
        self._update_ready()

    def _all_unready(self) -> None:
        with self._lock:
            for state in self._states.values():
                state.ready = False
        self._update_ready()

    def _update_ready(self) -> None:
        with self._lock:
            ready = bool(self._states) and all(s.ready for s in self._states.values()) and not self.deleted
            changed, self._ready = ready != self._ready, ready
            if changed:
                self.ready_at = time.monotonic() if ready else None
        self._publish_status()
        if changed:
            self.runner.republish()

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
        content = self.hosts_file()
        if path.exists() and path.read_text() == content:
            return
        # In place: the file is bind-mounted into running containers by inode.
        with open(path, "r+" if path.exists() else "w") as f:
            f.write(content)
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
            elif v.kind == "projected":
                assert self._cluster is not None
                ctx = Projection(self._token, self._cluster.ca, self._fields(), self.plan.fs_user, self.plan.fs_group)
                projection = projected_volume_files(v, self.store, self.namespace, ctx)
                write_projected(volumes / v.name, projection, self.plan.fs_group, ctx.owners)
            else:
                files = projected_files(v, self.store, self.namespace)
                write_projected(volumes / v.name, files or {}, self.plan.fs_group)

    def _volume_dir(self, name: str) -> Path:
        return self.claims[name] if name in self.claims else self.dir / "volumes" / name

    def _fields(self) -> dict[str, str]:
        return pod_fields(
            name=self.name,
            namespace=self.namespace,
            uid=self.uid,
            pod_ip=self.address,
            host_ip=self.runner.bridge.gateway,
            labels=self.labels,
            annotations=self.plan.annotations,
            service_account=self.plan.service_account,
        )

    def _launch(self, plan: ContainerPlan) -> ContainerProcess:
        service_env = self._cluster.service_env() if self._cluster is not None else {}
        env = resolve_env(plan, self.store, self.namespace, self._fields(), service_env)
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
            # Secret, ConfigMap and projected volumes are always mounted read-only.
            read_only = m.read_only or volume.kind in ("secret", "configMap", "projected")
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
