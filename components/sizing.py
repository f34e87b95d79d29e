"""How big everything of an instance is: the replication backlog, the server's maxmemory, the
container's memory limit (the memory model), the bounds in valkey.conf that keep the model true
(replica output buffers, client memory), the volume, the AOF rewrite threshold.

Pure: validated settings in, bytes out. The one rounding rule (``round_up``) and the one quantity
format (``mebibytes``) live here, so a number in valkey.conf and one in a manifest can be traced to
the same line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from .config.models import Instance
from .config.types import GIB, MIB

MAXMEMORY_SHARE_OF_LIMIT = Fraction(4, 5)
"""An explicit memory limit must leave the server's maxmemory at most 80 % of it."""
MEMORY_LIMIT_STEP = 16 * MIB
"""Default memory limits are whole multiples of 16Mi."""
RECONNECT_ALLOWANCE_SECONDS = 5
"""Added to the tolerated outage when sizing the backlog: after the link returns, the replica
retries once a second and redoes its handshake before PSYNC (measured 0.5-1.1 s)."""
STORAGE_PER_MAXMEMORY = 3
"""Default volume: three times maxmemory (an AOF rewrite holds two copies), whole GiB, at least 1Gi."""

# The memory model (README "Sizing"; measured in docs/benchmarks.md, section 4). Each constant is
# an assumption a reader can check against a running pod (INFO persistence, stats and memory).
FORK_RATE = 64 * MIB
"""Bytes of dataset a fork child is assumed to write per second, at the slowest: the AOF rewrite
onto the volume, or the RDB to a replica. Full syncs are diskless, so that fork lives as long as the
transfer: to region 2, across the WAN and through TLS. 64 MiB/s is 512 Mbit/s, what one TCP stream
with 4 MiB windows carries at 60 ms RTT; measured here (loopback, no TLS): 170-250 MiB/s for an
AOF rewrite, about 130 MiB/s for a full sync."""
MIN_FORK_SECONDS = 5
"""The shortest a fork is assumed to live, however small the dataset (connection set-up, a
replica's handshake)."""
PAGE = 4096
EXTRA_PAGES_PER_WRITE = 3
"""Pages a write dirties besides its value's, while a fork still shares them: the key's object,
the allocator's and the table's bookkeeping, the backlog's blocks. So a write of about 1 KiB
dirties 4 pages, 16 bytes copied per byte written; measured with 1000 B values and random keys
(docs/benchmarks.md, section 4): 9-11 on Valkey 8.1.8, 11-20 on 9.1.2 at 1x, less at higher rates
(part of a fork's copy does not depend on writes: FORK_COPY_MIN_SHARE)."""
FORK_COPY_MIN_SHARE = Fraction(1, 5)
"""The least a fork is assumed to copy, as a share of the server's maxmemory, however few writes
arrive: the child's own buffers and what the server touches for itself. Extrapolated from the
benchmark's 1x and 2x rows to no writes: 53-72 MiB of 264-332 MiB (16-22 %)."""
SYNC_SECONDS_PER_FORK_SECOND = 2
"""A full sync holds the replica's stream in the primary's buffer for the transfer, then for the
replica's load of what it received: about twice the fork."""
RATE_MARGIN = 2
"""The limit holds at twice the declared writeRate: the fork's copy is sized for it, and the replica
output buffer limit admits a full sync at it."""
BUFFER_SLACK = 16 * MIB
"""Above the backlog, the replica output buffer limit's least room: a partial resync that starts
a whole backlog behind still gets new writes while it catches up."""
FRAGMENTATION_SHARE = Fraction(1, 10)
"""Allocator overhead on the dataset: RSS at rest measured 1.04-1.09 times the server's maxmemory,
all of it on the dataset (the backlog is a few large blocks)."""
PROCESS_BASE = 8 * MIB
"""An empty server's own memory: code, Lua, shared objects."""
CLIENTS_SHARE = Fraction(1, 16)
"""``maxmemory-clients``: all normal and pub/sub clients' buffers together, as a share of the
dataset, at least ``CLIENTS_MIN``. Past it the server closes the largest clients first."""
CLIENTS_MIN = 32 * MIB


def round_up(value: int | Fraction, step: int) -> int:
    """The smallest multiple of ``step`` that is at least ``value``."""
    return int(-(-value // step)) * step


def mebibytes(n: int) -> str:
    """A Kubernetes quantity in whole Mi, rounded up: never less than ``n`` bytes."""
    return f"{round_up(n, MIB) // MIB}Mi"


def backlog_bytes(instance: Instance) -> int:
    """``repl-backlog-size``: the writes of one tolerated outage and the reconnect after it, at
    least Valkey's 1mb default."""
    seconds = instance.replication.outage_tolerance.total_seconds() + RECONNECT_ALLOWANCE_SECONDS
    return max(MIB, int(instance.replication.write_rate * seconds))


def server_maxmemory_bytes(instance: Instance) -> int:
    """The ``maxmemory`` the server gets: the configured dataset budget plus the replication
    backlog, which Valkey counts inside maxmemory (measured: used 255 MiB = data 174 + backlog 75)."""
    return int(instance.maxmemory) + backlog_bytes(instance)


@dataclass(frozen=True)
class MemoryModel:
    """The container memory limit, term by term (README "Sizing"), in bytes. ``limit`` is their
    sum in 16Mi steps, unless ``resources.memory`` is set."""

    server_maxmemory: int
    """maxmemory plus the backlog: the server's own bound on the dataset and the backlog."""
    fragmentation: int
    """The allocator's overhead on the dataset, and the server's base (FRAGMENTATION_SHARE, PROCESS_BASE)."""
    fork_seconds: float
    """How long the model lets a fork live: the dataset at FORK_RATE, at least MIN_FORK_SECONDS."""
    fork_copy: int
    """What a fork may make the kernel copy (``fork_copy_bytes``) at RATE_MARGIN times the declared
    writeRate, at least FORK_COPY_MIN_SHARE of the server's maxmemory; all of it with
    ``forkHeadroom: dataset``."""
    replica_buffer: int
    """Replica output buffers beyond the backlog (``client-output-buffer-limit replica``'s hard
    limit minus the backlog): the backlog already holds the last backlog-size bytes of the stream."""
    clients: int
    """``maxmemory-clients`` where the policy cannot evict every key (noeviction, volatile-*), else 0:
    client buffers count in maxmemory, so an allkeys-* instance makes room for them by evicting."""
    explicit: int | None = None
    """``resources.memory``, when set: the limit, whatever the terms add up to."""

    @property
    def modelled(self) -> int:
        terms = self.server_maxmemory + self.fragmentation + self.fork_copy + self.replica_buffer + self.clients
        return round_up(terms, MEMORY_LIMIT_STEP)

    @property
    def limit(self) -> int:
        return self.explicit if self.explicit is not None else self.modelled

    @property
    def fork_budget(self) -> int:
        """What the limit leaves a fork: ``fork_copy``, or with an explicit limit what it leaves
        after the other terms (never below 0)."""
        if self.explicit is None:
            return self.fork_copy
        others = self.server_maxmemory + self.fragmentation + self.replica_buffer + self.clients
        return max(0, self.explicit - others)


def fork_seconds(instance: Instance) -> float:
    return max(MIN_FORK_SECONDS, int(instance.maxmemory) / FORK_RATE)


def dirty_bytes_per_written_byte(instance: Instance) -> Fraction:
    """Bytes a fork's pages make the kernel copy per byte written: a write of ``writeSize`` dirties
    its value's pages and ``EXTRA_PAGES_PER_WRITE`` more (16 for 1 KiB, 256 for 64 B counters)."""
    size = int(instance.replication.write_size)
    return Fraction((-(-size // PAGE) + EXTRA_PAGES_PER_WRITE) * PAGE, size)


def fork_copy_bytes(instance: Instance, write_rate: float) -> int:
    """What a fork of this instance makes the kernel copy while ``write_rate`` bytes a second are
    written: each write dirties pages at random (``dirty_bytes_per_written_byte``), and a page is
    copied once, so of the server's pages (dataset and backlog: measured, a fork under heavy writes
    copies nearly all of both) a share 1 - exp(-touched / pages) is copied (uniform random writes:
    any skew, hot keys, copies less)."""
    pool = server_maxmemory_bytes(instance)
    touched = write_rate * fork_seconds(instance) * float(dirty_bytes_per_written_byte(instance))
    return int(pool * -math.expm1(-touched / pool))


def replica_buffer_limit_bytes(instance: Instance) -> int:
    """``client-output-buffer-limit replica``'s hard limit; the soft one is off. What a replica has
    yet to receive counts against it, the part the backlog also holds included (Valkey raises a
    hard limit below the backlog to the backlog's size). Valkey's default soft limit, 64mb for 60 s,
    cuts every sync that keeps more unsent for longer: a full sync of the stack files' sessions
    at the model's 64 MiB/s holds about 128 MiB for over 60 s, and starts over each time
    (tests/test_backlog_real.py). The hard limit admits a full sync's stream at RATE_MARGIN times
    the writeRate, and a whole backlog plus BUFFER_SLACK; what it admits above the backlog is the
    model's replica buffer term."""
    sync_stream = RATE_MARGIN * instance.replication.write_rate * SYNC_SECONDS_PER_FORK_SECOND * fork_seconds(instance)
    return max(backlog_bytes(instance), int(sync_stream)) + BUFFER_SLACK


def evicts_any_key(instance: Instance) -> bool:
    return instance.maxmemory_policy.startswith("allkeys-")


def clients_bytes(instance: Instance) -> int:
    """``maxmemory-clients``: 0 (off) where the policy may evict any key, since client buffers count
    in maxmemory and make room by eviction there; else CLIENTS_SHARE of maxmemory, at least
    CLIENTS_MIN. Off rather than low: past it Valkey closes the largest clients, the Sentinels' and
    the exporter's too."""
    if evicts_any_key(instance):
        return 0
    return max(CLIENTS_MIN, int(int(instance.maxmemory) * CLIENTS_SHARE))


def memory_model(instance: Instance) -> MemoryModel:
    server = server_maxmemory_bytes(instance)
    seconds = fork_seconds(instance)
    if instance.resources.fork_headroom == "dataset":
        copy = server
    else:
        copy = fork_copy_bytes(instance, RATE_MARGIN * int(instance.replication.write_rate))
        copy = max(copy, int(server * FORK_COPY_MIN_SHARE))
    return MemoryModel(
        server_maxmemory=server,
        fragmentation=int(int(instance.maxmemory) * FRAGMENTATION_SHARE) + PROCESS_BASE,
        fork_seconds=seconds,
        fork_copy=copy,
        replica_buffer=replica_buffer_limit_bytes(instance) - backlog_bytes(instance),
        clients=clients_bytes(instance),
        explicit=None if instance.resources.memory is None else int(instance.resources.memory),
    )


def memory_limit_bytes(instance: Instance) -> int:
    """The container memory limit (and request): ``resources.memory``, or the model's sum."""
    return memory_model(instance).limit


def largest_server_maxmemory(limit: int) -> int:
    """The most maxmemory (dataset plus backlog) an explicit memory limit admits."""
    return int(limit * MAXMEMORY_SHARE_OF_LIMIT)


def storage_bytes(instance: Instance) -> int:
    """The PVC size: ``storage.size``, or ``STORAGE_PER_MAXMEMORY`` times maxmemory in whole GiB."""
    if instance.storage.size is not None:
        return int(instance.storage.size)
    return max(GIB, round_up(STORAGE_PER_MAXMEMORY * int(instance.maxmemory), GIB))


def aof_rewrite_min_bytes(instance: Instance) -> int:
    """``auto-aof-rewrite-min-size``: Valkey's 64mb default rewrites a large dataset every few
    seconds while it fills, each rewrite a fork; a third of the volume keeps the worst case on disk."""
    return min(int(instance.maxmemory), storage_bytes(instance) // 3)
