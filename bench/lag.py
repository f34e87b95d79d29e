"""2. Replication lag while writing 20k SETs/s of 1 KiB values, directly and through 40 ms RTT.

Rendered: region 1's ``sessions`` primary and region 2's ``sessions`` replica, which follows
``sessions.region1.example.com`` as the rendered config says; for the proxied run that name is pointed
at a FaultProxy (20 ms each way) and the replica's link is killed, so it reconnects through it.
Baseline: two stock pods (``valkey-server --protected-mode no``, the second told ``REPLICAOF``), same
writer, same links.

Every 10 ms the sampler reads INFO replication from the replica (``slave_repl_offset``: what it has
applied), then from the primary (``master_repl_offset``, and ``slave0``'s offset):

- lag in bytes = primary offset - replica offset (replica read first: an upper bound);
- lag in ms = how long ago the primary's offset passed what the replica has applied now, from the
  primary's sampled offset timeline, interpolated (so no average byte rate is assumed);
- the primary's own view, ``master_repl_offset - slave0.offset``, is shown too: the replica ACKs its
  offset once a second, so that figure measures the ACK period, not the lag.
"""

from __future__ import annotations

import bisect
import itertools
import time
from dataclasses import dataclass
from typing import Any

import valkey
from podrunner import Pod, PodRunner

from bench.common import (
    AOF_MIN_FORMULA,
    Results,
    Sizing,
    admin,
    caught_up,
    client_password,
    external_host,
    log,
    mib,
    percentile,
    render_pair,
    replication,
    stack_instances,
    stock_client,
    stock_objects,
    wait_for,
)
from bench.proxyproc import ProxyProcess
from bench.writer import Writer, WriterSpec

INSTANCE = "sessions"


@dataclass(frozen=True)
class Settings:
    rate: int = 20_000
    value_size: int = 1024
    seconds: float = 20.0
    warmup: float = 1.5
    interval: float = 0.010
    rtt: float = 0.040
    keys: int = 100_000


@dataclass(frozen=True)
class Sample:
    t_replica: float
    replica_offset: int
    t_primary: float
    primary_offset: int
    acked_offset: int
    forking: bool
    """A child (AOF rewrite, RDB for a sync or save) was running on the primary or the replica."""


def has_child(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return bool(f.read().strip())
    except OSError:
        return False


def sample(
    primary: valkey.Valkey, replica: valkey.Valkey, seconds: float, interval: float, pids: tuple[int, ...]
) -> list[Sample]:
    out = []
    start = next_tick = time.monotonic()
    while next_tick - start < seconds:
        t_r = time.monotonic()
        r = replication(replica)
        t_p = time.monotonic()
        p = replication(primary)
        slave = p.get("slave0") or {}
        forking = any(has_child(pid) for pid in pids)
        applied = int(r.get("slave_repl_offset", -1))
        out.append(Sample(t_r, applied, t_p, p["master_repl_offset"], slave.get("offset", -1), forking))
        next_tick += interval
        time.sleep(max(0.0, next_tick - time.monotonic()))
    return out


def lags(samples: list[Sample]) -> dict[str, list[float]]:
    times = [s.t_primary for s in samples]
    offsets = [s.primary_offset for s in samples]
    ms, nbytes, acked = [], [], []
    for s in samples:
        nbytes.append(max(0, s.primary_offset - s.replica_offset))
        acked.append(max(0, s.primary_offset - s.acked_offset))
        j = bisect.bisect_left(offsets, s.replica_offset)
        if j >= len(offsets):
            ms.append(0.0)
            continue
        if j == 0:
            reached = times[0]
        else:
            o0, o1, t0, t1 = offsets[j - 1], offsets[j], times[j - 1], times[j]
            reached = t0 + (s.replica_offset - o0) / (o1 - o0) * (t1 - t0)
        ms.append(max(0.0, (s.t_replica - reached) * 1000))
    return {"ms": ms, "bytes": nbytes, "acked_bytes": acked}


def summary(values: list[float]) -> dict[str, float]:
    return {"p50": percentile(values, 50), "p99": percentile(values, 99), "max": max(values)}


def run_one(
    primary: valkey.Valkey, replica: valkey.Valkey, pods: tuple[Pod, Pod], password: str | None, s: Settings
) -> dict[str, Any]:
    pod = pods[0]
    spec = WriterSpec(pod.address, pod.port, password, s.rate, s.value_size, s.keys, "lag:%06d")
    pids = tuple(p.container_pid("valkey") for p in pods)
    with Writer(spec) as writer:
        time.sleep(s.warmup)
        samples = sample(primary, replica, s.seconds, s.interval, pids)
        result = writer.stop()
    first, last = samples[0], samples[-1]
    stream_rate = (last.primary_offset - first.primary_offset) / (last.t_primary - first.t_primary)
    intervals = [b.t_primary - a.t_primary for a, b in itertools.pairwise(samples)]
    measured = lags(samples)
    quiet = [ms for ms, x in zip(measured["ms"], samples, strict=True) if not x.forking]
    return {
        "lag": {k: summary(v) for k, v in measured.items()},
        "ms_without_fork": summary(quiet) if quiet else None,
        "fork_share": 1 - len(quiet) / len(samples),
        "writes_per_s": result.rate,
        "errors": result.errors,
        "stream_bytes_per_s": stream_rate,
        "samples": len(samples),
        "sample_interval_p99_ms": percentile(intervals, 99) * 1000,
        "writer_max_behind_s": result.max_behind,
    }


def ping_rtt(host: str, port: int, password: str | None) -> float:
    with valkey.Valkey(host=host, port=port, password=password, socket_timeout=5) as c:
        c.ping()
        rtts = []
        for _ in range(5):
            t = time.monotonic()
            c.ping()
            rtts.append(time.monotonic() - t)
    return min(rtts) * 1000


def measure(results: Results, s: Settings) -> None:
    r1, r2 = render_pair()
    sizing = Sizing.rendered(r1, INSTANCE, stack_instances()[INSTANCE])
    password = client_password(r1, INSTANCE)
    runs: dict[str, dict[str, Any]] = {}
    with PodRunner() as runner:
        primary = runner.start_pod(r1, INSTANCE, 0, region="region1")
        replica = runner.start_pod(r2, INSTANCE, 0, region="region2")
        stock = stock_objects(r1)
        stock_primary = runner.start_pod(stock, "stock", 0, region="region1", publish=False)
        stock_replica = runner.start_pod(stock, "stock", 1, region="region1", publish=False)
        p, r = admin(r1, INSTANCE, primary.address, primary.port), admin(r2, INSTANCE, replica.address, replica.port)
        sp, sr = stock_client(stock_primary), stock_client(stock_replica)
        # Stock waits repl-diskless-sync-delay (5 s) before a full sync: start it now, use it later.
        sr.replicaof(stock_primary.address, stock_primary.port)
        caught_up(p, r, what="rendered replica")
        assert replication(r)["master_host"] == external_host(INSTANCE)

        log("lag: rendered, direct")
        runs["rendered direct"] = run_one(p, r, (primary, replica), password, s)
        caught_up(sp, sr, what="stock replica")
        log("lag: stock, direct")
        runs["stock direct"] = run_one(sp, sr, (stock_primary, stock_replica), None, s)
        rtt_direct = ping_rtt(primary.address, primary.port, password)

        with (
            ProxyProcess(runner, primary, latency=s.rtt / 2) as proxy,
            ProxyProcess(runner, stock_primary, latency=s.rtt / 2) as stock_proxy,
        ):
            runner.add_host(external_host(INSTANCE), proxy.host, region="region2")
            p.execute_command("CLIENT", "KILL", "TYPE", "replica")
            wait_for(lambda: proxy.stats()["connections"] >= 1, what="rendered replica connects through the proxy")
            caught_up(p, r, what="rendered replica via proxy")
            log("lag: rendered, through the proxy")
            runs["rendered proxy"] = run_one(p, r, (primary, replica), password, s)
            sr.replicaof(stock_proxy.host, stock_proxy.port)
            wait_for(lambda: stock_proxy.stats()["connections"] >= 1, what="stock replica connects through the proxy")
            caught_up(sp, sr, what="stock replica via proxy")
            log("lag: stock, through the proxy")
            runs["stock proxy"] = run_one(sp, sr, (stock_primary, stock_replica), None, s)
            rtt_proxy = ping_rtt(proxy.host, proxy.port, password)
        for c in (p, r, sp, sr):
            c.close()

    results.raw["lag"] = {
        "runs": runs,
        "rtt_ms": {"direct": rtt_direct, "proxy": rtt_proxy},
        "auto_aof_rewrite_min_size": sizing.aof_rewrite_min,
    }
    targets = {"direct": (50.0, "p99 < 50 ms"), "proxy": (2 * s.rtt * 1000, f"p99 < {2 * s.rtt * 1000:.0f} ms (2×RTT)")}
    for path, rtt in (("direct", rtt_direct), ("proxy", rtt_proxy)):
        got, base = runs[f"rendered {path}"], runs[f"stock {path}"]
        limit, target = targets[path]
        label = "direct" if path == "direct" else f"{s.rtt * 1000:.0f} ms RTT proxy"
        ms, bms = got["lag"]["ms"], base["lag"]["ms"]
        results.check(
            "2 replication lag",
            f"{label} (measured PING RTT {rtt:.1f} ms): ms p50/p99/max",
            f"{ms['p50']:.1f} / {ms['p99']:.1f} / {ms['max']:.1f}",
            f"{bms['p50']:.1f} / {bms['p99']:.1f} / {bms['max']:.1f}",
            target,
            ok=ms["p99"] < limit,
        )
        quiet = got["ms_without_fork"]
        if quiet:
            results.add(
                "2 replication lag",
                f"{label}: ms p50/p99/max outside AOF rewrites ({got['fork_share']:.0%} of samples had a fork)",
                f"{quiet['p50']:.1f} / {quiet['p99']:.1f} / {quiet['max']:.1f}",
            )
        kb, bkb = got["lag"]["bytes"], base["lag"]["bytes"]
        results.add(
            "2 replication lag",
            f"{label}: KiB p50/p99/max (replica's applied offset)",
            f"{kb['p50'] / 1024:,.0f} / {kb['p99'] / 1024:,.0f} / {kb['max'] / 1024:,.0f}",
            f"{bkb['p50'] / 1024:,.0f} / {bkb['p99'] / 1024:,.0f} / {bkb['max'] / 1024:,.0f}",
        )
        ack, back = got["lag"]["acked_bytes"], base["lag"]["acked_bytes"]
        results.add(
            "2 replication lag",
            f"{label}: KiB p50/p99/max, primary's view (ACKed once a second)",
            f"{ack['p50'] / 1024:,.0f} / {ack['p99'] / 1024:,.0f} / {ack['max'] / 1024:,.0f}",
            f"{back['p50'] / 1024:,.0f} / {back['p99'] / 1024:,.0f} / {back['max'] / 1024:,.0f}",
        )
        results.check(
            "2 replication lag",
            f"{label}: achieved writes/s (stream MiB/s)",
            f"{got['writes_per_s']:,.0f} ({got['stream_bytes_per_s'] / 2**20:.1f})",
            f"{base['writes_per_s']:,.0f} ({base['stream_bytes_per_s'] / 2**20:.1f})",
            f"{s.rate:,} ± 2 %",
            ok=abs(got["writes_per_s"] / s.rate - 1) <= 0.02 and got["errors"] == 0,
        )
    results.note(
        f"Replication lag: {s.rate:,} SETs/s of {s.value_size} B values over {s.keys:,} keys from a writer process "
        f"(raw RESP, batches every 5 ms); {s.seconds:.0f} s sampled every {s.interval * 1000:.0f} ms after "
        f"{s.warmup} s warm-up. ms = age of the replica's applied offset on the primary's offset timeline. "
        f"The proxy adds {s.rtt * 500:.0f} ms each way as a delay queue (no bandwidth-delay limit: TCP windows "
        f"do not see the added RTT). Rendered auto-aof-rewrite-min-size {mib(sizing.aof_rewrite_min)} "
        f"({AOF_MIN_FORMULA}); stock keeps Valkey's 64mb and, without AOF, does not rewrite."
    )
