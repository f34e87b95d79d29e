"""The cut-over of a live-replication migration (ops/cutover.py), on real servers: a Redis 7.0
source with a password (migration_support.start_source) and, as the group's head, a plain Valkey of
each build replicating it with that password. Under writes, ``promote`` loses no acknowledged
write and leaves the source fenced with its data; each bad input stops it with a message that says
what to do, and nothing changed. What a head logs for each broken link, and which RDB versions
each build loads, is measured here too: the check's messages quote it.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import valkey
from migration_support import SOURCE_PASSWORD, Writers, fill, start_source
from replies import info, sync
from valkey_process import BUILDS, Server, every_build, free_port, wait_for

from ops.cutover import LINK_DOWN_CAUSES, stream_refusal

ROOT = Path(__file__).resolve().parents[1]
ADMIN = "admin-password-of-the-cutover-tests"
CLIENT = "client-password-of-the-cutover-tests"
MIGRATOR = "migrator-password-of-the-cutover-tests"
one_build = pytest.mark.parametrize("build", ["8.1.8"], ids=["valkey-8.1.8"])
"""The tool's own logic (its checks and put-backs), the same against either build: run once. What
the builds themselves do (the head's log lines, the promotion under writes) runs on both."""
FAST_SYNC = "repl-diskless-sync-delay 0"
"""Redis 7.0 waits 5 s before a diskless full sync by default."""


def start_head(directory: Path, build: str, upstream: int | None, *extra: str) -> Server:
    """A plain Valkey of ``build`` replicating 127.0.0.1:``upstream`` with the source's password (as
    the head does with the migration's credentials Secret); users ``admin`` (every command),
    ``replication`` (its members' login) and the default user as the applications' (``CLIENT``)."""
    directory.mkdir(parents=True)
    port = free_port()
    lines = [
        f"port {port}",
        "bind 127.0.0.1",
        f"dir {directory}",
        'save ""',
        "appendonly no",
        FAST_SYNC,
        f"user default on >{CLIENT} ~* &* +@all -@dangerous",
        f"user admin on >{ADMIN} ~* &* +@all",
        "user replication on >replication-password -@all +psync +replconf +ping",
        *((f"replicaof 127.0.0.1 {upstream}", f"masterauth {SOURCE_PASSWORD}") if upstream else ()),
        *extra,
    ]
    (directory / "valkey.conf").write_text("\n".join(lines) + "\n")
    return Server(directory / "valkey.conf", port, CLIENT, binary=BUILDS[build])


def admin(head: Server) -> valkey.Valkey:
    return head.client("admin", ADMIN)


def source_client(source: Server) -> valkey.Valkey:
    return valkey.Valkey(port=source.port, password=SOURCE_PASSWORD, socket_timeout=5, decode_responses=True)


def linked(head: Server) -> bool:
    return bool(info(admin(head), "replication").get("master_link_status") == "up")


def cutover(
    action: str, source: int, target: int | None, *args: str, env: dict[str, str] | None = None
) -> tuple[int, str]:
    """``python -m ops.cutover`` as an operator runs it, logins in the environment; its exit status
    and output, checked to hold no password. ``target`` None: no --target (the preflight)."""
    logins = {"SOURCE_PASSWORD": SOURCE_PASSWORD, "TARGET_PASSWORD": ADMIN, **(env or {})}
    command = [sys.executable, "-m", "ops.cutover", action, "--source", f"127.0.0.1:{source}"]
    if target is not None:
        command += ["--target", f"127.0.0.1:{target}"]
    done = subprocess.run(
        [*command, *args],
        cwd=ROOT,
        env={**os.environ, **logins},
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = done.stdout + done.stderr
    for password in {*logins.values(), SOURCE_PASSWORD, ADMIN, MIGRATOR}:
        assert password not in output, "a password in the tool's output"
    return done.returncode, output


def unchanged(source: Server, head: Server) -> None:
    """Nothing changed: the source a primary that takes writes at once (not paused), the head its
    replica with the link up."""
    s = source_client(source)
    assert info(s, "replication")["role"] == "master"
    begun = time.monotonic()
    assert s.set("after-the-refusal", "1")
    assert time.monotonic() - begun < 0.5, "the source is still paused"
    assert info(admin(head), "replication")["role"] == "slave"
    wait_for(lambda: linked(head), 10, "the head linked")


class Valve:
    """A TCP relay from a port to the source that delays what the source sends by ``delay_s``, as
    a network between the source and the cluster does, or holds it back: the head's link then stays
    up (for repl-timeout) while its offset stands still, as on a congested network."""

    def __init__(self, upstream: int) -> None:
        self.held = threading.Event()
        self.delay_s = 0.0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.upstream = upstream
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self.listener.accept()
            except OSError:
                return  # closed
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream))
            except OSError:
                downstream.close()  # the source is gone: so is the link
                continue
            threading.Thread(target=self._pump, args=(downstream, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, downstream, True), daemon=True).start()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept
        self.listener.close()

    def _pump(self, reader: socket.socket, writer: socket.socket, holdable: bool) -> None:
        try:
            while data := reader.recv(65536):
                while holdable and self.held.is_set():
                    time.sleep(0.01)
                if holdable and self.delay_s:
                    time.sleep(self.delay_s)
                writer.sendall(data)
        except OSError:
            pass  # the other direction closed both
        finally:
            # Either end gone: close the other too, and wake the other direction's recv.
            for end in (reader, writer):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)
                end.close()


@dataclass
class Pair:
    source: Server
    head: Server


@pytest.fixture
def pair(tmp_path: Path, build: str) -> Iterator[Pair]:
    source = start_source(tmp_path / "source", FAST_SYNC)
    head = start_head(tmp_path / "head", build, source.port)
    try:
        wait_for(lambda: linked(head), 20, "the head linked to the source")
        yield Pair(source, head)
    finally:
        source.stop()
        head.stop()


@every_build
def test_promote_under_writes_loses_no_acknowledged_write_and_fences_the_source(tmp_path: Path, build: str) -> None:
    source = start_source(tmp_path / "source", FAST_SYNC)
    valve = Valve(source.port)
    head = start_head(tmp_path / "head", build, valve.port)
    writers = Writers(source.port, SOURCE_PASSWORD)
    try:
        keys = fill(source)
        wait_for(lambda: linked(head), 20, "the head linked")
        valve.delay_s = 0.02  # the head lags behind the source, as across a network
        status, output = cutover("check", source.port, head.port)
        assert status == 0, output
        assert "Redis 7.0.15, a primary" in output and "link up, lag" in output, output
        writers.start()
        wait_for(lambda: len(writers.acknowledged) > 200, 20, "the writers under way")
        status, output = cutover("promote", source.port, head.port, "--pause-timeout", "10")
        time.sleep(0.3)  # writes against the fenced source meanwhile: each must fail
        writers.stop()
        assert status == 0, output
        pause = float(re.findall(r"writes paused ([\d.]+)s", output)[0])
        print(f"\nDRILL cutover valkey-{build}: {keys} keys, {len(writers.acknowledged)} acknowledged writes, "
              f"link delayed 20 ms, write pause {pause:.3f}s (timeout 10s)\n{output}")  # fmt: skip
        assert pause < 10
        assert "REPLICAOF NO ONE, then CONFIG REWRITE, on the source" in output, output
        t = admin(head)
        assert info(t, "replication")["role"] == "master"
        got = sync(t.mget(list(writers.acknowledged)))
        missing = [k for k, v in zip(writers.acknowledged, got, strict=True) if v != writers.acknowledged[k]]
        assert missing == [], f"{len(missing)} acknowledged writes missing, e.g. {missing[:3]}"
        assert t.get("counter") == str(writers.counter)
        # The writes that waited in the pause, and every one after it, got READONLY: none was lost silently.
        assert writers.errors and all("ReadOnlyError" in e for e in writers.errors), writers.errors[:3]
        s = source_client(source)
        replication = info(s, "replication")
        assert (replication["role"], replication["master_host"]) == ("slave", "fenced.invalid")
        with pytest.raises(valkey.ReadOnlyError):
            s.set("after-the-cut-over", "1")
        assert counts(s) == counts(t), "the fenced source keeps its data"
        # The fence is in its config file: a restart keeps it a replica of the name.
        assert f"replicaof fenced.invalid {source.port}" in (tmp_path / "source" / "redis.conf").read_text()
        assert "stays fenced across a restart" in output, output
    finally:
        if writers._thread is not None and writers._thread.is_alive():
            writers.stop()
        source.stop()
        head.stop()
        valve.close()


def counts(client: valkey.Valkey) -> dict[str, tuple[int, int]]:
    """Keys and keys with a TTL per database (avg_ttl is a sampled estimate)."""
    return {db: (fields["keys"], fields["expires"]) for db, fields in info(client, "keyspace").items()}


@one_build
def test_an_unreachable_source_is_named_and_nothing_changes(pair: Pair) -> None:
    status, output = cutover("promote", free_port(), pair.head.port)
    assert status == 1 and "cannot reach the source" in output and "NetworkPolicy" in output, output
    unchanged(pair.source, pair.head)


@one_build
def test_a_wrong_source_password_names_the_secret_keys_and_nothing_changes(pair: Pair) -> None:
    status, output = cutover(
        "promote", pair.source.port, pair.head.port, env={"SOURCE_PASSWORD": "a-wrong-source-password"}
    )
    assert status == 1 and "refused the login" in output and "keys username and password" in output, output
    unchanged(pair.source, pair.head)


@one_build
def test_a_target_that_is_no_replica_is_refused(pair: Pair, tmp_path: Path, build: str) -> None:
    standalone = start_head(tmp_path / "standalone", build, None)
    try:
        status, output = cutover("promote", pair.source.port, standalone.port)
        assert status == 1 and "is not a replica (role master)" in output, output
        assert info(admin(standalone), "replication")["role"] == "master"
        unchanged(pair.source, pair.head)
    finally:
        standalone.stop()


@one_build
def test_a_head_of_another_server_is_told_apart_by_its_replication_id(pair: Pair, tmp_path: Path) -> None:
    other = start_source(tmp_path / "other", FAST_SYNC)
    try:
        status, output = cutover("promote", other.port, pair.head.port)
        assert status == 1 and "another server" in output and "another replication ID" in output, output
        unchanged(other, pair.head)
        unchanged(pair.source, pair.head)
    finally:
        other.stop()


@every_build
def test_a_source_without_psync_is_sent_to_the_keyspace_copy(tmp_path: Path, build: str) -> None:
    source = start_source(tmp_path / "source", FAST_SYNC, 'rename-command PSYNC ""', 'rename-command SYNC ""')
    head = start_head(tmp_path / "head", build, source.port)
    try:
        # What the head logs (measured on both builds): the phrase the link-down message quotes.
        wait_for(lambda: "Primary does not support PSYNC" in head.log.read_text(), 10, "the head's complaint")
        assert any(line == "Primary does not support PSYNC" for line, _ in LINK_DOWN_CAUSES)
        status, output = cutover("check", source.port, head.port)
        assert status == 1 and "refuses PSYNC and SYNC" in output and "use the keyspace copy" in output, output
        assert info(source_client(source), "replication")["role"] == "master"
    finally:
        source.stop()
        head.stop()


def test_the_preflight_checks_the_source_alone_before_the_migration_is_configured(tmp_path: Path) -> None:
    good = start_source(tmp_path / "good", FAST_SYNC)
    refusing = start_source(tmp_path / "refusing", FAST_SYNC, 'rename-command PSYNC ""', 'rename-command SYNC ""')
    try:
        status, output = cutover("check", good.port, None, "--valkey-version", "8.1.8")
        assert status == 0 and "Redis 7.0.15, a primary" in output and "the preflight passed" in output, output
        # The tests' source keeps nothing across a restart (save "", no AOF): said, not refused.
        assert "persists nothing" in output, output
        status, output = cutover("check", refusing.port, None, "--valkey-version", "9.1.2")
        assert status == 1 and "use the keyspace copy" in output, output
        wrong = {"SOURCE_PASSWORD": "not-the-source-password-4711"}
        status, output = cutover("check", good.port, None, "--valkey-version", "8.1.8", env=wrong)
        assert status == 1 and "username and password" in output, output
        # Only check has a preflight; promote always needs the member to promote.
        assert cutover("promote", good.port, None)[0] == 2
        assert cutover("check", good.port, None)[0] == 2
    finally:
        good.stop()
        refusing.stop()


@every_build
def test_a_link_down_shows_its_fields_and_the_log_lines_to_look_for(pair: Pair) -> None:
    a = admin(pair.head)
    a.config_set("masterauth", "wrong")
    a.execute_command("CLIENT", "KILL", "TYPE", "master")
    wait_for(lambda: "Unable to AUTH to PRIMARY: -WRONGPASS" in pair.head.log.read_text(), 10, "the head refused")
    status, output = cutover("promote", pair.source.port, pair.head.port)
    assert status == 1, output
    assert "link to the source is down" in output and "master_link_status:down" in output, output
    assert "kubectl logs" in output and "Unable to AUTH to PRIMARY: -WRONGPASS" in output, output
    a.config_set("masterauth", SOURCE_PASSWORD)
    unchanged(pair.source, pair.head)


@every_build
def test_a_source_user_without_psync_is_named(tmp_path: Path, build: str) -> None:
    """ACL DRYRUN tells, when the user may run it (Redis 7.0 and later); the head logs NOPERM."""
    user = f"user migrator on >{MIGRATOR} ~* &* +@all -psync -sync"
    source = start_source(tmp_path / "source", FAST_SYNC, user)
    head = start_head(tmp_path / "head", build, source.port, "masteruser migrator", f"masterauth {MIGRATOR}")
    try:
        wait_for(lambda: "NOPERM this user has no permissions to run the 'psync' command" in head.log.read_text(),
                 10, "the head refused PSYNC")  # fmt: skip
        login = tmp_path / "login"  # as the migration's Secret is mounted: files, a trailing newline
        login.mkdir()
        (login / "username").write_text("migrator\n")
        (login / "password").write_text(f"{MIGRATOR}\n")
        status, output = cutover("check", source.port, head.port, "--source-credentials", str(login))
        assert status == 1 and "refuses PSYNC to its user" in output and "+psync" in output, output
    finally:
        source.stop()
        head.stop()


@one_build
def test_a_source_that_stays_writable_as_a_replica_is_put_back(tmp_path: Path, build: str) -> None:
    """replica-read-only no: the fence would not stop writes. It is sent, seen, and undone."""
    source = start_source(tmp_path / "source", FAST_SYNC, "replica-read-only no")
    head = start_head(tmp_path / "head", build, source.port)
    try:
        wait_for(lambda: linked(head), 20, "the head linked")
        status, output = cutover("promote", source.port, head.port)
        assert status == 1 and "replica-read-only no" in output and "nothing changed" in output, output
        unchanged(source, head)
    finally:
        source.stop()
        head.stop()


def test_a_valkey_9_source_with_field_ttls_is_refused_for_an_8_1_head(tmp_path: Path) -> None:
    """Measured: 9.1.2 cannot store such a hash in the RDB 11 an 8.1 head reads ("Can't store key
    (db 0) in RDB version 11" in the source's log), and its HSETEX is an unknown command there."""
    (tmp_path / "source").mkdir()
    port = free_port()
    config = tmp_path / "source" / "valkey.conf"
    config.write_text(f'port {port}\nbind 127.0.0.1\ndir {config.parent}\nsave ""\n{FAST_SYNC}\n'
                      f"requirepass {SOURCE_PASSWORD}\n")  # fmt: skip
    source = Server(config, port, SOURCE_PASSWORD, binary=BUILDS["9.1.2"])
    head = start_head(tmp_path / "head", "8.1.8", source.port)
    try:
        wait_for(lambda: linked(head), 20, "the head linked")
        source_client(source).execute_command("HSETEX", "h", "EX", "3600", "FIELDS", "1", "f", "v")
        status, output = cutover("check", source.port, head.port)
        assert status == 1 and "1 hash(es) with field TTLs" in output and "Valkey 8.1.8 lacks" in output, output
    finally:
        source.stop()
        head.stop()


@one_build
def test_a_head_that_does_not_catch_up_in_the_pause_puts_everything_back(tmp_path: Path, build: str) -> None:
    source = start_source(tmp_path / "source", FAST_SYNC)
    valve = Valve(source.port)
    head = start_head(tmp_path / "head", build, valve.port)
    try:
        wait_for(lambda: linked(head), 20, "the head linked through the valve")
        valve.held.set()
        source_client(source).set("held-back", "1")
        status, output = cutover("promote", source.port, head.port, "--pause-timeout", "2")
        assert status == 1, output
        assert "got only to offset" in output and "nothing changed" in output, output
        valve.held.clear()
        unchanged(source, head)
        wait_for(lambda: admin(head).get("held-back") == "1", 10, "the head caught up once the valve opened")
    finally:
        valve.held.clear()
        source.stop()
        head.stop()
        valve.close()


@one_build
def test_a_source_that_refuses_replicaof_needs_the_writers_stopped(tmp_path: Path, build: str) -> None:
    source = start_source(tmp_path / "source", FAST_SYNC, 'rename-command REPLICAOF ""', 'rename-command SLAVEOF ""')
    head = start_head(tmp_path / "head", build, source.port)
    try:
        wait_for(lambda: linked(head), 20, "the head linked")
        source_client(source).set("before", "1")
        status, output = cutover("promote", source.port, head.port)
        assert status == 1 and "refuses REPLICAOF" in output and "--writers-stopped" in output, output
        assert "writes paused" not in output, "refused before any pause"
        unchanged(source, head)
        writers = Writers(source.port, SOURCE_PASSWORD)
        writers.start()
        try:  # the writers were not stopped after all: the source's offset never stands still
            status, output = cutover("promote", source.port, head.port, "--writers-stopped", "--pause-timeout", "2")
        finally:
            writers.stop()
        assert status == 1 and "are the writers stopped?" in output and "nothing changed" in output, output
        status, output = cutover("promote", source.port, head.port, "--writers-stopped")
        assert status == 0, output
        assert "WARNING" in output and "STILL TAKES WRITES" in output and "no pause" in output, output
        assert info(admin(head), "replication")["role"] == "master"
        assert admin(head).get("after-the-refusal") == "1"
        assert info(source_client(source), "replication")["role"] == "master"
    finally:
        source.stop()
        head.stop()


# The replication stream of Redis 7.4 and later, emulated: no such server here. A primary that
# answers the handshake and streams an RDB whose header says version 12 (Redis 7.4's), its body
# written by Valkey 8.1.8 (RDB 11: the types Redis 7.4 writes the same way), with the checksum
# off, and once with a key of type 25 (Redis 7.4's hash with field TTLs, RDB_TYPE_HASH_LISTPACK_EX).


def rdb_12(tmp_path: Path, with_field_ttls: bool) -> bytes:
    maker = start_head(tmp_path / "maker", "8.1.8", None)
    try:
        c = admin(maker)
        for i in range(5):
            c.set(f"k{i}", f"v{i}")
        c.hset("h", "a", "1")
        c.save()
        rdb = (tmp_path / "maker" / "dump.rdb").read_bytes()
    finally:
        maker.stop()
    assert rdb[:9] == b"REDIS0011" and rdb[-9] == 0xFF  # EOF opcode, then 8 bytes of checksum
    foreign = bytes([25, 2]) + b"hx" + bytes(16) if with_field_ttls else b""
    return b"REDIS0012" + rdb[9:-9] + foreign + b"\xff" + bytes(8)


def stream_primary(rdb: bytes) -> int:
    """A port where a primary answers PING, AUTH, REPLCONF and streams ``rdb`` for PSYNC."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve(conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as reader:
            while header := reader.readline():
                words = [reader.read(int(reader.readline()[1:]) + 2)[:-2] for _ in range(int(header[1:]))]
                if words[0].upper() == b"PSYNC":
                    conn.sendall(b"+FULLRESYNC " + b"a" * 40 + b" 0\r\n$%d\r\n" % len(rdb) + rdb)
                elif words[0].upper() == b"PING":
                    conn.sendall(b"+PONG\r\n")
                elif words[0].upper() != b"REPLCONF" or words[1].upper() != b"ACK":
                    conn.sendall(b"+OK\r\n")

    def accept() -> None:
        while True:
            threading.Thread(target=serve, args=(listener.accept()[0],), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return int(listener.getsockname()[1])


@pytest.mark.parametrize(
    ("build", "rdb_check", "field_ttls", "loads", "logged"),
    [
        ("8.1.8", "strict", False, False, "Can't handle RDB format version 12"),
        ("8.1.8", "relaxed", False, False, "Can't handle RDB format version 12"),
        ("9.1.2", "strict", False, False, "Can't handle RDB format version 12"),
        ("9.1.2", "relaxed", False, True, "Done loading RDB, keys loaded: 6"),
        ("9.1.2", "relaxed", True, False, "Can't handle foreign type or opcode 25 in RDB with version 12"),
    ],
)
def test_which_heads_load_redis_7_4s_rdb_12_as_the_check_says(  # noqa: PLR0917 - the table's columns
    tmp_path: Path, build: str, rdb_check: str, field_ttls: bool, loads: bool, logged: str
) -> None:
    head = start_head(
        tmp_path / "head", build, stream_primary(rdb_12(tmp_path, field_ttls)), f"rdb-version-check {rdb_check}"
    )
    try:
        wait_for(lambda: logged in head.log.read_text(), 10, f"the head logging {logged!r}")
        assert (sync(admin(head).dbsize()) == 6) is loads
    finally:
        head.stop()
    refusal = stream_refusal(("Redis", (7, 4, 0)), tuple(map(int, build.split("."))), rdb_check, int(field_ttls))
    assert (refusal is None) is loads, refusal
    assert any(logged.startswith(line) for line, _ in LINK_DOWN_CAUSES) or loads
