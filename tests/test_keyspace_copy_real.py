"""The keyspace copy (ops/keyspace_copy) from a real Redis 7.0 into the rendered Valkey, on real
servers: every core type, several databases, TTLs, writes during the copy; a million keys; and
each bad input, which must stop the copy with a message that says what to do and lose nothing."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import valkey
from harness import render
from migration_support import SOURCE_PASSWORD, Writers, differences, fill, in_sync, oracle, start_source
from replies import config_value, sync
from test_backlog_real import ADMIN, REPLICATION, start
from valkey_process import BUILDS, Server, every_build, free_port, wait_for

from components.render.valkey_conf import Upstream
from ops.keyspace_copy.copier import CHECKPOINT_KEY

ROOT = Path(__file__).resolve().parents[1]


def cli(source: Server | int, target: Server | int, *args: str, env: dict[str, str] | None = None) -> Any:
    """The copy as the Job runs it: ``python -m ops.keyspace_copy``, logins in the environment
    (``env`` adds to and overrides the usual ones). Each end a server or a port."""
    ports = [end if isinstance(end, int) else end.port for end in (source, target)]
    logins = {"SOURCE_PASSWORD": SOURCE_PASSWORD, "TARGET_PASSWORD": ADMIN, **(env or {})}
    command = [sys.executable, "-m", "ops.keyspace_copy", "--source", f"127.0.0.1:{ports[0]}"]
    return subprocess.Popen(
        [*command, "--target", f"127.0.0.1:{ports[1]}", *args],
        cwd=ROOT,
        env={**os.environ, **logins},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def metric(port: int, name: str) -> float | None:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    return None if found is None else float(found.group(1))


@every_build
def test_a_live_copy_under_writes_holds_every_key_value_ttl_and_acknowledged_write(tmp_path: Path, build: str) -> None:
    source = start_source(tmp_path / "source")
    target = start(tmp_path / "target", build)
    copy = None
    writers = Writers(source.port, SOURCE_PASSWORD)
    try:
        keys = fill(source)
        writers.start()
        port = free_port()
        job = cli(source, target, "--follow", "--metrics-port", str(port), "--batch", "200")
        wait_for(lambda: metric(port, "valkey_migration_bulk_done") == 1, 120, "the bulk pass done")
        time.sleep(1)  # writes after the bulk pass, copied as changes
        stopped = writers.stop()
        # The cut-over: writers stopped; the target holds everything once the copy has synced since.
        wait_for(
            lambda: (metric(port, "valkey_migration_synced_timestamp_seconds") or 0) >= stopped,
            30,
            "the copy synced after the writers stopped",
        )
        pause = time.time() - stopped
        job.send_signal(signal.SIGUSR1)  # the cut-over's cue
        output, _ = job.communicate(timeout=120)
        verified = time.time() - stopped
        assert job.returncode == 0, output
        assert "verified:" in output, output
        assert not writers.errors, writers.errors[:3]
        copy = oracle(tmp_path / "oracle", build, target.port)
        in_sync(target, copy, ADMIN)
        t = valkey.Valkey(port=target.port, username="admin", password=ADMIN, decode_responses=True)
        assert differences(source, target, copy, ADMIN) == []
        missing = [k for k, v in writers.acknowledged.items() if t.get(k) != v]
        assert missing == [], f"{len(missing)} acknowledged writes missing, e.g. {missing[:3]}"
        assert t.get("counter") == str(writers.counter)
        assert not any(t.exists(k) for k in writers.deleted)
        assert t.exists(CHECKPOINT_KEY) == 0, "the checkpoint is gone once verified"
        print(
            f"DRILL keyspace-copy valkey-{build}: {keys} keys + {len(writers.acknowledged)} acknowledged writes "
            f"during the copy, 0 lost; the target held every write {pause:.2f}s after the writers stopped, "
            f"verified {verified:.2f}s after"
        )
    finally:
        if writers._thread is not None and writers._thread.is_alive():
            writers.stop()
        for server in (source, target, copy):
            if server is not None:
                server.stop()


POPULATE = """
for i = 1, tonumber(ARGV[1]) do
  redis.call('SET', 'key:' .. i, ARGV[2] .. i)
end
"""


def run_to_end(job: subprocess.Popen[str]) -> tuple[str, int]:
    """Wait for the copy; its output and its peak resident memory in KiB (the kernel's count)."""
    assert job.stdout is not None
    output = job.stdout.read()
    _, status, usage = os.wait4(job.pid, 0)
    job.returncode = os.waitstatus_to_exitcode(status)
    return output, usage.ru_maxrss


def test_a_million_keys_copy_at_a_reported_rate_in_bounded_memory(tmp_path: Path) -> None:
    """Rate and memory of the copy on this machine: a baseline of 10,000 keys, then 1,000,000
    (values of about 106 random bytes). The memory must not grow with the keyspace."""
    source = start_source(tmp_path / "source")
    targets = [start(tmp_path / "small", "8.1.8"), start(tmp_path / "large", "8.1.8")]
    s = valkey.Valkey(port=source.port, password=SOURCE_PASSWORD)
    try:
        figures = []
        for target, keys in zip(targets, (10_000, 1_000_000), strict=True):
            s.flushall()
            # 100 bytes that do not compress (DUMP compresses values with LZF), a different tail each.
            s.execute_command("EVAL", POPULATE, 0, keys, os.urandom(100))
            begun = time.monotonic()
            output, peak_kib = run_to_end(cli(source, target, "--no-track-writes"))
            seconds = time.monotonic() - begun
            assert "verified:" in output, output
            copied = re.findall(r"bulk pass done: copied (\d+) keys.*?, ([\d.]+) MB in ([\d.]+)s", output)
            assert copied and int(copied[0][0]) == keys, output
            dbsize = valkey.Valkey(port=target.port, username="admin", password=ADMIN).dbsize()
            assert dbsize == keys
            figures.append((keys, float(copied[0][1]), float(copied[0][2]), seconds, peak_kib))
        (_, _, _, _, base_kib), (keys, mb, bulk_s, seconds, peak_kib) = figures
        print(
            f"DRILL keyspace-copy rate: {keys} keys, {mb:.0f} MB of DUMP payloads: bulk pass {bulk_s:.1f}s "
            f"({keys / bulk_s:.0f} keys/s, {mb / bulk_s:.1f} MB/s), {seconds:.1f}s with checks and verification; "
            f"peak memory {peak_kib / 1024:.0f} MiB, {peak_kib / base_kib:.2f}x that of a 10,000-key copy"
        )
        assert peak_kib < 1.5 * base_kib, f"memory grew with the keyspace: {base_kib} KiB -> {peak_kib} KiB"
    finally:
        for server in (source, *targets):
            server.stop()


def failure(job: subprocess.Popen[str]) -> str:
    output, _ = job.communicate(timeout=120)
    assert job.returncode == 1, output
    return output


@pytest.fixture
def ends(tmp_path: Path) -> Any:
    source = start_source(tmp_path / "source", "user reader on >reader-password ~* &* +@read +select +ping +info")
    target = start(tmp_path / "target", "8.1.8")
    yield source, target
    source.stop()
    target.stop()


def test_an_unreachable_source_or_a_wrong_login_stops_before_anything_is_written(ends: Any) -> None:
    source, target = ends
    fill(source)
    closed = free_port()
    unreachable = failure(cli(closed, target))
    assert f"cannot reach the source 127.0.0.1:{closed}" in unreachable and "NetworkPolicy" in unreachable
    wrong = failure(cli(source, target, env={"SOURCE_PASSWORD": "not-the-password"}))
    assert "the source" in wrong and "refused the login" in wrong and "not-the-password" not in wrong
    t = valkey.Valkey(port=target.port, username="admin", password=ADMIN)
    assert t.dbsize() == 0


def test_a_target_holding_keys_or_a_replica_target_is_refused_and_keeps_its_keys(ends: Any, tmp_path: Path) -> None:
    source, target = ends
    fill(source)
    t = valkey.Valkey(port=target.port, username="admin", password=ADMIN)
    t.set("string:1", "the target's own value")
    held = failure(cli(source, target))
    assert "already holds 1 keys and no checkpoint" in held
    assert t.get("string:1") == b"the target's own value" and t.dbsize() == 1
    replica = start(tmp_path / "replica", "8.1.8", Upstream("127.0.0.1", target.port, "replication", REPLICATION))
    try:
        refused = failure(cli(source, replica))
        assert "is a slave, not a primary" in refused
    finally:
        replica.stop()


def test_a_source_user_that_cannot_turn_on_notifications_is_told_what_to_do(ends: Any) -> None:
    source, target = ends
    fill(source)
    message = failure(cli(source, target, env={"SOURCE_USERNAME": "reader", "SOURCE_PASSWORD": "reader-password"}))
    assert "notify-keyspace-events to KA yourself" in message and "--no-track-writes" in message
    s = valkey.Valkey(port=source.port, password=SOURCE_PASSWORD, decode_responses=True)
    assert config_value(s, "notify-keyspace-events") == ""
    valkey.Valkey(port=target.port, username="admin", password=ADMIN).delete(CHECKPOINT_KEY)
    # The same user copies once the writers are stopped for the whole copy.
    reader = {"SOURCE_USERNAME": "reader", "SOURCE_PASSWORD": "reader-password"}
    done, _ = cli(source, target, "--no-track-writes", env=reader).communicate(timeout=120)
    assert "verified:" in done, done


def test_writes_during_an_untracked_copy_stop_it_and_a_rerun_starts_over(ends: Any) -> None:
    source, target = ends
    fill(source)
    writers = Writers(source.port, SOURCE_PASSWORD)
    writers.start()
    try:
        message = failure(cli(source, target, "--no-track-writes", "--batch", "50"))
    finally:
        writers.stop()
    assert "took writes while the copy ran without tracking them" in message
    # The rerun does not resume (keys deleted meanwhile would stay), nor empty the target unasked.
    again = failure(cli(source, target, "--no-track-writes"))
    assert "cannot resume" in again and "took writes since" in again and "--start-over" in again
    t = valkey.Valkey(port=target.port, username="admin", password=ADMIN)
    assert sync(t.dbsize()) > 1, "what the first run copied is still there"
    output, _ = cli(source, target, "--no-track-writes", "--start-over").communicate(timeout=120)
    assert "starting over: emptied" in output and "verified:" in output, output
    assert not any(t.exists(k) for k in writers.deleted)


def test_an_interrupted_copy_resumes_from_its_checkpoint(ends: Any) -> None:
    source, target = ends
    s = valkey.Valkey(port=source.port, password=SOURCE_PASSWORD)
    s.execute_command("DEBUG", "POPULATE", 200_000, "key", 50)
    port = free_port()
    job = cli(source, target, "--no-track-writes", "--batch", "100", "--metrics-port", str(port))
    wait_for(lambda: (metric(port, "valkey_migration_keys_copied_total") or 0) > 50_000, 60, "a quarter copied")
    job.kill()
    job.communicate(timeout=30)
    t = valkey.Valkey(port=target.port, username="admin", password=ADMIN)
    checkpoint = {k.decode(): v.decode() for k, v in sync(t.hgetall(CHECKPOINT_KEY)).items()}
    assert int(checkpoint["keys"]) > 50_000
    output, _ = cli(source, target, "--no-track-writes").communicate(timeout=180)
    assert "resuming from the checkpoint" in output and "verified: 200000 keys" in output, output
    copied = re.search(r"bulk pass done: copied (\d+) keys", output)
    assert copied is not None and int(copied.group(1)) < 200_000 + 1000, output  # not all over again


def test_dump_payloads_the_target_cannot_load_stop_the_copy_with_what_to_do(tmp_path: Path) -> None:
    """The one unloadable format these machines have: Valkey 9.1's DUMP into Redis 7.0 (as Redis
    7.4's RDB 12 payloads are into a strict Valkey)."""
    newer = start(tmp_path / "newer", "9.1.2")
    older = start_source(tmp_path / "older")
    try:
        valkey.Valkey(port=newer.port, username="admin", password=ADMIN).set("k", "v")
        logins = {"SOURCE_USERNAME": "admin", "SOURCE_PASSWORD": ADMIN, "TARGET_USERNAME": "default"}
        job = cli(newer, older, "--no-track-writes", env={**logins, "TARGET_PASSWORD": SOURCE_PASSWORD})
        message = failure(job)
        assert "cannot load" in message and "rdb-version-check relaxed" in message, message
        assert "DUMP payload version or checksum are wrong" in message
    finally:
        newer.stop()
        older.stop()


def test_the_rendered_jobs_command_line_copies_a_redis_into_the_instance(tmp_path: Path) -> None:
    """The Job's container as rendered: its command, arguments and environment, its Secret volumes
    as files where it mounts them (moved under tmp_path, the one liberty taken, with the hosts
    pointed at the servers here; the target's admin password is the test server's)."""
    rendered = render(
        "region1",
        {
            "tls": {"enabled": False},
            "instances.sessions.migration": {
                "method": "copy",
                "source": {"host": "redis.legacy.svc.cluster.local", "credentialsSecret": "legacy-login"},
                "keyspaceCopy": {"image": "registry.example.com/valkey-ops:1.0.0", "follow": False},
            },
        },
    )
    pod = rendered.objects("Job")["sessions-migration"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    source = start_source(tmp_path / "source")
    target = start(tmp_path / "target", "8.1.8")
    copy = None
    try:
        keys = fill(source)
        existing = {"legacy-login": {"password": SOURCE_PASSWORD}}  # the Secret a platform team made
        args = list(container["args"])
        for mount in container["volumeMounts"]:
            volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
            folder = tmp_path / mount["mountPath"].lstrip("/")
            folder.mkdir(parents=True)
            if "secret" in volume:
                name = volume["secret"]["secretName"]
                data = existing.get(name) or rendered.secret_data(name)
                items = {i["key"]: i["path"] for i in volume["secret"].get("items", [])} or {k: k for k in data}
                for key, path in items.items():
                    (folder / path).write_text(
                        ADMIN if name.endswith("-admin-credentials") and key == "password" else data[key]
                    )
                args = [a.replace(mount["mountPath"], str(folder)) for a in args]
        args = [a.replace("redis.legacy.svc.cluster.local:6379", f"127.0.0.1:{source.port}") for a in args]
        args = [a.replace("sessions.databases.svc.cluster.local:6379", f"127.0.0.1:{target.port}") for a in args]
        env = {e["name"]: e["value"] for e in container["env"]} | {"HOME": str(tmp_path / "tmp")}
        assert container["command"] == ["python", "-m", "ops.keyspace_copy"]
        run = subprocess.run(
            [sys.executable, "-m", "ops.keyspace_copy", *args],
            check=False,
            cwd=ROOT,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        assert f"verified: {keys} keys" in run.stdout
        copy = oracle(tmp_path / "oracle", "8.1.8", target.port)
        in_sync(target, copy, ADMIN)
        assert differences(source, target, copy, ADMIN) == []
    finally:
        for server in (source, target, copy):
            if server is not None:
                server.stop()


def test_a_sigterm_stops_a_following_copy_unverified_and_keeps_its_checkpoint(ends: Any) -> None:
    """An eviction, a drain or a replaced Job sends SIGTERM: not the cut-over (SIGUSR1). The copy
    stops without verifying, exits 3 (the Job retries it) and keeps its checkpoint."""
    source, target = ends
    fill(source)
    port = free_port()
    job = cli(source, target, "--follow", "--metrics-port", str(port))
    wait_for(lambda: metric(port, "valkey_migration_bulk_done") == 1, 60, "the bulk pass done")
    job.send_signal(signal.SIGTERM)
    output, _ = job.communicate(timeout=60)
    assert job.returncode == 3, output
    assert "interrupted:" in output and "verified" not in output and "cut-over" not in output
    t = valkey.Valkey(port=target.port, username="admin", password=ADMIN)
    assert sync(t.exists(CHECKPOINT_KEY)) == 1


class Copy:
    """A running copy whose output is read as it comes (a thread), so a test can act on a line."""

    def __init__(self, job: subprocess.Popen[str]) -> None:
        self.job = job
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.job.stdout is not None
        for line in self.job.stdout:
            self.lines.append(line)

    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            assert self._reader.is_alive(), f"the copy ended without logging {text!r}: {self.output()}"
            assert time.monotonic() < deadline, f"no {text!r} within {timeout}s: {self.output()}"
            time.sleep(0.02)

    def end(self, timeout: float = 60) -> tuple[int, str]:
        """Its exit status and output; a copy still running after ``timeout`` fails the test."""
        try:
            status = self.job.wait(timeout)
        except subprocess.TimeoutExpired:
            self.job.kill()
            self.job.wait()
            raise AssertionError(f"the copy still ran after {timeout}s: {self.output()}") from None
        self._reader.join(5)
        return status, self.output()


@pytest.fixture
def copies() -> Any:
    """Start copies (``cli``'s arguments) as ``Copy``; any still running at the end is killed."""
    started: list[Copy] = []

    def begin(source: Server | int, target: Server | int, *args: str, env: dict[str, str] | None = None) -> Copy:
        started.append(Copy(cli(source, target, *args, env=env)))
        return started[-1]

    yield begin
    for copy in started:
        if copy.job.poll() is None:
            copy.job.kill()
            copy.job.wait()


def test_a_sigterm_while_a_copy_catches_up_or_verifies_stops_it_with_exit_3(ends: Any, copies: Any) -> None:
    """Not only the bulk pass looks at SIGTERM: the rounds of changed keys (which never end while
    writers write) and the verification stop too, unverified, the checkpoint kept."""
    source, target = ends
    fill(source)
    t = valkey.Valkey(port=target.port, username="admin", password=ADMIN)
    writers = Writers(source.port, SOURCE_PASSWORD)
    writers.start()
    try:
        copy = copies(source, target)  # not following: its rounds go on while anything changes
        copy.wait_for("bulk pass done")
        time.sleep(0.5)
        copy.job.send_signal(signal.SIGTERM)
        status, output = copy.end(timeout=20)
    finally:
        writers.stop()
    assert status == 3, output
    assert "interrupted:" in output and "verif" not in output, output
    assert sync(t.exists(CHECKPOINT_KEY)) == 1
    # The verification of every key (the source took writes: a rerun starts over).
    copy = copies(source, target, "--start-over", "--sample", "10000")
    copy.wait_for("verifying:")
    copy.job.send_signal(signal.SIGTERM)
    status, output = copy.end(timeout=30)
    assert status == 3, output
    assert "interrupted:" in output and "verified:" not in output and "verification FAILED" not in output, output
    assert sync(t.exists(CHECKPOINT_KEY)) == 1


def test_a_cut_over_cue_without_follow_is_logged_as_having_no_effect(ends: Any, copies: Any) -> None:
    source, target = ends
    keys = fill(source)
    copy = copies(source, target, "--batch", "50")
    copy.wait_for("tracking the source's writes")  # the signal handlers are set by then
    copy.job.send_signal(signal.SIGUSR1)
    status, output = copy.end()
    assert status == 0 and f"verified: {keys} keys" in output, output
    assert output.count("has no effect without --follow") == 1, output


def test_notifications_said_to_be_configured_but_off_stop_the_copy_before_it_verifies(
    tmp_path: Path, copies: Any
) -> None:
    """``--notifications-configured`` on a source whose notify-keyspace-events is empty: read at
    once where CONFIG GET answers; else seen when the source takes writes and no event comes."""
    source = start_source(tmp_path / "source", "user tracker on >tracker-password ~* &* +@all -config")
    target = start(tmp_path / "target", "8.1.8")
    no_config = {"SOURCE_USERNAME": "tracker", "SOURCE_PASSWORD": "tracker-password"}
    try:
        fill(source)
        s = valkey.Valkey(port=source.port, password=SOURCE_PASSWORD, decode_responses=True)
        status, output = copies(source, target, "--follow", "--notifications-configured").end(timeout=20)
        assert status == 1 and "notify-keyspace-events is '', without K and A" in output, output
        assert "Traceback" not in output
        copy = copies(source, target, "--follow", "--notifications-configured", env=no_config)
        copy.wait_for("bulk pass done")
        s.set("written-during-the-copy", "1")
        s.delete("string:1")
        status, output = copy.end(timeout=10)  # not at the cut-over: at the round after those writes
        assert status == 1, output
        assert "not one event came" in output and "notify-keyspace-events to KA" in output, output
        assert "--start-over" in output and "verified:" not in output, output
        # Set as the flag says, the same user's copy tracks the writes.
        s.config_set("notify-keyspace-events", "KA")
        copy = copies(source, target, "--follow", "--notifications-configured", "--start-over", env=no_config)
        copy.wait_for("bulk pass done")
        s.set("written-during-the-copy", "2")
        time.sleep(1)
        copy.job.send_signal(signal.SIGUSR1)
        status, output = copy.end()
        assert status == 0 and "verified:" in output, output
        t = valkey.Valkey(port=target.port, username="admin", password=ADMIN)
        assert t.get("written-during-the-copy") == b"2"
    finally:
        source.stop()
        target.stop()


class OldRedis:
    """A relay to a Redis 7.0 that makes it answer ``SCAN … TYPE`` as Redis before 6.0 does, with
    ``ERR syntax error``: it renames that option on the way (to TYPX, which 7.0 does not know)."""

    def __init__(self, upstream: int) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        threading.Thread(target=self._accept, args=(upstream,), daemon=True).start()

    def _accept(self, upstream: int) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", upstream))
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    @staticmethod
    def _pump(reading: socket.socket, writing: socket.socket, requests: bool) -> None:
        with contextlib.suppress(OSError):
            while data := reading.recv(65536):
                if requests and b"\r\nSCAN\r\n" in data:
                    data = data.replace(b"\r\nTYPE\r\n", b"\r\nTYPX\r\n")
                writing.sendall(data)
        for end in (reading, writing):
            end.close()

    def close(self) -> None:
        self._listener.close()


def test_error_replies_stop_the_copy_with_what_to_do_and_never_a_traceback(ends: Any, copies: Any) -> None:
    """A full target (OOM), a source without ``SCAN … TYPE`` (Redis before 6.0), a target that
    became a replica mid-copy (READONLY: exit 3, the Job retries)."""
    source, target = ends
    fill(source)
    t = valkey.Valkey(port=target.port, username="admin", password=ADMIN)
    t.config_set("maxmemory-policy", "noeviction")
    t.config_set("maxmemory", "1")
    status, output = copies(source, target).end()
    assert status == 1 and "Traceback" not in output, output
    assert f"the target 127.0.0.1:{target.port} is out of memory" in output and "maxmemory" in output, output
    t.config_set("maxmemory", "0")
    old = OldRedis(source.port)
    try:
        status, output = copies(old.port, target).end()
    finally:
        old.close()
    assert status == 1 and "Traceback" not in output, output
    assert "does not answer SCAN 0 COUNT 1 TYPE string (syntax error" in output and "Redis 6.0" in output, output
    assert "bulk pass" not in output, "stopped in the checks, before copying"
    t.delete(CHECKPOINT_KEY)
    copy = copies(source, target, "--follow")
    copy.wait_for("bulk pass done")
    t.execute_command("REPLICAOF", "127.0.0.1", free_port())  # a failover elsewhere: read-only now
    valkey.Valkey(port=source.port, password=SOURCE_PASSWORD).set("written-during-the-copy", "1")
    status, output = copy.end(timeout=10)
    assert status == 3 and "Traceback" not in output, output
    assert "took no more writes (You can't write against a read only replica.)" in output, output
    t.execute_command("REPLICAOF", "NO", "ONE")


def test_a_target_restart_or_loss_mid_follow_ends_with_exit_3_and_a_rerun_resumes(ends: Any, copies: Any) -> None:
    """A restarted target may have lost its last second of writes; one gone may come back: each is
    exit 3, for the Job to retry, and the retry resumes where it can."""
    source, target = ends
    fill(source)
    copy = copies(source, target, "--follow")
    copy.wait_for("bulk pass done")
    target.stop()  # a pod restart: its AOF keeps what it took, the checkpoint too
    target = Server(target.config, target.port, target.password, binary=BUILDS["8.1.8"])
    try:
        status, output = copy.end(timeout=10)
        assert status == 3, output
        assert f"the target 127.0.0.1:{target.port} restarted" in output, output
        copy = copies(source, target, "--follow")  # the Job's retry
        copy.wait_for("bulk pass done")
        assert "resuming from the checkpoint" in copy.output()
        target.stop()
        valkey.Valkey(port=source.port, password=SOURCE_PASSWORD).set("written-during-the-copy", "1")
        status, output = copy.end(timeout=10)
        assert status == 3, output
        assert f"lost the target 127.0.0.1:{target.port}" in output and "Traceback" not in output, output
    finally:
        target.stop()


def test_streams_are_copied_again_at_the_end_in_small_batches(tmp_path: Path, copies: Any) -> None:
    """Each stream is read whole: the last copy of every stream reads 16 at a time, not a batch."""
    source = start_source(tmp_path / "source", "slowlog-log-slower-than 0", "slowlog-max-len 100000")
    target = start(tmp_path / "target", "8.1.8")
    try:
        s = valkey.Valkey(port=source.port, password=SOURCE_PASSWORD)
        for i in range(100):
            s.xadd(f"stream:{i}", {"n": "1"})
        s.slowlog_reset()
        status, output = copies(source, target, "--batch", "1000").end()
        assert status == 0 and "copied the 100 stream(s) once more" in output, output
        commands = [entry[3] for entry in reversed(s.execute_command("SLOWLOG", "GET", -1))]
        recopy = min(i for i, c in enumerate(commands) if c[0] == b"SCAN" and c[-2:] == [b"TYPE", b"stream"])
        reads = [int(c[2]) for c in commands[recopy:] if c[0] == b"EVALSHA"]  # EVALSHA sha numkeys keys...
        assert sum(reads) == 100 and max(reads) <= 16, reads
    finally:
        source.stop()
        target.stop()
