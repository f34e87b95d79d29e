"""Support code for tests/test_drills.py: connections by purpose, a paced writer that records what
was acknowledged, a replication-lag monitor, key dumps, INFO helpers and the figures report.

Everything here talks to real Valkey processes started by the pod runner; nothing is mocked.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import harness
import valkey
from podrunner.pod import Pod
from replies import info, sync
from valkey_process import wait_for

from ops.switchover import Node

T = TypeVar("T")
CONNECTION_ERRORS = (valkey.ConnectionError, valkey.TimeoutError, OSError)


# ----- bounded polling ----------------------------------------------------------------------------


def holds_for(condition: Callable[[], bool], duration: float, what: str, interval: float = 0.05) -> int:
    """Assert ``condition`` stays true for ``duration`` seconds (checked every ``interval``); returns
    how many checks were made. Used for "keeps passing" and "never appears" properties."""
    deadline = time.monotonic() + duration
    checks = 0
    while True:
        assert condition(), f"{what}: violated after {checks} checks"
        checks += 1
        if time.monotonic() >= deadline:
            return checks
        time.sleep(interval)


# ----- connections by purpose ---------------------------------------------------------------------


def app(rendered: harness.Rendered, instance: str, host: str, port: int = 6379, **kw: Any) -> valkey.Valkey:
    """An application: the default user, password from the rendered ``<instance>-credentials``."""
    password = rendered.secret_data(f"{instance}-credentials")["password"]
    return valkey.Valkey(host=host, port=port, password=password, socket_timeout=5, socket_connect_timeout=2, **kw)


def admin(rendered: harness.Rendered, instance: str, host: str, port: int = 6379) -> valkey.Valkey:
    """The operator (REPLICAOF, CONFIG, CLIENT KILL, INFO): ``<instance>-admin-credentials``."""
    creds = rendered.secret_data(f"{instance}-admin-credentials")
    return valkey.Valkey(
        host=host,
        port=port,
        username=creds["username"],
        password=creds["password"],
        socket_timeout=5,
        socket_connect_timeout=2,
    )


def replication_login(rendered: harness.Rendered, instance: str, host: str, port: int = 6379) -> valkey.Valkey:
    """The replication user, with the password the region exports for the other region."""
    creds = rendered.exports["replicationCredentials"][instance]
    return valkey.Valkey(host=host, port=port, username=creds["username"], password=creds["password"], socket_timeout=5)


def node(rendered: harness.Rendered, pod: Pod, instance: str = "sessions") -> Node:
    """A pod as the switchover tool (ops/switchover.py) logs in to it: as the admin user."""
    creds = rendered.secret_data(f"{instance}-admin-credentials")
    return Node(pod.address, 6379, creds["password"], username=creds["username"])


def replication_password(rendered: harness.Rendered, instance: str = "sessions") -> str:
    """The region's replication password, as its stack output replicationCredentials gives it."""
    return str(rendered.exports["replicationCredentials"][instance]["password"])


def role(c: valkey.Valkey) -> str:
    return str(info(c, "replication")["role"])


def link_up(replica_admin: valkey.Valkey) -> bool:
    return info(replica_admin, "replication").get("master_link_status") == "up"


def caught_up(primary_admin: valkey.Valkey, replica_admin: valkey.Valkey) -> bool:
    """The replica has processed everything the primary has produced so far."""
    target = info(primary_admin, "replication")["master_repl_offset"]
    return link_up(replica_admin) and info(replica_admin, "replication")["slave_repl_offset"] >= target


def dump(c: valkey.Valkey, match: str = "*", count: int = 1000) -> dict[bytes, bytes | None]:
    """Every string key matching ``match`` and its value, read with SCAN + MGET."""
    out: dict[bytes, bytes | None] = {}
    batch: list[bytes] = []

    def flush() -> None:
        if batch:
            out.update(zip(batch, sync(c.mget(batch)), strict=True))
            batch.clear()

    for key in c.scan_iter(match=match, count=count):
        batch.append(key)
        if len(batch) >= count:
            flush()
    flush()
    return out


def missing_keys(c: valkey.Valkey, keys: list[str], chunk: int = 2000) -> list[str]:
    """Keys of ``keys`` that ``c`` does not hold (EXISTS per key, pipelined)."""
    missing: list[str] = []
    for i in range(0, len(keys), chunk):
        part = keys[i : i + chunk]
        pipe = c.pipeline(transaction=False)
        for key in part:
            pipe.exists(key)
        missing += [k for k, found in zip(part, pipe.execute(), strict=True) if not found]
    return missing


def absent_keys(c: valkey.Valkey, keys: list[str], chunk: int = 1000) -> list[str]:
    """``missing_keys``, faster where nothing is missing: one EXISTS counts a whole chunk of
    (distinct) keys, and only a chunk that comes up short is checked key by key."""
    absent: list[str] = []
    parts = [keys[i : i + chunk] for i in range(0, len(keys), chunk)]
    pipe = c.pipeline(transaction=False)
    for part in parts:
        pipe.exists(*part)
    for part, found in zip(parts, pipe.execute(), strict=True):
        if found != len(part):
            absent += missing_keys(c, part)
    return absent


# ----- a paced writer -----------------------------------------------------------------------------


@dataclass
class Batch:
    first: int
    size: int
    acked_at: float
    """time.monotonic() when the server's replies to the whole batch had arrived."""


class Writer(threading.Thread):
    """SETs ``<prefix>:<n>`` = ``<n>:<send time ns>`` at ``rate`` keys/s in pipelined batches, as an
    application would (default user). Only batches whose replies all arrived count as acknowledged.
    With ``heartbeat``, each batch also SETs that key to the batch's send time (time.monotonic_ns():
    one clock for every process on this host), for LagMonitor. Stops at stop() or at the first
    connection error (the server died)."""

    def __init__(
        self,
        connect: Callable[[], valkey.Valkey],
        prefix: str,
        rate: float = 5000.0,
        batch: int = 10,
        heartbeat: str | None = None,
    ):
        super().__init__(name=f"writer-{prefix}", daemon=True)
        self.connect = connect
        self.prefix = prefix
        self.rate = rate
        self.batch = batch
        self.heartbeat = heartbeat
        self.batches: list[Batch] = []
        self.error: BaseException | None = None
        self.started_at = 0.0
        self.ended_at = 0.0
        self._stop_event = threading.Event()

    def run(self) -> None:
        try:
            client = self.connect()
            client.ping()
        except CONNECTION_ERRORS as error:
            self.error = error
            return
        interval = self.batch / self.rate
        self.started_at = due = time.monotonic()
        seq = 0
        try:
            while not self._stop_event.is_set():
                now = time.monotonic()
                if due > now:
                    time.sleep(due - now)
                elif now - due > 0.5:
                    due = now  # fell far behind (a stall): do not burst to catch up
                due += interval
                sent = time.monotonic_ns()
                pipe = client.pipeline(transaction=False)
                for n in range(seq, seq + self.batch):
                    pipe.set(f"{self.prefix}:{n}", f"{n}:{sent}")
                if self.heartbeat:
                    pipe.set(self.heartbeat, sent)
                try:
                    pipe.execute()
                except CONNECTION_ERRORS as error:
                    self.error = error
                    return
                self.batches.append(Batch(seq, self.batch, time.monotonic()))
                seq += self.batch
        finally:
            self.ended_at = time.monotonic()
            client.close()

    def stop(self) -> Writer:
        self._stop_event.set()
        self.join(10)
        assert not self.is_alive(), "writer did not stop"
        return self

    def wait_acked(self, keys: int, timeout: float = 10.0) -> None:
        wait_for(lambda: self.acked_count >= keys, timeout, f"{keys} acknowledged writes by {self.prefix}")

    @property
    def acked_count(self) -> int:
        return sum(b.size for b in self.batches)

    def acked(self, before: float = math.inf) -> list[str]:
        """Keys whose batch was acknowledged before ``before`` (time.monotonic())."""
        return [
            f"{self.prefix}:{n}" for b in self.batches if b.acked_at < before for n in range(b.first, b.first + b.size)
        ]

    def achieved_rate(self) -> float:
        elapsed = (self.ended_at or time.monotonic()) - self.started_at
        return self.acked_count / elapsed if elapsed > 0 else 0.0


class StreamWriter(threading.Thread):
    """Writes so that the primary's replication stream (``master_repl_offset``) grows at ``rate``
    bytes per second, whatever the command overhead: every 20 ms it writes 1 KiB values until the
    offset has caught up with ``rate`` x elapsed time. For drills about the backlog, whose size is
    ``writeRate`` in stream bytes."""

    def __init__(self, connect: Callable[[], valkey.Valkey], rate: int):
        super().__init__(name="stream-writer", daemon=True)
        self.connect = connect
        self.rate = rate
        self.error: BaseException | None = None
        self._stop_event = threading.Event()

    def run(self) -> None:
        client = self.connect()
        try:
            start_offset = int(info(client, "replication")["master_repl_offset"])
            started = time.monotonic()
            n = 0
            while not self._stop_event.is_set():
                target = start_offset + self.rate * (time.monotonic() - started)
                while int(info(client, "replication")["master_repl_offset"]) < target:
                    client.set(f"stream:{n % 10_000}", "x" * 1024)
                    n += 1
                time.sleep(0.02)
        except CONNECTION_ERRORS as error:
            self.error = error
        finally:
            client.close()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(10)
        assert not self.is_alive(), "stream writer did not stop"


class LagMonitor(threading.Thread):
    """Samples replication lag in time, from the replica's side: reads the writer's heartbeat key on
    the replica in a tight loop; lag = now - send time of the newest heartbeat the replica has applied.
    That is an upper bound of the true lag by at most one writer batch interval plus one read."""

    def __init__(self, replica: valkey.Valkey, heartbeat: str):
        super().__init__(name="lag-monitor", daemon=True)
        self.replica = replica
        self.heartbeat = heartbeat
        self.samples_ms: list[float] = []
        self.error: BaseException | None = None
        self._stop_event = threading.Event()

    def run(self) -> None:
        try:
            while not self._stop_event.is_set():
                value = sync(self.replica.get(self.heartbeat))
                if value is not None:
                    self.samples_ms.append((time.monotonic_ns() - int(value)) / 1e6)
                time.sleep(0.001)
        except (valkey.ValkeyError, OSError) as error:
            self.error = error

    def stop(self) -> LagMonitor:
        self._stop_event.set()
        self.join(10)
        return self


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


# ----- the figures report -------------------------------------------------------------------------


@dataclass
class Report:
    """Figures per drill, printed as ``DRILL: <drill> <json>`` lines as they are measured and again
    together at the end of the module (run pytest with -s to see them)."""

    figures: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, drill: str, **values: Any) -> None:
        rounded = {k: round(v, 3) if isinstance(v, float) else v for k, v in values.items()}
        self.figures.setdefault(drill, {}).update(rounded)
        print(f"DRILL: {drill} {json.dumps(rounded, sort_keys=True)}", flush=True)

    def lines(self) -> Iterator[str]:
        for drill, values in self.figures.items():
            yield f"DRILL: summary {drill}: {json.dumps(values, sort_keys=True)}"


# ----- a dataset of every data type ---------------------------------------------------------------

DATASET_TTL_SECONDS = 3600
"""Expiry of the dataset's expiring keys: far beyond any drill, so none expires while compared."""


def seed_every_type(c: valkey.Valkey, prefix: str, small: int = 50) -> int:
    """Writes ``small`` keys of each type in its compact encoding (listpack, intset) and one large key
    of each beyond the default listpack limits (hashtable, skiplist, quicklist, a stream of several
    nodes): strings, hashes, sets, sorted sets, lists, streams with a consumer group holding pending
    entries, and strings and hashes with an expiry time. Returns how many keys it wrote."""
    pipe = c.pipeline(transaction=False)
    for n in range(small):
        pipe.set(f"{prefix}:string:{n}", f"value-{n}")
        pipe.hset(f"{prefix}:hash:{n}", mapping={f"field-{i}": f"{n}-{i}" for i in range(10)})
        pipe.sadd(f"{prefix}:intset:{n}", *range(n, n + 10))
        pipe.sadd(f"{prefix}:set:{n}", *(f"member-{i}" for i in range(10)))
        pipe.zadd(f"{prefix}:zset:{n}", {f"member-{i}": i * 1.5 for i in range(10)})
        pipe.rpush(f"{prefix}:list:{n}", *(f"item-{i}" for i in range(10)))
        pipe.set(f"{prefix}:expiring-string:{n}", n, ex=DATASET_TTL_SECONDS)
        pipe.hset(f"{prefix}:expiring-hash:{n}", mapping={"a": n, "b": -n})
        pipe.expire(f"{prefix}:expiring-hash:{n}", DATASET_TTL_SECONDS)
        for i in range(5):
            pipe.xadd(f"{prefix}:stream:{n}", {"n": str(n), "i": str(i)})
    pipe.hset(f"{prefix}:big-hash", mapping={f"field-{i}": "x" * (i % 50) for i in range(2000)})
    pipe.sadd(f"{prefix}:big-set", *(f"member-{i}" for i in range(2000)))
    pipe.zadd(f"{prefix}:big-zset", {f"member-{i}": i / 7 for i in range(2000)})
    pipe.rpush(f"{prefix}:big-list", *(f"item-{i}-{'y' * (i % 40)}" for i in range(5000)))
    for i in range(1000):
        pipe.xadd(f"{prefix}:big-stream", {"i": str(i), "pad": "z" * (i % 30)})
    pipe.execute()
    for stream in [f"{prefix}:stream:{n}" for n in range(small)] + [f"{prefix}:big-stream"]:
        c.xgroup_create(stream, "readers", id="0")
        c.xreadgroup("readers", "reader-1", {stream: ">"}, count=3)  # pending, never acknowledged
    return small * 9 + 5


def typed_snapshot(c: valkey.Valkey, match: str) -> dict[bytes, tuple[bytes, Any, int]]:
    """Every key matching ``match``: (type, its whole value as plain data, absolute expiry time in ms
    or -1). Two nodes with equal snapshots hold the same keys, values, stream groups and pending
    entries, and expiry times."""
    out: dict[bytes, tuple[bytes, Any, int]] = {}
    for key in c.scan_iter(match=match, count=1000):
        kind = sync(c.type(key))
        value: Any
        if kind == b"string":
            value = sync(c.get(key))
        elif kind == b"hash":
            value = sorted(sync(c.hgetall(key)).items())
        elif kind == b"set":
            value = sorted(sync(c.smembers(key)))
        elif kind == b"zset":
            value = sync(c.zrange(key, 0, -1, withscores=True))
        elif kind == b"list":
            value = sync(c.lrange(key, 0, -1))
        elif kind == b"stream":
            groups = [
                (g["name"], g["consumers"], g["pending"], g["last-delivered-id"]) for g in sync(c.xinfo_groups(key))
            ]
            pending = [
                (p["message_id"], p["consumer"], p["times_delivered"])
                for name, *_ in groups
                for p in sync(c.xpending_range(key, name, "-", "+", 1000))
            ]
            value = (sync(c.xrange(key)), groups, pending)
        else:
            raise AssertionError(f"{key!r}: a type this snapshot does not read: {kind!r}")
        out[key] = (kind, value, int(sync(c.pexpiretime(key))))
    return out
