"""The final check: the same keys of the same types in every database, and the same values and
TTLs (within a second) for a sample of them. Read through commands every server answers alike,
not through DUMP payloads, whose bytes differ between Redis and Valkey for the same value."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import valkey

from .endpoint import Endpoint, keyspace, scan_all

TTL_TOLERANCE_MS = 1000
SCAN_COUNT = 10_000


@dataclass
class Verification:
    types: dict[int, tuple[dict[str, int], dict[str, int]]] = field(default_factory=dict)
    """Database -> (source's, target's) key count per type."""
    sampled: int = 0
    mismatches: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def summary(self) -> str:
        keys = sum(sum(source.values()) for source, _ in self.types.values())
        if self.ok:
            return f"verified: {keys} keys in {len(self.types)} database(s) match by type; {self.sampled} sampled match"
        shown = "; ".join(self.mismatches[:10])
        more = f" (and {len(self.mismatches) - 10} more)" if len(self.mismatches) > 10 else ""
        return f"verification FAILED: {shown}{more}"


def _types(client: valkey.Valkey, skip: set[bytes], check: Callable[[], None]) -> Counter[str]:
    """Keys per type: one ``SCAN … TYPE`` pass per type, which the server filters (no command per key)."""
    counts: Counter[str] = Counter()
    for kind in READERS:
        for keys in scan_all(client, SCAN_COUNT, kind):
            check()
            counts[kind] += sum(1 for key in keys if key not in skip)
    return +counts


def _sample(client: valkey.Valkey, keys: int, wanted: int, check: Callable[[], None]) -> list[bytes]:
    """About ``wanted`` keys spread over the database's ``keys``, without holding more than those."""
    step, seen = max(1, keys // max(1, wanted)), 0
    picked: list[bytes] = []
    for batch in scan_all(client, SCAN_COUNT):
        check()
        if len(picked) >= wanted:
            break
        for key in batch:
            if seen % step == 0:
                picked.append(key)
            seen += 1
    return picked[:wanted]


def _stream(client: valkey.Valkey, key: bytes) -> Any:
    groups = [(g["name"], g["last-delivered-id"], g["pending"]) for g in client.execute_command("XINFO GROUPS", key)]
    return client.execute_command("XRANGE", key, "-", "+"), sorted(groups)


def _scores(flat: list[bytes]) -> list[tuple[bytes, float]]:
    """Members and scores as numbers: servers print the same double differently (Redis 7.0 with 17
    significant digits, Valkey the shortest that reads back the same)."""
    return [(member, float(score)) for member, score in zip(flat[0::2], flat[1::2], strict=True)]


READERS: dict[str, Callable[[valkey.Valkey, bytes], Any]] = {
    "string": lambda c, k: c.execute_command("GET", k),
    "hash": lambda c, k: sorted(c.execute_command("HGETALL", k).items()),
    "list": lambda c, k: c.execute_command("LRANGE", k, 0, -1),
    "set": lambda c, k: sorted(c.execute_command("SMEMBERS", k)),
    "zset": lambda c, k: _scores(c.execute_command("ZRANGE", k, 0, -1, "WITHSCORES")),
    "stream": _stream,
}
"""Per type, its value in a form that compares equal across servers (a stream: its entries and
its consumer groups' names, last-delivered IDs and pending counts)."""


def value_of(client: valkey.Valkey, key: bytes) -> tuple[str, Any]:
    kind = client.execute_command("TYPE", key).decode()
    reader = READERS.get(kind)
    return kind, None if reader is None else reader(client, key)


def ttls_match(source_ms: int, target_ms: int) -> bool:
    """Both without a TTL, or both with one, within TTL_TOLERANCE_MS."""
    if source_ms < 0 or target_ms < 0:
        return source_ms == target_ms
    return abs(source_ms - target_ms) <= TTL_TOLERANCE_MS


def _go_on() -> None:
    return None


def verify(
    source: Endpoint,
    target: Endpoint,
    sample: int,
    skip: Mapping[int, set[bytes]],
    check: Callable[[], None] = _go_on,
) -> Verification:
    """``check`` is called between any two batches and sampled keys: what it raises (the copier's
    Interrupted, on a SIGTERM) ends the verification there."""
    result = Verification()
    with source.session() as s, target.session() as t:
        held = keyspace(s)
        dbs = sorted(set(held) | set(keyspace(t)))
    per_db = max(1, sample // max(1, len(dbs)))
    for db in dbs:
        with source.session(db) as s, target.session(db) as t:
            # Both ends at once: each pass waits on its own server.
            with ThreadPoolExecutor(2) as pool:
                counting = pool.submit(_types, t, skip.get(db, set()), check)
                source_types = _types(s, set(), check)
                target_types = counting.result()
            result.types[db] = (dict(source_types), dict(target_types))
            if source_types != target_types:
                result.mismatches.append(f"db {db}: source has {dict(source_types)}, target {dict(target_types)}")
            for key in _sample(s, held.get(db, 0), per_db, check):
                check()
                result.sampled += 1
                if value_of(s, key) != value_of(t, key):
                    result.mismatches.append(f"db {db} key {key!r}: the values differ")
                    continue
                ttls = s.execute_command("PTTL", key), t.execute_command("PTTL", key)
                if not ttls_match(*ttls):
                    result.mismatches.append(f"db {db} key {key!r}: TTL {ttls[0]} ms there, {ttls[1]} here")
    return result
