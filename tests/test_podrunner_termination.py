"""The pod runner terminating pods as the kubelet does: preStop exec hooks, then SIGTERM, then SIGKILL,
all within one grace period; endpoints of a terminating pod (EndpointSlice ready/serving/terminating,
as CoreDNS and kube-proxy use them); no hook for a crash. Real processes; needs root."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import needs
import pytest
from podrunner import ObjectStore, PodRunner, UnsupportedPodFeature, plan_pod
from podrunner.manifests import CURL_IMAGE, PATCH_LABELS, TOKEN_DIR, container, rbac, service, statefulset, token_volume
from podrunner.pod import Pod
from valkey_process import wait_for

NS = "lab"
NOW = "date +%s.%N"
# PID 1 records when SIGTERM arrived, then exits (or, with IGNORE, keeps running until SIGKILL).
TRAPPED = f"trap '{NOW} > /work/term; exit 0' TERM; while :; do sleep 0.1; done"
IGNORE = f"trap '{NOW} > /work/term' TERM; while :; do sleep 0.1; done"
READY: dict[str, Any] = {"exec": {"command": ["true"]}, "periodSeconds": 1}


@pytest.fixture
def runner() -> Iterator[PodRunner]:
    with PodRunner(backoff_initial=0.5, backoff_max=2.0) as r:
        yield r


def hook(script: str) -> dict[str, Any]:
    return {"preStop": {"exec": {"command": ["sh", "-c", script]}}}


def work(pod: Pod, name: str) -> str:
    """A file of the pod's ``work`` emptyDir, read on the host (it outlives stop(), not delete())."""
    return (pod.dir / "volumes" / "work" / name).read_text()


def in_background(action: Any, *args: Any) -> threading.Thread:
    thread = threading.Thread(target=action, args=args, daemon=True)
    thread.start()
    return thread


@needs.root
def test_pre_stop_runs_before_sigterm_in_every_container(runner: PodRunner) -> None:
    """main's hook writes into the emptyDir and sleeps 2 s; main's trap records SIGTERM only after
    it. side's hook runs at the same time (containers terminate in parallel) and sees main's file."""
    main = container(
        command=TRAPPED,
        lifecycle=hook(f"echo hook started; {NOW} > /work/hook-start; sleep 2; {NOW} > /work/hook-end; echo done"),
    )
    side = container(
        "side",
        command=TRAPPED.replace("/work/term", "/work/side-term"),
        lifecycle=hook("for i in $(seq 50); do [ -f /work/hook-end ] && break; sleep 0.1; done; cat /work/hook-end"),
    )
    objects = [statefulset(replicas=1, containers=[main, side])]
    objects[0]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 10
    (pod,) = runner.start_statefulset(objects, "kv")
    started = time.time()
    assert pod.stop() == {"main": 0, "side": 0}
    took = time.time() - started

    hook_start, hook_end = float(work(pod, "hook-start")), float(work(pod, "hook-end"))
    term = float(work(pod, "term"))
    assert started <= hook_start < hook_end <= term, (started, hook_start, hook_end, term)
    assert hook_end - hook_start >= 2.0
    # The hook, then SIGTERM and a prompt exit: no wait for SIGKILL at 10 s. The upper bounds here
    # only separate the kubelet's decisions (2 s, 10 s, 30 s); a loaded CI machine adds seconds.
    assert 2.0 <= took < 8.0, (took, pod.logs("main"))
    result = pod.prestop_results["main"]
    assert (result.exit_code, result.completed) == (0, True)
    assert result.output == "hook started\ndone\n"
    assert 2.0 <= result.duration < 6.0
    assert result.command == ("sh", "-c", main["lifecycle"]["preStop"]["exec"]["command"][2])
    # side's hook waited for main's file: the emptyDir is shared while both hooks run.
    assert pod.prestop_results["side"].output.strip() == work(pod, "hook-end").strip()
    assert float(work(pod, "side-term")) >= hook_end
    log = pod.logs("main")
    assert "preStop: hook started\npreStop: done\n" in log and "preStop hook exited 0 after 2." in log
    assert pod.errors == []


@needs.root
def test_a_hook_past_the_grace_period_is_cut_then_sigkill_two_seconds_later(runner: PodRunner) -> None:
    """Grace 2 s, a hook of 30 s, a main process that ignores SIGTERM: the kubelet stops waiting for the
    hook at 2 s, sends SIGTERM, and SIGKILLs at 2 + 2 s (minimumGracePeriodInSeconds); the hook dies
    with its container."""
    main = container(command=IGNORE, lifecycle=hook(f"{NOW} > /work/hook-start; sleep 30; touch /work/hook-end"))
    (pod,) = runner.start_statefulset([statefulset(replicas=1, containers=[main])], "kv")  # grace 2 s
    started = time.time()
    assert pod.stop() == {"main": 137}
    took = time.time() - started
    # Upper bounds that only separate the decisions (SIGTERM at 2 s, SIGKILL 2 s later, not the
    # hook's 30 s): one CI run on a loaded machine took 7.6 s for what takes 4.1 s here.
    assert 4.0 <= took < 15.0, (took, pod.logs("main"))
    term = float(work(pod, "term")) - started
    assert 1.9 <= term < 8.0, term  # SIGTERM once the grace period ran out, before the hook's end
    assert took - term >= 1.9, (took, term)  # SIGKILL no sooner than 2 s after SIGTERM
    assert not (pod.dir / "volumes" / "work" / "hook-end").exists()
    result = pod.prestop_results["main"]
    assert not result.completed and result.exit_code == 137, result
    assert 3.9 <= result.duration < 15.0
    assert "cut at the grace period" in pod.logs("main") and "SIGKILL after 2s" in pod.logs("main")


@needs.root
def test_a_crash_runs_no_hook(runner: PodRunner) -> None:
    main = container(readinessProbe=READY, lifecycle=hook("touch /work/hook-ran"))
    (pod,) = runner.start_statefulset([statefulset(replicas=1, containers=[main])], "kv")
    assert pod.kill_container("main") == 137
    pod.wait_running("main", restarts=1, timeout=5)
    assert pod.exec(["ls", "/work"]).stdout.split() == []
    assert pod.prestop_results == {} and not pod.terminating
    assert "preStop" not in pod.logs("main")


def labeler_objects() -> list[dict[str, Any]]:
    """Two pods; main's hook holds the termination for 3 s; the labeler sidecar's hook PATCHes its
    own pod's labels (``draining``) through the API while the pod terminates."""
    patch = json.dumps({"metadata": {"labels": {"draining": "true"}}})
    # The kubelet does not expand a hook's argv: the pod name comes from the shell's $HOSTNAME.
    command = ["sh", "-c", 'sh -c "$0" sh "$HOSTNAME" "$1"; echo " patched"', PATCH_LABELS, patch]
    labeler = container(
        "labeler",
        image=CURL_IMAGE,
        volumeMounts=[{"name": "kube-api-access", "mountPath": TOKEN_DIR, "readOnly": True}],
        lifecycle={"preStop": {"exec": {"command": command}}},
    )
    main = container(readinessProbe=READY, lifecycle=hook("sleep 3"))
    ready_only = service("kv-ready", {"app": "kv"}, headless=True)
    del ready_only["spec"]["publishNotReadyAddresses"]
    sts = statefulset(
        containers=[main, labeler], service_account="labeler", volumes=[token_volume()], policy="Parallel"
    )
    sts["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 10  # the hook's 3 s fit
    return [
        sts,
        *rbac("labeler"),
        service("kv", {"app": "kv"}),
        service("kv-headless", {"app": "kv"}, headless=True),
        ready_only,
    ]


@needs.root
@needs.debian({"curl": ["curl"], "openssl": ["openssl"]})
def test_a_terminating_pod_leaves_service_endpoints_but_keeps_its_name_and_object(runner: PodRunner) -> None:
    p0, p1 = runner.start_statefulset(labeler_objects(), "kv")
    api = runner.api()

    def names(name: str) -> list[str]:
        return sorted(runner.resolve(f"{name}.{NS}.svc.cluster.local", "region1"))

    both = sorted([p0.address, p1.address])
    assert names("kv") == names("kv-ready") == names("kv-headless") == both
    deleting = in_background(p1.delete)
    wait_for(lambda: p1.terminating, 2, "kv-1 terminating")
    # At once: out of the ClusterIP Service (kube-proxy) and of the headless Service without
    # publishNotReadyAddresses (CoreDNS serves ready endpoints only); still in the one with it, and
    # its per-pod name (that Service is its serviceName) resolves.
    assert names("kv") == names("kv-ready") == [p0.address]
    assert names("kv-headless") == both and names("kv-1.kv-headless") == [p1.address]
    assert p1.endpoint_conditions("kv") == {"ready": False, "serving": True, "terminating": True}
    assert p1.endpoint_conditions("kv-headless") == {"ready": True, "serving": True, "terminating": True}
    seen = {line.split()[0] for line in p0.exec(["getent", "ahostsv4", "kv"]).stdout.splitlines()}
    assert seen == {p0.address}  # what the pods resolve, too
    stored = api.pod(NS, "kv-1")
    assert stored is not None and stored["metadata"]["deletionGracePeriodSeconds"] == 10
    assert "deletionTimestamp" in stored["metadata"]
    # The sidecar's hook PATCHed the terminating pod's labels.
    wait_for(lambda: p1.labels.get("draining") == "true", 3, "the hook's label PATCH")
    assert api.pod(NS, "kv-1") is not None and p1.terminating
    deleting.join(10)
    assert not deleting.is_alive()
    assert p1.prestop_results["labeler"].output.strip() == "200 patched", p1.prestop_results["labeler"]
    assert p1.prestop_results["main"].completed
    # Gone once its containers stopped: the object, then the names.
    assert api.pod(NS, "kv-1") is None and names("kv-1.kv-headless") == []
    assert names("kv-headless") == [p0.address]

    # The last endpoint, terminating while its readiness probe passes: kube-proxy falls back to
    # serving terminating endpoints when none is ready; CoreDNS does not.
    deleting = in_background(p0.delete)
    wait_for(lambda: p0.terminating, 2, "kv-0 terminating")
    assert names("kv") == [p0.address] and names("kv-ready") == []
    deleting.join(10)
    assert names("kv") == names("kv-headless") == []
    assert p0.errors == [] and p1.errors == []


@needs.root
def test_rolling_restart_runs_each_pods_hook(runner: PodRunner) -> None:
    main = container(readinessProbe=READY, lifecycle=hook("echo $HOSTNAME; sleep 0.5"))
    pods = runner.start_statefulset([statefulset(replicas=2, containers=[main])], "kv")
    order = runner.rolling_restart(pods)
    assert [p.name for p in order] == ["kv-1", "kv-0"]
    results = [p.prestop_results["main"] for p in order]
    assert [(r.exit_code, r.output, r.completed) for r in results] == [(0, "kv-1\n", True), (0, "kv-0\n", True)]
    assert results[0].started_at + results[0].duration < results[1].started_at  # one pod after the other
    assert all(p.ready and not p.terminating and p.stop_codes == {"main": 0} for p in pods)
    assert all(f"preStop: {p.name}\n" in p.logs() for p in pods)


REFUSED = {
    "httpGet": ({"preStop": {"httpGet": {"port": 8080}}}, "lifecycle.preStop.httpGet"),
    "sleep": ({"preStop": {"sleep": {"seconds": 5}}}, "lifecycle.preStop.sleep"),
    "tcpSocket": ({"preStop": {"tcpSocket": {"port": 8080}}}, "lifecycle.preStop.tcpSocket"),
    "postStart": ({"postStart": {"exec": {"command": ["true"]}}}, "lifecycle.postStart"),
    "stopSignal": ({"stopSignal": "SIGUSR1"}, "lifecycle.stopSignal"),
    "empty command": ({"preStop": {"exec": {"command": []}}}, "lifecycle.preStop.exec.command"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_hooks_the_runner_does_not_emulate_are_refused(case: str) -> None:
    lifecycle, where = REFUSED[case]
    objects = [statefulset(replicas=1, containers=[container(lifecycle=lifecycle)])]
    with pytest.raises(UnsupportedPodFeature, match=re.escape(where)):
        plan_pod(ObjectStore(objects), "kv", 0)


def test_an_init_container_hook_is_refused() -> None:
    objects = [statefulset(replicas=1)]
    objects[0]["spec"]["template"]["spec"]["initContainers"] = [
        container("init", command="true", lifecycle=hook("true"))
    ]
    with pytest.raises(UnsupportedPodFeature, match=re.escape("initContainers[0].lifecycle")):
        plan_pod(ObjectStore(objects), "kv", 0)
