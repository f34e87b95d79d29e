"""How big everything of an instance is: the replication backlog, the server's maxmemory, the
container's memory limit, the volume, the AOF rewrite threshold.

Pure: validated settings in, bytes out. The one rounding rule (``round_up``) and the one quantity
format (``mebibytes``) live here, so a number in valkey.conf and one in a manifest can be traced to
the same line.
"""

from __future__ import annotations

from fractions import Fraction

from .config.models import Instance
from .config.types import GIB, MIB

MAXMEMORY_SHARE_OF_LIMIT = Fraction(4, 5)
"""An explicit memory limit must leave the server's maxmemory at most 80 % of it."""
DEFAULT_MAXMEMORY_SHARE = Fraction(9, 20)
"""The server's maxmemory is 45 % of the default memory limit, i.e. the limit is about 2.22 times
it: a fork (AOF rewrite, full sync) under heavy writes copies up to the whole dataset; measured peaks
reached 1.93-2.05 times maxmemory (docs/benchmarks.md), and 2.22 leaves at least 8 % above the
worst of them."""
MEMORY_LIMIT_STEP = 64 * MIB
"""Default memory limits are whole multiples of 64Mi."""
RECONNECT_ALLOWANCE_SECONDS = 5
"""Added to the tolerated outage when sizing the backlog: after the link returns, the replica
retries once a second and redoes its handshake before PSYNC (measured 0.5-1.1 s)."""
STORAGE_PER_MAXMEMORY = 3
"""Default volume: three times maxmemory (an AOF rewrite holds two copies), whole GiB, at least 1Gi."""


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


def memory_limit_bytes(instance: Instance) -> int:
    """The container memory limit (and request): ``resources.memory``, or the server's maxmemory
    divided by ``DEFAULT_MAXMEMORY_SHARE``, rounded up to ``MEMORY_LIMIT_STEP``."""
    if instance.resources.memory is not None:
        return int(instance.resources.memory)
    return round_up(server_maxmemory_bytes(instance) / DEFAULT_MAXMEMORY_SHARE, MEMORY_LIMIT_STEP)


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
