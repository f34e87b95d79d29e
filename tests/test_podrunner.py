"""The pod runner itself: it must start rendered pods the way a kubelet would, refuse what it does
not emulate, and its proxy must inject the faults it claims. Real processes; needs root."""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import harness
import needs
import pytest
import valkey
from podrunner import ObjectStore, PodRunner, PodStartError, UnsupportedPodFeature, plan_pod
from podrunner.httpprobe import http_get
from podrunner.image import DEBIAN_EXPORTER, REDIS_EXPORTER_TAGS, resolve_image
from podrunner.pod import Pod
from podrunner.podspec import HttpGet
from podrunner.proxy import FaultProxy
from replies import info
from valkey_process import wait_for

from components.config.models import METRICS_PORT
from components.render import exporter, paths
from components.render.acl import EXPORTER_USER

pytestmark = needs.root

IMAGE = "valkey/valkey:8.1.8-alpine"
EXTERNAL = "sessions.region1.example.com"


# The pods run rendered with TLS off (harness.NO_TLS, the ``regions_without_tls`` fixture):
# test_default_render_needs_cert_manager shows the rest.


@pytest.fixture
def runner() -> Iterator[PodRunner]:
    with PodRunner() as r:  # closes (kills, unmounts, removes) also when the test fails
        yield r


def client(rendered: harness.Rendered, host: str, port: int, **kw: Any) -> valkey.Valkey:
    """The application's connection: the default user, password from the rendered Secret."""
    password = rendered.secret_data("sessions-credentials")["password"]
    return valkey.Valkey(host=host, port=port, password=password, socket_timeout=5, **kw)


def admin(rendered: harness.Rendered, host: str, port: int) -> valkey.Valkey:
    """The operator's connection (INFO, CONFIG, CLIENT KILL are denied to the default user)."""
    creds = rendered.secret_data("sessions-admin-credentials")
    return valkey.Valkey(host=host, port=port, username=creds["username"], password=creds["password"], socket_timeout=5)


def metrics(pod: Pod) -> dict[str, str]:
    """The exporter's /metrics, fetched as Prometheus would: from outside the pod, at its IP."""
    url = f"http://{pod.address}:{METRICS_PORT}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        body = response.read().decode()
    return dict(line.rsplit(" ", 1) for line in body.splitlines() if line and not line.startswith("#"))


# ----- the rendered sessions pod ------------------------------------------------------------------


def test_rendered_sessions_pod_runs_as_the_manifest_says(
    runner: PodRunner, regions_without_tls: harness.RenderedPair
) -> None:
    r1, _ = regions_without_tls
    pod = runner.start_pod(r1, "sessions", 0, region="region1")  # waits until every container is ready
    assert [c.name for c in pod.plan.containers] == ["valkey", "reloader", "exporter"]
    for container in pod.plan.containers:
        for kind in ("startup", "liveness", "readiness"):
            result = pod.probe(kind, container.name)
            assert result.success, (container.name, kind, result)
    # The exporter's probes are httpGet /health on its named port, answered over the pod IP.
    health = pod.probe("readiness", "exporter")
    assert (health.http_status, health.output) == (200, "ok")

    # valkey-server was started as `valkey-server /etc/valkey/valkey.conf` and read that file.
    assert pod.exec(["cat", "/etc/valkey/valkey.conf"]).stdout == r1.valkey_conf("sessions")
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

    # Both Valkey-image containers run as 999 and share the pod's network namespace.
    ping = ["sh", "-c", 'REDISCLI_AUTH="$(cat /etc/valkey/probe-password)" valkey-cli --user probe -p 6379 ping']
    for name in ("valkey", "reloader"):
        assert pod.exec(["id", "-u"], container=name).stdout.strip() == "999"
        assert pod.exec(ping, container=name).stdout.strip() == "PONG"
    assert all(p.startswith("NetworkPolicy ") for p in pod.not_enforced)  # listed, not enforced

    # The exporter: the image's uid 59000 (no passwd entry, as in the scratch image), fsGroup 1000 as
    # supplementary group (it reads the 0440 root:1000 password file through it), no capabilities.
    status = dict(line.split(":", 1) for line in pod.exec(["cat", "/proc/1/status"], "exporter").stdout.splitlines())
    assert status["Uid"].split() == ["59000"] * 4 and status["Gid"].split() == ["59000"] * 4
    assert status["Groups"].split() == ["1000"]
    assert int(status["CapEff"], 16) == 0 and status["NoNewPrivs"].strip() == "1"
    # Only its own file is projected: valkey.conf, the masterauth files and the other passwords are not there.
    assert pod.exec(["ls", "/etc/valkey-exporter"], "exporter").stdout.split() == ["password.json"]
    secret = r1.config_files("sessions")
    assert pod.exec(["cat", paths.EXPORTER_PASSWORD_FILE], "exporter").stdout == secret[paths.EXPORTER_PASSWORD_KEY]
    # The wrapper exec'd Debian's exporter as PID 1 with the rendered arguments minus the pinned-only ones.
    argv = pod.exec(["cat", "/proc/1/cmdline"], "exporter").stdout.split("\0")[:-1]
    sidecar = r1.container("sessions", "exporter")
    dropped = REDIS_EXPORTER_TAGS[sidecar["image"].rsplit(":", 1)[1]]
    assert argv == [DEBIAN_EXPORTER, *(a for a in sidecar["args"] if a not in dropped)]

    # It logged in as the metrics user with the rendered password file: INFO worked.
    scraped = metrics(pod)
    assert scraped["redis_up"] == "1"
    assert scraped["redis_connected_clients"] == "1"  # its own connection, the only one
    password = json.loads(secret[paths.EXPORTER_PASSWORD_KEY])["redis://127.0.0.1:6379"]
    with valkey.Valkey(host=pod.address, port=pod.port, username=EXPORTER_USER, password=password) as m:
        assert "redis_version" in m.info("server")


def test_reloader_wget_reaches_the_exporter(runner: PodRunner, regions_without_tls: harness.RenderedPair) -> None:
    """The reloader's `wget -q -O /dev/null http://127.0.0.1:9121/-/reload` (busybox in the alpine
    image, the host's GNU wget here) works in the pod, and fails on a refused connection."""
    r1, _ = regions_without_tls
    pod = runner.start_pod(r1, "sessions", 0)
    health = pod.exec(["wget", "-q", "-O", "-", f"http://127.0.0.1:{METRICS_PORT}/health"], "reloader")
    assert (health.returncode, health.stdout) == (0, "ok")
    # Debian's 1.45 has no /-/reload: it answers with its index page (200), so the reloader's call
    # succeeds there without reloading anything (see tests/test_rotation_live.py).
    reload = pod.exec(["wget", "-q", "-O", "-", exporter.RELOAD_URL], "reloader")
    assert reload.returncode == 0 and "<title>Redis Exporter 1.45" in reload.stdout
    refused = pod.exec(["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:1/"], "reloader")
    assert refused.returncode != 0


def test_exporter_stand_in_serves_the_rendered_tag_and_drops_exactly_what_debian_refuses(
    regions_without_tls: harness.RenderedPair,
) -> None:
    """The stand-in serves the image the program renders, as the uid the pod runs it as, and drops
    exactly the rendered flags Debian's 1.45 refuses (asked of the binary, not of our own list)."""
    sidecar = regions_without_tls[0].container("sessions", "exporter")
    image = resolve_image(sidecar["image"])  # UnsupportedPodFeature for a tag it does not stand in for
    context = sidecar["securityContext"]
    assert image.user == (context["runAsUser"], context["runAsGroup"])
    assert set(image.executables) == {"/redis_exporter"}

    def refused(flag: str) -> bool:
        done = subprocess.run(
            [DEBIAN_EXPORTER, flag, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
        return done.returncode != 0 and "flag provided but not defined" in done.stderr

    tag = sidecar["image"].rsplit(":", 1)[1]
    assert set(REDIS_EXPORTER_TAGS[tag]) == {flag for flag in sidecar["args"] if refused(flag)}
    with pytest.raises(UnsupportedPodFeature, match="only tags"):
        resolve_image("oliver006/redis_exporter:v1.93.0")
    with pytest.raises(UnsupportedPodFeature, match="only tags"):
        resolve_image("oliver006/redis_exporter:v1.92.1-alpine")


def test_default_render_needs_cert_manager(runner: PodRunner) -> None:
    """With TLS on (the stack files' default) the server certificate Secret comes from cert-manager:
    the pod fails like a kubelet's (the volume's Secret does not exist) and says why."""
    with pytest.raises(PodStartError, match=r"sessions-tls.*Certificate 'sessions-tls'"):
        runner.start_pod(harness.render("region1"), "sessions", 0)
    assert runner.pods == []


def test_restart_keeps_the_claim_and_delete_removes_it(
    runner: PodRunner, regions_without_tls: harness.RenderedPair
) -> None:
    r1, _ = regions_without_tls
    pod = runner.start_pod(r1, "sessions", 0)
    claim = pod.claims["data"]
    assert claim.name == "data-sessions-0"
    with client(r1, pod.address, pod.port) as c:
        c.set("graceful", "1")
    # SIGTERM with the rendered 60 s grace period: every container exits on its own, at once
    # (the reloader's shell traps TERM; as PID 1 it would otherwise wait out the grace period).
    # The exporter (Go, PID 1 of its container, no SIGTERM handler in 1.45) ends with status 2: the Go
    # runtime re-raises SIGTERM, which a PID-namespace init ignores, then exits 2. Still at once.
    started = time.monotonic()
    assert pod.stop() == {"valkey": 0, "reloader": 0, "exporter": 2}
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


WEB_SERVER = """
import http.server, time
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/slow":
            time.sleep(5)
        status = {"/ok": 200, "/missing": 404, "/moved": 302, "/away": 301}.get(self.path, 500)
        self.send_response(status)
        if self.path == "/moved":
            self.send_header("Location", "/missing")
        if self.path == "/away":
            self.send_header("Location", "http://elsewhere.invalid/missing")
        self.end_headers()
        self.wfile.write(self.headers.get("User-Agent", "").encode())
http.server.ThreadingHTTPServer(("", 8080), Handler).serve_forever()
"""


def test_http_get_probes(runner: PodRunner) -> None:
    """httpGet probes: GET from the node to the pod IP, port by name or number, 200-399 passes,
    same-host redirects followed, timeoutSeconds enforced."""
    objects = lab_objects()
    web = {
        "name": "web",
        "image": IMAGE,
        "command": ["python3", "-c", WEB_SERVER],  # the stand-in's /usr is the host's: python3 is there
        "ports": [{"name": "http", "containerPort": 8080.0}],
        "readinessProbe": {"httpGet": {"path": "/ok", "port": "http"}},
        "livenessProbe": {"httpGet": {"path": "/slow", "port": 8080.0}, "timeoutSeconds": 1.0},
        "startupProbe": {"httpGet": {"path": "/moved", "port": "8080"}},
    }
    _pod_spec(objects[0])["containers"].append(web)
    pod = runner.start_pod(objects, "lab", 0, wait_ready=None)
    wait_for(lambda: pod.probe("readiness", "web").success, what="web server up")

    ready = pod.probe("readiness", "web")
    assert (ready.success, ready.http_status, ready.output) == (True, 200, "kube-probe/1.32")
    startup = pod.probe("startup", "web")  # 302 to /missing, followed: the 404 decides
    assert (startup.success, startup.http_status) == (False, 404)
    assert "statuscode: 404" in startup.output
    started = time.monotonic()
    liveness = pod.probe("liveness", "web")
    assert liveness.timed_out and not liveness.success and 1.0 <= time.monotonic() - started < 3.0

    # A redirect to another host is not followed: the 3xx itself passes (the kubelet warns).
    away = http_get(pod.address, HttpGet("/away", 8080), 2.0)
    assert (away.success, away.status) == (True, 301)
    refused = http_get(pod.address, HttpGet("/ok", 8081), 2.0)
    assert not refused.success and refused.status is None and "refused" in refused.output


def test_update_volumes_swaps_secret_and_config_map_files_atomically(runner: PodRunner) -> None:
    """update_volumes: the kubelet's refresh of mounted Secrets/ConfigMaps in a running pod. A new
    timestamped dir, ``..data`` switched by rename, symlinks for added keys, removed keys gone; the
    container keeps running; environment variables keep their values."""
    pod = runner.start_pod(lab_objects(), "lab", 0, wait_ready=None)
    pid = pod.container_pid("main")
    old_data = pod.exec(["readlink", "/etc/secret/..data"]).stdout.strip()
    assert re.fullmatch(r"\.\.\d{4}_\d\d_\d\d_\d\d_\d\d_\d\d\.\w+", old_data)
    assert pod.update_volumes(lab_objects()) == {"settings": False, "secret": False}  # nothing changed
    assert pod.exec(["readlink", "/etc/secret/..data"]).stdout.strip() == old_data

    def rerendered(token: str, mode: str) -> list[dict[str, Any]]:
        objects = lab_objects()
        objects[1]["data"] = {"token": base64.b64encode(token.encode()).decode()}
        objects[1]["stringData"] = {"extra": "new key"}  # "user" removed, "extra" added
        objects[2]["data"]["mode"] = mode
        return objects

    # A reader in the container during 20 swaps never sees the file missing, empty or partial.
    results = []
    read_loop = ["sh", "-c", "for i in $(seq 400); do cat /etc/secret/token || echo MISSING; echo; done"]
    thread = threading.Thread(target=lambda: results.append(pod.exec(read_loop, timeout=60)))
    thread.start()
    for n in range(20):
        assert pod.update_volumes(rerendered(f"t{n}", "slow")) == {"settings": n == 0, "secret": True}
    thread.join()
    seen = results[0].stdout.splitlines()
    assert results[0].ok and len(seen) == 400
    assert set(seen) <= {"s3cr3t", *(f"t{n}" for n in range(20))}, set(seen)

    assert pod.exec(["cat", "/etc/secret/token"]).stdout == "t19"
    assert pod.exec(["ls", "/etc/secret"]).stdout.split() == ["extra", "token"]
    assert pod.exec(["cat", "/etc/settings/conf/mode.txt"]).stdout == "slow"
    new_data = pod.exec(["readlink", "/etc/secret/..data"]).stdout.strip()
    assert new_data != old_data
    # Only the current payload dir is left; same modes and fsGroup as when the pod started.
    assert pod.exec(["ls", "-A", "/etc/secret"]).stdout.split() == sorted([new_data, "..data", "extra", "token"])
    assert pod.exec(["stat", "-L", "-c", "%a %u %g", "/etc/secret/extra"]).stdout.split() == ["440", "0", "2000"]
    assert pod.exec(["readlink", "/etc/secret/extra"]).stdout.strip() == "..data/extra"

    # The container was not restarted; its environment is what it started with.
    assert pod.container_pid("main") == pid and pod.running
    assert "TOKEN=s3cr3t" in pod.exec(["cat", "/proc/1/environ"]).stdout.split("\0")

    # A changed pod template is a rollout, not a volume refresh.
    changed = rerendered("x", "slow")
    _container(changed[0])["env"] = []
    with pytest.raises(ValueError, match="pod template"):
        pod.update_volumes(changed)
    # Unless the pod waits for its turn in that rollout: its Secret is refreshed meanwhile, its
    # template stays the one it runs until it is replaced.
    pending = rerendered("y", "fast")
    _container(pending[0])["env"] = []
    assert pod.update_volumes(pending, rollout_pending=True) == {"settings": True, "secret": True}
    assert pod.exec(["cat", "/etc/settings/conf/mode.txt"]).stdout == "fast"
    assert pod.exec(["cat", "/etc/secret/token"]).stdout == "y"
    assert pod.container_pid("main") == pid
    with pytest.raises(ValueError, match="pod template"):
        pod.update_volumes(pending)


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
        "volumes[2].hostPath",
    ),
    "projected volume": (
        lambda m: _pod_spec(m)["volumes"].append({"name": "p", "projected": {"sources": []}}),
        "volumes[2].projected",
    ),
    "unknown container key": (lambda m: _container(m).update(fooBar=1), "containers[0].fooBar"),
    "lifecycle hook": (
        lambda m: _container(m).update(lifecycle={"postStart": {"exec": {"command": ["true"]}}}),
        "containers[0].lifecycle",
    ),
    "httpGet over HTTPS": (
        lambda m: _container(m).update(readinessProbe={"httpGet": {"port": 6379, "scheme": "HTTPS"}}),
        "readinessProbe.httpGet.scheme",
    ),
    "httpGet to another host": (
        lambda m: _container(m).update(readinessProbe={"httpGet": {"port": 6379, "host": "10.0.0.1"}}),
        "readinessProbe.httpGet.host",
    ),
    "httpGet headers": (
        lambda m: _container(m).update(
            readinessProbe={"httpGet": {"port": 6379, "httpHeaders": [{"name": "X", "value": "y"}]}}
        ),
        "readinessProbe.httpGet.httpHeaders",
    ),
    "httpGet unknown port name": (
        lambda m: _container(m).update(readinessProbe={"httpGet": {"port": "nope"}}),
        "readinessProbe.httpGet.port",
    ),
    "tcpSocket probe": (
        lambda m: _container(m).update(readinessProbe={"tcpSocket": {"port": 6379}}),
        "readinessProbe.tcpSocket",
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
    "other exporter tag": (
        lambda m: _pod_spec(m)["containers"][2].update(image="oliver006/redis_exporter:v1.45.0"),
        "image",
    ),
}


@pytest.mark.parametrize("case", sorted(UNSUPPORTED))
def test_unsupported_features_are_refused(regions_without_tls: harness.RenderedPair, case: str) -> None:
    change, where = UNSUPPORTED[case]
    manifests = regions_without_tls[0].manifests()
    change(next(m for m in manifests if m["kind"] == "StatefulSet" and m["metadata"]["name"] == "sessions"))
    with pytest.raises(UnsupportedPodFeature, match=re.escape(where)):
        plan_pod(ObjectStore(manifests), "sessions", 0)


def test_refused_before_anything_starts(runner: PodRunner, regions_without_tls: harness.RenderedPair) -> None:
    manifests = regions_without_tls[0].manifests()
    sts = next(m for m in manifests if m["kind"] == "StatefulSet" and m["metadata"]["name"] == "sessions")
    _pod_spec(sts)["volumes"].append({"name": "h", "hostPath": {"path": "/"}})
    with pytest.raises(UnsupportedPodFeature, match="hostPath"):
        runner.start_pod(manifests, "sessions", 0)
    assert runner.pods == [] and not list(runner.workdir.iterdir())


def test_rendered_pods_use_nothing_unsupported(regions_without_tls: harness.RenderedPair) -> None:
    """Every rendered StatefulSet of both regions can be planned; what is accepted without effect
    is listed (requests/limits and seccomp are not enforced here)."""
    for r in regions_without_tls:
        for name in r.objects("StatefulSet"):
            plan = plan_pod(ObjectStore(r.manifests()), name, 0)
            assert any("resources" in i for i in plan.ignored)


# ----- the proxy -------------------------------------------------------------------------------------


def _ping_rtt(c: valkey.Valkey) -> float:
    started = time.monotonic()
    assert c.ping()
    return time.monotonic() - started


def test_proxy_latency_cut_and_restore(runner: PodRunner, regions_without_tls: harness.RenderedPair) -> None:
    r1, _ = regions_without_tls
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


def test_proxy_blackhole_holds_traffic_until_restore(
    runner: PodRunner, regions_without_tls: harness.RenderedPair
) -> None:
    r1, _ = regions_without_tls
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


def test_region2_replicates_from_region1_through_its_external_name(
    runner: PodRunner, regions_without_tls: harness.RenderedPair
) -> None:
    r1, r2 = regions_without_tls
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
