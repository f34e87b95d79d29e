"""What the migration tests share: a real Redis 7.0 source holding data of every core type, the
writers that keep changing it, and an independent comparison of source and target.

The comparison is not the copy tool's own verification: it reads a replica of the target (a plain
server of the same build, started with DEBUG allowed, which the rendered target does not allow)
and compares every key's ``DEBUG DIGEST-VALUE`` there with the source's (the digest of the value,
not of its encoding: equal across Redis 7.0 and both Valkey builds for every type but a skiplist
sorted set with fractional scores, measured; those are compared member by member),
every TTL within a second on the target itself, and each stream's consumer groups.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import valkey
from replies import info, sync
from test_backlog_real import REPLICATION
from valkey_process import BUILDS, Server, free_port, wait_for

REDIS_SERVER = Path("/usr/bin/redis-server")
SOURCE_PASSWORD = "source-password-of-the-migration-tests"
DATABASES = (0, 3)
"""The source uses two databases: the copy and the replication carry each."""
TTL_S = 3600


def start_source(directory: Path, *extra: str) -> Server:
    """Debian's redis-server 7.0 with a password for its default user (requirepass, the common
    setup) and DEBUG allowed (for DEBUG POPULATE and the digests)."""
    if not REDIS_SERVER.exists():
        raise RuntimeError(f"{REDIS_SERVER} is missing: install Debian's redis-server (.ci/run does)")
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = directory / "redis.conf"
    lines = [
        f"port {port}",
        "bind 127.0.0.1",
        f"dir {directory}",
        'save ""',
        "appendonly no",
        f"requirepass {SOURCE_PASSWORD}",
        "enable-debug-command yes",
        *extra,
    ]
    config.write_text("\n".join(lines) + "\n")
    return Server(config, port, SOURCE_PASSWORD, binary=REDIS_SERVER)


def fill(server: Server) -> int:
    """Every core type, in several encodings, with and without TTLs, in each of DATABASES; returns
    how many keys. A stream has a consumer group with a pending entry."""
    keys = 0
    for db in DATABASES:
        c = valkey.Valkey(port=server.port, password=SOURCE_PASSWORD, db=db)
        p = c.pipeline(transaction=False)
        for i in range(2000):
            p.set(f"string:{i}", f"value-{i}" * (1 + i % 5), ex=TTL_S if i % 2 else None)
            p.set(f"int:{i}", i)
        p.set("string:big", b"\x00\xff" * 100_000)
        p.hset("hash:small", mapping={"a": "1", "b": "2"})
        p.hset("hash:big", mapping={f"field-{i}": "x" * (i % 70) for i in range(1000)})
        p.expire("hash:big", TTL_S)
        p.rpush("list:small", "a", "b", "c")
        p.rpush("list:big", *range(20_000))
        p.sadd("set:int", *range(100))
        p.sadd("set:small", "a", "b")
        p.sadd("set:big", *(f"member-{i}" for i in range(2000)))
        p.zadd("zset:small", {"a": 1.5, "b": -2})
        p.zadd("zset:big", {f"member-{i}": i / 7 for i in range(2000)})
        for i in range(50):
            p.xadd("stream", {"n": str(i), "db": str(db)})
        p.xgroup_create("stream", "workers", id="0")
        p.pfadd("hll:sparse", "a", "b", "c")
        p.pfadd("hll:dense", *range(50_000))
        p.expire("hll:dense", 2 * TTL_S)
        p.execute()
        c.xreadgroup("workers", "worker-1", {"stream": ">"}, count=5)
        keys += int(sync(c.dbsize()))
    return keys


@dataclass
class Writers:
    """Applications writing to the source until stopped: new keys, changes to existing keys of
    each type, TTL changes and deletions. ``acknowledged`` is what the source confirmed."""

    port: int
    password: str
    acknowledged: dict[str, str] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)
    counter: int = 0
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        c = valkey.Valkey(port=self.port, password=self.password, socket_timeout=5)
        n = 0
        while not self._stop.is_set():
            try:
                c.set(f"ack:{n}", str(n), ex=TTL_S if n % 3 == 0 else None)
                self.acknowledged[f"ack:{n}"] = str(n)
                self.counter = int(sync(c.incr("counter")))
                c.hset("hash:big", f"field-{n % 1000}", f"changed-{n}")
                c.lpush("list:big", n)
                c.sadd("set:big", f"new-{n}")
                c.zincrby("zset:big", 1, f"member-{n % 2000}")
                c.xadd("stream", {"n": f"new-{n}"})
                c.pfadd("hll:sparse", f"new-{n}")
                if n % 10 == 0:
                    c.delete(f"string:{n % 2000}")
                    self.deleted.add(f"string:{n % 2000}")
                    c.expire(f"int:{n % 2000}", TTL_S)
            except valkey.ValkeyError as error:
                self.errors.append(repr(error))
            n += 1

    def stop(self) -> float:
        """Stop writing; returns when the last write was acknowledged (wall clock)."""
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout=10)
        return time.time()


def oracle(
    directory: Path, build: str, target_port: int, *, host: str = "127.0.0.1", password: str = REPLICATION
) -> Server:
    """A plain server of ``build`` replicating the target (at ``host``, with the replication user's
    ``password``), DEBUG allowed: what the target holds."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = directory / "oracle.conf"
    config.write_text(
        f'port {port}\nbind 127.0.0.1\ndir {directory}\nsave ""\nenable-debug-command yes\n'
        f"replicaof {host} {target_port}\nmasteruser replication\nmasterauth {password}\n"
    )
    return Server(config, port, None, binary=BUILDS[build])


def differences(
    source: Server, target: Any, copy: Server, target_password: str, *, target_host: str = "127.0.0.1"
) -> list[str]:
    """Every difference between the source and the target (``target.port`` at ``target_host``), per
    database: keys, digests of values, TTLs (within 1 s) and consumer groups. ``copy``: the target's
    replica (``oracle``), in sync."""
    found: list[str] = []
    for db in range(16):
        s = valkey.Valkey(port=source.port, password=SOURCE_PASSWORD, db=db)
        t = valkey.Valkey(host=target_host, port=target.port, username="admin", password=target_password, db=db)
        o = valkey.Valkey(port=copy.port, db=db)
        source_keys, target_keys = set(sync(s.keys())), set(sync(t.keys()))
        if source_keys != target_keys:
            missing, extra = len(source_keys - target_keys), len(target_keys - source_keys)
            found.append(
                f"db {db}: {missing} keys missing, {extra} extra (e.g. {sorted(source_keys ^ target_keys)[:3]})"
            )
        for key in sorted(source_keys & target_keys):
            if s.type(key) == b"zset":
                # A sorted set's digest differs between Redis 7.0 and Valkey for the same fractional
                # scores once it is a skiplist (measured): compare its members and scores instead.
                same = s.zrange(key, 0, -1, withscores=True) == t.zrange(key, 0, -1, withscores=True)
            else:
                same = s.execute_command("DEBUG", "DIGEST-VALUE", key) == o.execute_command(
                    "DEBUG", "DIGEST-VALUE", key
                )
            if not same:
                found.append(f"db {db} {key!r}: the values differ")
            ttls = int(sync(s.pttl(key))), int(sync(t.pttl(key)))
            if (ttls[0] < 0) != (ttls[1] < 0) or abs(ttls[0] - ttls[1]) > 1000:
                found.append(f"db {db} {key!r}: TTL {ttls[0]} ms on the source, {ttls[1]} ms on the target")
            if s.type(key) == b"stream" and _groups(s, key) != _groups(t, key):
                found.append(f"db {db} {key!r}: consumer groups {_groups(s, key)} vs {_groups(t, key)}")
    return found


def _groups(c: valkey.Valkey, key: bytes) -> Any:
    return [(g["name"], g["last-delivered-id"], g["pending"]) for g in sync(c.xinfo_groups(key))]


def in_sync(primary: Server, replica: Server, password: str) -> None:
    """Wait until ``replica`` has every write ``primary`` took so far."""
    p = valkey.Valkey(port=primary.port, username="admin", password=password)
    r = valkey.Valkey(port=replica.port)
    target = int(info(p, "replication")["master_repl_offset"])
    wait_for(lambda: int(info(r, "replication").get("master_repl_offset", -1)) >= target, 60, "the oracle in sync")
