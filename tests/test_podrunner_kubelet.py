"""The pod runner as a kubelet and StatefulSet controller: container restarts with the crash-loop
back-off, background readiness driving Service names, OrderedReady and Parallel start, rolling
restarts, and network isolation. Real processes; needs root (the back-off arithmetic does not)."""

from __future__ import annotations

import itertools
import socket
import time
from collections.abc import Iterator
from typing import Any

import needs
import pytest
from podrunner import PodRunner
from podrunner.kubelet import BACKOFF_INITIAL, BACKOFF_MAX, Backoff
from podrunner.manifests import container, service, statefulset
from valkey_process import wait_for

NS = "lab"
WEB = "exec python3 -m http.server 8080 --bind 0.0.0.0 --directory /work"
CONNECT = "import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))"


@pytest.fixture
def runner() -> Iterator[PodRunner]:
    with PodRunner(backoff_initial=1.0, backoff_max=4.0) as r:
        yield r


def test_backoff_is_the_kubelets() -> None:
    """Immediate first restart, then 10 s after the exit doubling to 300 s; a container that ran
    twice the maximum (10 min) since its last restart starts over."""
    backoff, now, waits = Backoff(), 0.0, []
    assert (BACKOFF_INITIAL, BACKOFF_MAX) == (10.0, 300.0)
    for _ in range(8):
        exited = now + 1.0  # each run lasts 1 s
        now = exited + backoff.remaining(exited, exited)
        waits.append(now - exited)
        backoff.next(exited, now)
    assert waits == [0, 10, 20, 40, 80, 160, 300, 300]
    exited = now + 601.0
    assert backoff.remaining(exited, exited) == 0
    backoff.next(exited, exited)
    assert backoff.duration == 10.0


@needs.root
def test_a_killed_container_is_restarted_in_the_same_pod(runner: PodRunner) -> None:
    main = container(
        command="echo $$ >> /work/pids; " + container()["command"][2],
        readinessProbe={"exec": {"command": ["true"]}, "periodSeconds": 1},
    )
    side = container("side")
    (pod,) = runner.start_statefulset([statefulset(replicas=1, containers=[main, side])], "kv")
    pod.exec(["sh", "-c", "echo kept > /work/data"])
    side_pid, old_pid = pod.container_pid("side"), pod.container_pid()
    address = pod.address

    assert pod.kill_container("main") == 137
    started = time.monotonic()
    pod.wait_running("main", restarts=1, timeout=5)
    assert time.monotonic() - started < 1.0  # the first restart is immediate
    assert pod.restart_count("main") == 1 and pod.restart_count("side") == 0
    assert pod.container_pid() != old_pid and pod.container_pid("side") == side_pid
    # Same pod: the emptyDir kept its content (and saw both starts), same address.
    assert pod.exec(["cat", "/work/data"]).stdout == "kept\n"
    assert len(pod.exec(["cat", "/work/pids"]).stdout.split()) == 2
    assert pod.address == address
    pod.wait_ready(5)
    assert pod.ready

    # The second crash waits out the back-off (1 s here, 10 s on a kubelet).
    assert pod.kill_container("main", signal=15) == 0  # the shell traps TERM and exits 0: restarted anyway
    wait_for(lambda: not pod.ready, 2, "pod not ready while its container is down")
    time.sleep(0.5)
    assert pod.restart_count("main") == 1
    pod.wait_running("main", restarts=2, timeout=5)
    api_status = runner.api().pod(NS, "kv-0")
    assert api_status is not None
    counts = {c["name"]: c["restartCount"] for c in api_status["status"]["containerStatuses"]}
    assert counts == {"main": 2, "side": 0}

    # kill9 is the node going down with the kubelet: nothing comes back until restart().
    pod.kill9()
    time.sleep(0.5)
    assert not pod.running and pod.restart_count("main") == 2
    pod.restart(wait_ready=10)
    assert pod.running and pod.restart_count("main") == 0  # a new pod
    assert pod.exec(["ls", "/work"]).stdout.split() == ["pids"]  # with a new emptyDir
    assert len(pod.exec(["cat", "/work/pids"]).stdout.split()) == 1
    assert pod.errors == []


@needs.root
def test_service_names_follow_background_readiness(runner: PodRunner) -> None:
    main = container(readinessProbe={"exec": {"command": ["test", "-f", "/work/ready"]}, "periodSeconds": 1})
    objects = [
        statefulset(replicas=2, containers=[main], policy="Parallel"),
        service("kv", {"app": "kv"}),
        service("kv-headless", {"app": "kv"}, headless=True),
    ]
    p0, p1 = runner.start_statefulset(objects, "kv", wait_ready=None)
    name = f"kv.{NS}.svc.cluster.local"
    # Not ready: the ClusterIP Service has no endpoints; the headless one publishes not-ready addresses.
    assert runner.resolve(name, "region1") == []
    assert runner.resolve(f"kv-1.kv-headless.{NS}.svc.cluster.local", "region1") == [p1.address]
    p1.exec(["touch", "/work/ready"])
    wait_for(lambda: runner.resolve(name, "region1") == [p1.address], 3, "kv-1 an endpoint once ready")
    p0.exec(["touch", "/work/ready"])
    wait_for(lambda: len(runner.resolve(name, "region1")) == 2, 3, "both endpoints")
    p1.exec(["rm", "/work/ready"])  # failureThreshold 3, periodSeconds 1: out within ~3 s
    wait_for(lambda: runner.resolve(name, "region1") == [p0.address], 5, "kv-1 out once unready")
    assert not p1.ready and p0.ready
    stored = runner.api().pod(NS, "kv-1")
    assert stored is not None and stored["status"]["conditions"][0]["status"] == "False"


@needs.root
def test_ordered_ready_starts_each_pod_once_the_previous_is_ready(runner: PodRunner) -> None:
    slow = container(
        command="sleep 1; touch /work/ready; " + container()["command"][2],
        readinessProbe={"exec": {"command": ["test", "-f", "/work/ready"]}, "periodSeconds": 1},
    )
    pods = runner.start_statefulset([statefulset(replicas=3, containers=[slow])], "kv")
    assert [p.name for p in pods] == ["kv-0", "kv-1", "kv-2"]
    for before, after in itertools.pairwise(pods):
        assert before.ready_at is not None
        assert after.processes["main"].started_at >= before.ready_at, (before.name, after.name)
    assert len({p.dir for p in pods}) == 3

    # Parallel: all created at once, none waits for another.
    parallel = [statefulset("par", replicas=2, containers=[slow], policy="Parallel")]
    p0, p1 = runner.start_statefulset(parallel, "par")
    assert p0.ready_at is not None and p1.processes["main"].started_at < p0.ready_at


@needs.root
def test_rolling_restart_goes_from_the_highest_ordinal_down(runner: PodRunner) -> None:
    main = container(readinessProbe={"exec": {"command": ["true"]}, "periodSeconds": 1})
    objects: list[dict[str, Any]] = [statefulset(replicas=3, containers=[main])]
    pods = runner.start_statefulset(objects, "kv")
    uids = {p.name: p.uid for p in pods}
    order = runner.rolling_restart(pods)
    assert [p.name for p in order] == ["kv-2", "kv-1", "kv-0"]
    assert all(p.uid != uids[p.name] and p.ready for p in pods)
    ready = [p.ready_at for p in order]
    assert all(a is not None and b is not None and a < b for a, b in itertools.pairwise(ready))


@needs.root
def test_isolate_cuts_the_pod_off_but_not_its_loopback(runner: PodRunner) -> None:
    web = container(
        command=WEB,
        ports=[{"name": "http", "containerPort": 8080}],
        readinessProbe={"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1},
    )
    objects = [statefulset(replicas=2, containers=[web], policy="Parallel")]
    p0, p1 = runner.start_statefulset(objects, "kv")

    def connect(pod: Any, host: str, port: int = 8080, timeout: float = 0.5) -> bool:
        return bool(pod.exec(["python3", "-c", CONNECT, host, str(port), str(timeout)]).ok)

    assert connect(p0, p1.address)
    p1.isolate()
    assert not connect(p0, p1.address)  # another pod: times out
    assert not connect(p1, p0.address)  # and it reaches nobody, the API server included
    api = runner.cluster("region1").address
    assert connect(p0, api, 443) and not connect(p1, api, 443)
    with pytest.raises(OSError):
        socket.create_connection((p1.address, 8080), timeout=1.0)  # nor do the tests
    assert connect(p1, "127.0.0.1") and connect(p1, p1.address)  # its own processes, over loopback
    # The kubelet on its node still probes it: httpGet probes pass, the pod stays Ready.
    assert p1.probe("readiness").success
    time.sleep(1.5)
    assert p1.ready
    p1.rejoin()
    assert connect(p0, p1.address) and connect(p1, p0.address)
