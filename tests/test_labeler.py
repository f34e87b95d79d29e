"""labeler.sh (components/render/scripts/) runs as the role-label sidecar runs it, against real servers.

The script runs as ``sh labeler.sh`` (dash here, GNU tools) and once per test that says so as
``busybox sh labeler.sh`` with busybox applets (cat, wc, date, sleep) first on PATH, as in the
image (curlimages/curl: busybox ash and curl). curl is Debian's 7.88 in both cases. Valkey is
real, 8.1.8 and 9.1.2, reached over its unix socket with the ACL user the sidecar will have
(rules ``-@all +role``); the Kubernetes API is tests/podrunner/apiserver.py over HTTPS with a
throwaway CA, holding the one Pod, with Bearer tokens bound to Roles.

Valkey's ``REPLICAOF <host> <port>`` makes a node a replica of a host that need not resolve: it
keeps trying to connect, and ROLE names that host. That is all the labeler looks at.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import needs
import pytest
import valkey
from pki import make_server_pki
from podrunner.apiserver import MERGE_PATCH, ApiServer, Rule, ServiceAccount
from valkey_process import BUILDS, Server, every_build, free_port, stop_process, wait_for

from components.render import pod_scripts
from components.render.acl import ALL_KEYS_ALL_COMMANDS, AclUser, render_acl

SCRIPT = Path(pod_scripts.__file__).parent / "scripts" / "labeler.sh"
NS, POD = "cache", "sessions-0"
PATH = f"/api/v1/namespaces/{NS}/pods/{POD}"
LABEL = "valkey.io/role"
LOCAL_DOMAIN = ".sessions-headless.cache.svc.cluster.local"
PEER = f"sessions-1{LOCAL_DOMAIN}"
"""Another member of this group: its replicas are labelled replica."""
REMOTE_HEAD = "sessions.cache.svc.region1.example.com"
"""The other region's endpoint: region 2's head replicates from it and is labelled primary."""
LABELER_USER, LABELER_RULES = "labeler", "-@all +role"
ADMIN = "admin-password-of-these-tests"
PERIOD = "0.2"
"""PERIOD_SECONDS where a test is not about the default period (1 s)."""
CURL_DIR = Path("/usr/bin")
BUSYBOX_APPLETS = ("cat", "wc", "date", "sleep")
"""The external commands labeler.sh runs besides curl; with busybox they are its applets."""
SHELLS = {"dash": ["sh"], "busybox": ["busybox", "sh"]}
pytestmark = needs.debian({"curl": ["curl"], "openssl": ["openssl"]})

with_busybox = needs.debian({"busybox": ["busybox"]})


def changed(old: str, new: str) -> str:
    """The line the labeler logs when it has changed the label."""
    return f"labeler: role label {old} -> {new}"


class RecordingApiServer(ApiServer):
    """The stand-in, also keeping each request's body: what a patch asked for, not only its outcome."""

    def __init__(self, tls: tuple[Path, Path]):
        super().__init__(tls=tls)
        self.bodies: list[tuple[str, str | None, bytes]] = []

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[str | None, Any]:
        self.bodies.append((method, headers.get("content-type"), body))
        return super().handle(method, path, headers, body)


@dataclass
class Setup:
    """One pod's files (password, token, namespace, CA), its Valkey's socket path and the API."""

    root: Path
    api: RecordingApiServer
    ca: Path
    password: str
    token: str
    socket: Path
    busybox_bin: Path
    labelers: list[Labeler] = field(default_factory=list)

    def write(self, name: str, text: str) -> Path:
        """Replace a mounted file as the kubelet does: a new file renamed over the old one."""
        path, new = self.root / name, self.root / f".{name}.new"
        new.write_text(text)
        new.replace(path)
        return path

    def env(self, **overrides: str) -> dict[str, str]:
        host, port = self.api.url.removeprefix("https://").rsplit(":", 1)
        env = {
            "PATH": f"{CURL_DIR}:{os.environ['PATH']}",
            "VALKEY_SOCKET": str(self.socket),
            "LABELER_USER": LABELER_USER,
            "LABELER_PASSWORD_FILE": str(self.root / "password"),
            "POD_NAME": POD,
            "POD_NAMESPACE_FILE": str(self.root / "namespace"),
            "TOKEN_FILE": str(self.root / "token"),
            "API_CA_FILE": str(self.ca),
            "KUBERNETES_SERVICE_HOST": host,
            "KUBERNETES_SERVICE_PORT": port,
            "ROLE_LABEL": LABEL,
            "LOCAL_DOMAIN": LOCAL_DOMAIN,
            "PERIOD_SECONDS": PERIOD,
        }
        return {**env, **overrides}

    def start(self, shell: str = "dash", prefix: tuple[str, ...] = (), **overrides: str) -> Labeler:
        """labeler.sh with ``env(**overrides)``; an override of "" leaves that variable out."""
        env = {name: value for name, value in self.env(**overrides).items() if value != ""}
        if shell == "busybox":
            env["PATH"] = f"{self.busybox_bin}:{env['PATH']}"
        log = self.root / f"labeler-{len(self.labelers)}.log"
        self.labelers.append(Labeler(log, SHELLS[shell], env, prefix))
        return self.labelers[-1]

    def label(self) -> str | None:
        pod = self.api.pod(NS, POD)
        assert pod is not None
        value: str | None = pod["metadata"].get("labels", {}).get(LABEL)
        return value

    def wait_label(self, value: str, timeout: float, labeler: Labeler) -> None:
        try:
            wait_for(lambda: self.label() == value, timeout, f"label {value}")
        except TimeoutError as error:
            raise TimeoutError(f"{error}: label {self.label()!r}; log: {labeler.lines()}") from None


class Labeler:
    """labeler.sh running as the sidecar does, its output in a log file."""

    def __init__(self, log: Path, shell: list[str], env: dict[str, str], prefix: tuple[str, ...] = ()):
        self.log, self.traced = log, bool(prefix)
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [*prefix, *shell, str(SCRIPT)], env=env, stdout=out, stderr=subprocess.STDOUT
            )

    def output(self) -> str:
        return self.log.read_text()

    def lines(self) -> list[str]:
        return self.output().splitlines()

    def assert_lines(self, expected: list[str], start: int = 0) -> None:
        """The log from line ``start`` on is ``expected``, once the script has written it (it logs a
        change after the PATCH's reply, so possibly after the test has seen the label)."""
        with contextlib.suppress(TimeoutError):
            wait_for(lambda: self.lines()[start:] == expected, 1, "the log")
        assert self.lines()[start:] == expected

    def stop(self) -> None:
        """SIGTERM to the script: under strace, to its child (strace would detach and leave it running)."""
        if self.traced and self.process.poll() is None:
            pid = self.process.pid
            for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
                os.kill(int(child), signal.SIGTERM)
        stop_process(self.process)


def pod(labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": POD,
            "namespace": NS,
            "labels": {"app.kubernetes.io/name": "valkey", **(labels or {})},
            "annotations": {"valkey.io/config-checksum": "abc"},
        },
        "spec": {"containers": [{"name": "valkey", "image": "valkey/valkey:8.1"}]},
        "status": {"phase": "Running", "podIP": "10.213.0.2"},
    }


LABELER = ServiceAccount(NS, "labeler", (Rule(("get", "patch"), resource_names=(POD,)),))
OTHER_POD = ServiceAccount(NS, "other-pod", (Rule(("get", "patch"), resource_names=("sessions-1",)),))


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(CA certificate, server key, server certificate): made once, openssl takes a while."""
    return make_server_pki(tmp_path_factory.mktemp("apiserver-pki"), "apiserver-ca")


@pytest.fixture(scope="module")
def busybox_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory of links to busybox for the applets the script runs."""
    directory = tmp_path_factory.mktemp("busybox-bin")
    busybox = shutil.which("busybox")
    if busybox is not None:
        for applet in BUSYBOX_APPLETS:
            (directory / applet).symlink_to(busybox)
    return directory


@pytest.fixture
def setup(tls: tuple[Path, Path, Path], busybox_bin: Path, tmp_path: Path) -> Iterator[Setup]:
    ca, key, cert = tls
    # A short directory for the socket: a unix socket's path is limited to 107 bytes.
    socket_dir = Path(tempfile.mkdtemp(prefix="labeler-", dir="/tmp"))
    # Characters that would break an inline command (space, quotes) or a shell (dollar, backslash).
    password = f'labeler "pw" $HOME \\ {secrets.token_hex(8)}'
    token = f"eyJhbGciOiJSUzI1NiJ9.{secrets.token_urlsafe(32)}.{secrets.token_urlsafe(16)}"
    api = RecordingApiServer(tls=(key, cert))
    api.add_token(token, LABELER)
    api.put_pod(pod())
    s = Setup(tmp_path, api, ca, password, token, socket_dir / "valkey.sock", busybox_bin)
    s.write("password", password)
    s.write("token", token)
    s.write("namespace", NS)
    try:
        yield s
    finally:
        for labeler in s.labelers:
            labeler.stop()
        api.close()
        shutil.rmtree(socket_dir, ignore_errors=True)


@pytest.fixture
def valkeys(setup: Setup) -> Iterator[Callable[..., Server]]:
    """Start a Valkey of ``build`` on a TCP port (the test's own client) and ``setup.socket``."""
    servers: list[Server] = []

    def start(build: str = "9.1.2") -> Server:
        directory = setup.root / f"valkey-{len(servers)}"
        (directory / "data").mkdir(parents=True)
        users = [
            AclUser("default", (ADMIN,), ALL_KEYS_ALL_COMMANDS),
            AclUser(LABELER_USER, (setup.password,), LABELER_RULES),
            AclUser("no-role", (setup.password,), "-@all"),
        ]
        (directory / "users.acl").write_text(render_acl(users))
        port = free_port()
        (directory / "valkey.conf").write_text(
            f"port {port}\nbind 127.0.0.1\nunixsocket {setup.socket}\nunixsocketperm 700\n"
            f'aclfile "{directory / "users.acl"}"\ndir "{directory / "data"}"\nsave ""\n'
        )
        servers.append(Server(directory / "valkey.conf", port, ADMIN, binary=BUILDS[build]))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


# --- what the label says -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "shell"),
    [("8.1.8", "dash"), ("9.1.2", "dash"), pytest.param("9.1.2", "busybox", marks=with_busybox)],
    ids=["valkey-8.1.8-dash", "valkey-9.1.2-dash", "valkey-9.1.2-busybox"],
)
def test_the_label_follows_the_role(setup: Setup, valkeys: Callable[..., Server], build: str, shell: str) -> None:
    """With the default period (1 s): a master is primary; a replica of a group member, replica; a
    replica of a host outside the group (region 2's head), primary; a fenced node, replica; no
    server, unknown."""
    server = valkeys(build)
    began = time.monotonic()
    labeler = setup.start(shell, PERIOD_SECONDS="")
    setup.wait_label("primary", 2, labeler)
    assert time.monotonic() - began < 2
    admin = server.client()
    admin.replicaof(PEER, 6379)
    setup.wait_label("replica", 2.5, labeler)
    admin.replicaof(REMOTE_HEAD, 6379)
    setup.wait_label("primary", 2.5, labeler)
    # Fenced (render/scripts/fence.sh): a replica of a name under .invalid is nobody's head.
    admin.replicaof("fenced.invalid", 6379)
    setup.wait_label("replica", 2.5, labeler)
    server.stop()
    setup.wait_label("unknown", 2.5, labeler)
    assert labeler.process.poll() is None
    labeler.assert_lines(
        [
            "labeler: started; role label is (none)",
            changed("(none)", "primary"),
            changed("primary", "replica"),
            changed("replica", "primary"),
            changed("primary", "replica"),
            f"labeler: valkey: no socket at {setup.socket} (Valkey not started?)",
            changed("replica", "unknown"),
        ]
    )


def test_patches_are_merge_patches_of_the_one_label(setup: Setup, valkeys: Callable[..., Server]) -> None:
    before = setup.api.pod(NS, POD)
    assert before is not None
    server = valkeys()
    labeler = setup.start()
    setup.wait_label("primary", 2, labeler)
    server.client().replicaof(PEER, 6379)
    setup.wait_label("replica", 2, labeler)
    after = setup.api.pod(NS, POD)
    assert after is not None
    # Nothing else of the pod moved: not its other labels, not its annotations.
    assert after["metadata"].pop("labels") == {**before["metadata"].pop("labels"), LABEL: "replica"}
    after["metadata"].pop("resourceVersion"), before["metadata"].pop("resourceVersion")
    assert after == before
    # One GET at start, then PATCHes of that label alone, as merge patches.
    requests = setup.api.requests
    assert (requests[0].method, requests[0].path, requests[0].status) == ("GET", PATH, 200)
    assert {(r.method, r.path, r.content_type, r.status) for r in requests[1:]} == {("PATCH", PATH, MERGE_PATCH, 200)}
    patches = [json.loads(body) for method, _, body in setup.api.bodies if method == "PATCH"]
    assert patches[0] == {"metadata": {"labels": {LABEL: "primary"}}}
    assert patches[-1] == {"metadata": {"labels": {LABEL: "replica"}}}
    assert all(patch == {"metadata": {"labels": {LABEL: patch["metadata"]["labels"][LABEL]}}} for patch in patches)


def test_the_label_found_at_start_is_kept_and_an_edited_one_put_back(
    setup: Setup, valkeys: Callable[..., Server]
) -> None:
    """A pod that already has the right label logs no change; someone's edit is undone within
    REAPPLY_SECONDS (1 s here, 30 s by default), without a line in the log."""
    setup.api.put_pod(pod({LABEL: "primary"}))
    valkeys()
    labeler = setup.start(REAPPLY_SECONDS="1")
    wait_for(lambda: len(setup.api.requests) >= 2, 2, "the GET and a PATCH")
    labeler.assert_lines(["labeler: started; role label is primary"])
    setup.api.put_pod(pod({LABEL: "replica"}))
    setup.wait_label("primary", 2, labeler)
    labeler.assert_lines(["labeler: started; role label is primary"])


# --- Valkey: its ACL user, its password, its absence ----------------------------------------------


@every_build
def test_role_needs_exactly_the_role_command(setup: Setup, valkeys: Callable[..., Server], build: str) -> None:
    """ROLE under ``-@all +role`` answers (AUTH and QUIT need no permission); without +role it is
    refused with NOPERM, which the labeler logs, labelling the pod unknown. The user can do nothing else."""
    server = valkeys(build)
    with valkey.Valkey(unix_socket_path=str(setup.socket), username=LABELER_USER, password=setup.password) as client:
        assert client.execute_command("ROLE")[0] == b"master"
        for command in (("PING",), ("INFO",), ("GET", "k"), ("CONFIG", "GET", "masterauth"), ("CLIENT", "LIST")):
            with pytest.raises(valkey.exceptions.NoPermissionError):
                client.execute_command(*command)
    refused = setup.start(LABELER_USER="no-role")
    setup.wait_label("unknown", 2, refused)
    refused.assert_lines(
        start=1,
        expected=[
            "labeler: valkey: ROLE refused: NOPERM User no-role has no permissions to run the 'role' command",
            changed("(none)", "unknown"),
        ],
    )
    refused.stop()
    labeler = setup.start()
    setup.wait_label("primary", 2, labeler)
    assert server.process.poll() is None


def test_a_wrong_password_is_unknown_until_the_file_is_rotated(setup: Setup, valkeys: Callable[..., Server]) -> None:
    valkeys()
    setup.write("password", "the previous password")
    labeler = setup.start()
    setup.wait_label("unknown", 2, labeler)
    # The kubelet swaps the Secret's file; the next period reads it.
    setup.write("password", setup.password)
    setup.wait_label("primary", 2, labeler)
    labeler.assert_lines(
        [
            "labeler: started; role label is (none)",
            "labeler: valkey: AUTH refused: WRONGPASS invalid username-password pair or user is disabled.",
            changed("(none)", "unknown"),
            changed("unknown", "primary"),
        ]
    )
    assert "previous password" not in labeler.output()


def test_a_server_not_started_yet_or_gone_is_unknown(setup: Setup, valkeys: Callable[..., Server]) -> None:
    """Before Valkey starts there is no socket; a server killed leaves its socket behind: nobody answers."""
    labeler = setup.start()
    setup.wait_label("unknown", 2, labeler)
    server = valkeys()
    setup.wait_label("primary", 2, labeler)
    server.process.kill()
    server.process.wait()
    assert setup.socket.is_socket()
    setup.wait_label("unknown", 2, labeler)
    labeler.assert_lines(start=5, expected=[changed("primary", "unknown")])
    lines = labeler.lines()
    assert lines[:4] == [
        "labeler: started; role label is (none)",
        f"labeler: valkey: no socket at {setup.socket} (Valkey not started?)",
        changed("(none)", "unknown"),
        changed("unknown", "primary"),
    ]
    assert lines[4].startswith("labeler: valkey: no reply from Valkey (curl exit 7: curl: (7) "), lines
    assert labeler.process.poll() is None


def test_a_loading_server_is_labelled_by_its_role(setup: Setup, valkeys: Callable[..., Server]) -> None:
    """Measured: AUTH and ROLE answer while Valkey loads its dataset, PING answers LOADING. With
    ``-@all +role`` the labeler cannot tell loading apart (it would need +ping); the readiness
    probe keeps a loading pod out of the Service's endpoints meanwhile."""
    server = valkeys()
    pipe = server.client().pipeline(transaction=False)
    for i in range(20_000):
        pipe.set(f"session:{i}", "x" * 64)
    pipe.execute()
    server.client().save()
    server.stop()
    server.config.write_text(
        server.config.read_text() + "key-load-delay 200\nloading-process-events-interval-bytes 1024\n"
    )
    with (setup.root / "loading.log").open("wb") as log:
        loading = subprocess.Popen([str(BUILDS["9.1.2"]), str(server.config)], stdout=log, stderr=log)
    try:
        with valkey.Valkey(unix_socket_path=str(setup.socket), password=ADMIN) as admin:

            def answers_loading() -> bool:
                try:
                    admin.ping()
                except valkey.exceptions.BusyLoadingError:
                    return True
                return False

            wait_for(lambda: setup.socket.exists() and answers_loading(), 5, "the server answering LOADING")
            labeler = setup.start()
            setup.wait_label("primary", 2, labeler)
            assert answers_loading()
            labeler.assert_lines(["labeler: started; role label is (none)", changed("(none)", "primary")])
    finally:
        stop_process(loading, timeout=20)


# --- the Kubernetes API ---------------------------------------------------------------------------


def test_a_forbidden_patch_is_logged_and_retried(setup: Setup, valkeys: Callable[..., Server]) -> None:
    """A token whose Role names another pod: 403 on the GET and on every PATCH, logged once, the
    label untouched, the script still running; a rotated token file is read at the next request."""
    other = "other-pod-token"
    setup.api.add_token(other, OTHER_POD)
    setup.write("token", other)
    valkeys()
    labeler = setup.start()
    wait_for(lambda: sum(r.method == "PATCH" for r in setup.api.requests) >= 4, 3, "4 PATCHes")
    assert labeler.process.poll() is None
    assert setup.label() is None
    assert {(r.method, r.status, r.user) for r in setup.api.requests} == {
        ("GET", 403, OTHER_POD.user),
        ("PATCH", 403, OTHER_POD.user),
    }
    forbidden = (
        f'HTTP 403 Forbidden: pods "{POD}" is forbidden: User "{OTHER_POD.user}" cannot {{verb}} resource "pods" '
        f'in API group "" in the namespace "{NS}"'
    )
    labeler.assert_lines(
        [
            f"labeler: GET pod failed, the label will be set anyway: {forbidden.format(verb='get')}",
            "labeler: started; role label is (none)",
            f"labeler: PATCH to primary failed, will retry: {forbidden.format(verb='patch')}",
        ]
    )
    setup.write("token", setup.token)
    setup.wait_label("primary", 2, labeler)
    labeler.assert_lines(start=3, expected=[changed("(none)", "primary")])


# --- secrets, signals -----------------------------------------------------------------------------


class ProcScanner:
    """Reads every process's command line and environment over and over while a test runs: what
    ``ps`` and anyone with /proc could see. Sampling: it also keeps the curl command lines it
    caught, to show it does catch the script's short-lived processes."""

    def __init__(self, needles: list[str]):
        self.needles = [needle.encode() for needle in needles]
        self.found: list[tuple[str, str, bytes]] = []
        self.curls: set[bytes] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid in (name for name in os.listdir("/proc") if name.isdigit()):
                for kind in ("cmdline", "environ"):
                    try:
                        data = Path(f"/proc/{pid}/{kind}").read_bytes()
                    except OSError:
                        continue
                    self.found += [(pid, kind, data) for needle in self.needles if needle in data]
                    if kind == "cmdline" and data.startswith(b"curl\0"):
                        self.curls.add(data)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def test_no_secret_in_any_command_line_environment_or_log(setup: Setup, valkeys: Callable[..., Server]) -> None:
    server = valkeys()
    scanner = ProcScanner([setup.password, setup.token])
    try:
        labeler = setup.start()
        setup.wait_label("primary", 2, labeler)
        server.client().replicaof(PEER, 6379)
        setup.wait_label("replica", 2, labeler)
        setup.write("password", "a wrong one")  # AUTH refused: the reason is logged
        setup.wait_label("unknown", 2, labeler)
    finally:
        scanner.stop()
    assert scanner.found == []
    caught = b"\n".join(scanner.curls)
    assert b"--unix-socket" in caught and b"-K\0-\0" in caught, scanner.curls
    assert setup.password not in labeler.output() and setup.token not in labeler.output()
    assert "AUTH refused: WRONGPASS" in labeler.output()


@needs.debian({"strace": ["strace"]})
def test_no_secret_in_any_exec(setup: Setup, valkeys: Callable[..., Server]) -> None:
    """Every execve of the script and its children, arguments and environment, traced: no sampling."""
    valkeys()
    trace = setup.root / "execve.trace"
    prefix = ("strace", "-f", "-qq", "-v", "-s", "100000", "-e", "trace=execve", "-o", str(trace))
    labeler = setup.start(prefix=prefix)
    setup.wait_label("primary", 3, labeler)
    time.sleep(0.5)
    labeler.stop()
    traced = trace.read_text()
    assert traced.count("execve(") > 10 and '"curl", "-sS"' in traced
    # strace escapes quotes and backslashes: look for the password's random part, as it prints it.
    assert setup.password.split()[-1] not in traced and setup.token not in traced


class SilentSocket:
    """A unix socket that accepts and never answers: Valkey blocked, curl waiting out its --max-time."""

    def __init__(self, path: Path):
        self.server = socket.socket(socket.AF_UNIX)
        self.server.bind(str(path))
        self.server.listen(8)
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                self.held.append(self.server.accept()[0])
            except OSError:
                return

    def close(self) -> None:
        self.server.close()
        for connection in self.held:
            connection.close()


@pytest.mark.parametrize("shell", ["dash", pytest.param("busybox", marks=with_busybox)])
def test_sigterm_ends_it_within_a_second(setup: Setup, valkeys: Callable[..., Server], shell: str) -> None:
    """Between two periods (in its sleep), and while its curl waits on a Valkey that does not answer."""
    valkeys()
    idle = setup.start(shell, PERIOD_SECONDS="")
    setup.wait_label("primary", 2, idle)
    time.sleep(0.3)
    silent = SilentSocket(setup.root / "silent.sock")
    try:
        busy = setup.start(shell, VALKEY_SOCKET=str(setup.root / "silent.sock"))
        wait_for(lambda: silent.held, 2, "curl connected to the silent socket")
        time.sleep(0.2)
        for labeler in (idle, busy):
            began = time.monotonic()
            labeler.process.send_signal(signal.SIGTERM)
            assert labeler.process.wait(2) == 0
            assert time.monotonic() - began < 1
    finally:
        silent.close()
