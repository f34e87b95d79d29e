"""4. Memory headroom: a full resync of a full instance, while writes go on, against the rendered limit.

Scaled down 8x with the same ratios: maxmemory 256Mi and writeRate / 8, outageTolerance unchanged, so
the backlog keeps its ratio to maxmemory and the program derives the limit as it would at full size:
the server's maxmemory = maxmemory + backlog (Valkey counts the backlog inside maxmemory), the limit
1 / DEFAULT_MAXMEMORY_SHARE (2.22) times that in 64Mi steps (a fork may copy the whole dataset). Two
instances: the stack files' ``sessions`` (2Gi, 2MiB/s x 5m: backlog 30 % of maxmemory) and the program's defaults (2GiB,
1MiB/s x 60s: 3 %).

Per instance: the primary starts, a replica syncs once (the backlog exists from then on, and is kept:
``repl-backlog-ttl 0``) and is deleted; redis-benchmark fills the primary past maxmemory (1000 B values,
allkeys-lru evicts; the rendered ``auto-aof-rewrite-min-size`` lets the AOF reach maxmemory before the
first rewrite); then, twice, a writer starts and a fresh replica (new pod, empty claim) forces a
full resync, at two write rates:

- the instance's *unscaled* writeRate: copy-on-write depends on the share of pages written while the
  fork lives, i.e. on the write rate relative to how fast the child serialises, not on the dataset size,
  so the full-size rate is the faithful one for a scaled-down dataset;
- 20k SETs/s of 1000 B (~20 MiB/s, the lag benchmark's load): a stress case.

A sampler thread reads, every 20 ms, ``VmRSS`` of the primary's valkey-server (the container's PID 1)
and of its fork child (``/proc/PID/task/PID/children``), and the child's private pages
(``/proc/CHILD/smaps_rollup`` Private_Clean + Private_Dirty). Pages still shared between server and
child are counted once by the kernel's memory cgroup, so **server RSS + child private** is what the
container limit is charged (page cache aside: reclaimable); the plain sum of the two RSS counts shared
pages twice and is shown as asked. The fill's own AOF rewrites (forks at full size under max-rate
writes) are reported too.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import valkey
from podrunner import Pod, PodRunner

from bench.common import (
    LIMIT_FORMULA,
    MIB,
    Results,
    Sizing,
    admin,
    caught_up,
    client_password,
    in_netns,
    log,
    mib,
    render_pair,
    run,
    wait_for,
)
from bench.writer import Writer, WriterSpec

INSTANCE = "sessions"
KEY_FORMAT = "key:%012d"  # redis-benchmark's __rand_int__ keys: the writers overwrite what the fill wrote


@dataclass(frozen=True)
class Scenario:
    label: str
    write_rate: str
    """Scaled (÷8) writeRate: what the program derives backlog and limit from."""
    full_rate: float
    """The unscaled writeRate, bytes/s: the write load during the sync."""
    outage_tolerance: str


@dataclass(frozen=True)
class Settings:
    maxmemory: str = "256Mi"
    scenarios: tuple[Scenario, ...] = (
        Scenario("stack files' sessions (2Gi, 2MiB/s × 5m)", "256KiB", 2 * MIB, "5m"),
        Scenario("program defaults (2GiB, 1MiB/s × 60s)", "128KiB", 1 * MIB, "60s"),
    )
    value_size: int = 1000
    keyspace: int = 400_000
    fill_requests: int = 600_000
    """~310k distinct keys of ~1 KiB: past the dataset budget (maxmemory) of both scenarios, so it evicts."""
    stress_rate: int = 20_000
    interval: float = 0.02


def kib_field(text: str, name: str) -> int:
    for line in text.splitlines():
        if line.startswith(name):
            return int(line.split()[1]) * 1024
    return 0


def read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def children(pid: int) -> list[int]:
    return [int(c) for c in read(f"/proc/{pid}/task/{pid}/children").split()]


@dataclass
class Peak:
    server_rss: int = 0
    child_rss: int = 0
    rss_sum: int = 0
    charged: int = 0
    """server RSS + child private: what the memory cgroup is charged."""
    children: set[str] = field(default_factory=set)
    samples: int = 0

    def add(self, server_rss: int, child_rss: int, child_private: int, title: str) -> None:
        self.samples += 1
        self.server_rss = max(self.server_rss, server_rss)
        self.child_rss = max(self.child_rss, child_rss)
        self.rss_sum = max(self.rss_sum, server_rss + child_rss)
        self.charged = max(self.charged, server_rss + child_private)
        if title:
            self.children.add(title)


class RssSampler:
    """Samples the primary (and the current replica) every ``interval`` into per-phase peaks."""

    def __init__(self, interval: float):
        self.interval = interval
        self.primary_pid = 0
        self.replica_pid = 0
        self.phase = "idle"
        self.peaks: dict[str, Peak] = {}
        self.replica_peaks: dict[str, Peak] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    @staticmethod
    def measure(pid: int) -> tuple[int, int, int, str]:
        rss = kib_field(read(f"/proc/{pid}/status"), "VmRSS:")
        child_rss = child_private = 0
        title = ""
        for child in children(pid):
            child_rss += kib_field(read(f"/proc/{child}/status"), "VmRSS:")
            rollup = read(f"/proc/{child}/smaps_rollup")
            child_private += kib_field(rollup, "Private_Clean:") + kib_field(rollup, "Private_Dirty:")
            title = read(f"/proc/{child}/cmdline").replace("\0", " ").strip().split(" ")[0]
        return rss, child_rss, child_private, title

    def _run(self) -> None:
        next_tick = time.monotonic()
        while not self._stop.is_set():
            phase = self.phase
            for pid, peaks in ((self.primary_pid, self.peaks), (self.replica_pid, self.replica_peaks)):
                if pid:
                    sample = self.measure(pid)
                    peaks.setdefault(phase, Peak()).add(*sample)
                    # and per kind of fork child, to tell an AOF rewrite from the sync's RDB child
                    peaks.setdefault(f"{phase}|{sample[3] or 'no child'}", Peak()).add(*sample)
            next_tick += self.interval
            time.sleep(max(0.0, next_tick - time.monotonic()))


def scenario_instance(s: Settings, sc: Scenario) -> dict[str, Any]:
    return {
        INSTANCE: {
            "maxmemory": s.maxmemory,
            "maxmemoryPolicy": "allkeys-lru",
            "dr": True,
            "replication": {"writeRate": sc.write_rate, "outageTolerance": sc.outage_tolerance},
        }
    }


def wait_no_child(c: valkey.Valkey) -> None:
    def idle() -> bool:
        p = c.info("persistence")
        return not (p["aof_rewrite_in_progress"] or p["rdb_bgsave_in_progress"] or p["aof_rewrite_scheduled"])

    wait_for(idle, timeout=120, what="no fork child", interval=0.1)


def full_sync(
    runner: PodRunner, r2: Any, p: valkey.Valkey, *, old_replica: Pod | None, writer: WriterSpec, sampler: RssSampler
) -> tuple[Pod, dict[str, Any]]:
    """Delete the replica (and its claim), start a fresh one while ``writer`` writes; return it once
    it has caught up, with the primary's INFO afterwards."""
    if old_replica is not None:
        old_replica.delete(grace=5)
    full_before = int(p.info("stats")["sync_full"])
    with Writer(writer) as w:
        time.sleep(1.0)
        started = time.monotonic()
        replica = runner.start_pod(r2, INSTANCE, 0, region="region2", wait_ready=None)
        sampler.replica_pid = replica.container_pid("valkey")
        with admin(r2, INSTANCE, replica.address, replica.port) as r:
            wait_for(lambda: _answers(r), timeout=60, what="fresh replica answers")
            caught_up(p, r, timeout=180, what="fresh replica")
        took = time.monotonic() - started
        time.sleep(0.5)
        result = w.stop()
    info = {**p.info("persistence"), **p.info("memory"), **p.info("stats")}
    info["sync_seconds"] = took
    info["full_syncs"] = int(info["sync_full"]) - full_before
    info["writes_per_s"] = result.rate
    info["write_errors"] = result.errors
    return replica, info


def _answers(c: valkey.Valkey) -> bool:
    try:
        return bool(c.ping())
    except valkey.exceptions.ValkeyError:
        return False


def run_scenario(runner: PodRunner, s: Settings, sc: Scenario, sampler: RssSampler) -> dict[str, Any]:
    config = scenario_instance(s, sc)
    r1, r2 = render_pair(config)
    sizing = Sizing.rendered(r1, INSTANCE, config[INSTANCE])
    password = client_password(r1, INSTANCE)
    sampler.phase = f"{sc.label}|setup"  # not the previous scenario's last phase
    primary = runner.start_pod(r1, INSTANCE, 0, region="region1")
    sampler.primary_pid = primary.container_pid("valkey")
    sampler.replica_pid = 0
    p = admin(r1, INSTANCE, primary.address, primary.port)
    # A first replica creates the backlog (kept without replicas: repl-backlog-ttl 0).
    replica = runner.start_pod(r2, INSTANCE, 0, region="region2")
    with admin(r2, INSTANCE, replica.address, replica.port) as r:
        caught_up(p, r)
    replica.delete(grace=5)

    log(f"memory: {sc.label}: filling to maxmemory {sizing.server_maxmemory / MIB:.0f} MiB")
    sampler.phase = f"{sc.label}|fill"
    fill = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(primary.port), "-a", password, "-t", "set"]
    fill += ["-n", str(s.fill_requests), "-r", str(s.keyspace), "-d", str(s.value_size), "-P", "32", "-c", "20"]
    run(in_netns(primary, fill), timeout=600)
    wait_no_child(p)
    sampler.phase = f"{sc.label}|rest"
    time.sleep(1.0)
    filled = {**p.info("memory"), **p.info("stats"), **p.info("replication"), **p.info("persistence")}

    syncs = {}
    replica_pod: Pod | None = None
    for name, spec in (
        ("config", WriterSpec.for_stream_rate(primary.address, primary.port, password, sc.full_rate, **_kw(s))),
        ("stress", WriterSpec(primary.address, primary.port, password, s.stress_rate, **_kw(s))),
    ):
        wait_no_child(p)
        log(f"memory: {sc.label}: full resync while writing ({name}: {spec.rate:,.0f} SETs/s)")
        sampler.phase = f"{sc.label}|sync-{name}"
        replica_pod, syncs[name] = full_sync(runner, r2, p, old_replica=replica_pod, writer=spec, sampler=sampler)
        sampler.phase = f"{sc.label}|after-{name}"
        syncs[name]["stream_rate"] = spec.rate * spec.command_bytes()
    p.close()
    assert replica_pod is not None
    replica_pod.delete(grace=5)
    primary.delete(grace=5)
    sampler.primary_pid = sampler.replica_pid = 0
    return {
        "limit": sizing.limit,
        "maxmemory": sizing.maxmemory,
        "server_maxmemory": sizing.server_maxmemory,
        "backlog": sizing.backlog,
        "aof_rewrite_min": sizing.aof_rewrite_min,
        "filled": {
            k: filled[k]
            for k in (
                "used_memory",
                "used_memory_rss",
                "used_memory_dataset",
                "mem_not_counted_for_evict",
                "mem_fragmentation_ratio",
                "evicted_keys",
                "repl_backlog_histlen",
                "aof_last_cow_size",
                "aof_rewrites",
            )
        },
        "syncs": {
            n: {
                k: v.get(k)
                for k in (
                    "sync_seconds",
                    "full_syncs",
                    "writes_per_s",
                    "write_errors",
                    "stream_rate",
                    "rdb_last_cow_size",
                    "aof_last_cow_size",
                    "used_memory_peak",
                    "mem_total_replication_buffers",
                )
            }
            for n, v in syncs.items()
        },
    }


def _kw(s: Settings) -> dict[str, Any]:
    return {"value_size": s.value_size, "keys": s.keyspace, "key_format": KEY_FORMAT}


def measure(results: Results, s: Settings) -> None:
    sampler = RssSampler(s.interval).start()
    out: dict[str, Any] = {}
    try:
        with PodRunner() as runner:
            for sc in s.scenarios:
                out[sc.label] = run_scenario(runner, s, sc, sampler)
    finally:
        sampler.stop()
    for label, data in out.items():
        data["peaks"] = {k.split("|", 1)[1]: vars(v) for k, v in sampler.peaks.items() if k.startswith(label)}
        data["replica_peaks"] = {
            k.split("|", 1)[1]: vars(v) for k, v in sampler.replica_peaks.items() if k.startswith(label)
        }
    results.raw["memory"] = out
    report(results, s, out)


def report(results: Results, s: Settings, out: dict[str, Any]) -> None:
    section = "4 memory headroom"
    for label, d in out.items():
        limit = d["limit"]
        f = d["filled"]
        rest = d["peaks"]["rest"]
        results.add(
            section,
            f"{label} ÷ 8: limit {mib(limit)} = {LIMIT_FORMULA}: maxmemory {mib(d['maxmemory'])} + "
            f"backlog {mib(d['backlog'])} = server maxmemory {mib(d['server_maxmemory'])}",
            f"full: used_memory {mib(f['used_memory'])}, dataset {mib(f['used_memory_dataset'])}, "
            f"backlog {mib(f['repl_backlog_histlen'])}, evicted {f['evicted_keys']:,} keys, "
            f"{f['aof_rewrites']} AOF rewrite(s) while filling",
            f"RSS at rest {mib(rest['server_rss'])}",
        )
        for phase in (
            "fill|valkey-aof-rewrite",
            "sync-config|valkey-rdb-to-replicas",
            "sync-stress|valkey-rdb-to-replicas",
        ):
            peak = d["peaks"].get(phase)
            if peak is None:
                continue
            if phase.startswith("sync"):
                sync = d["syncs"][phase.split("|")[0].removeprefix("sync-")]
                what = (
                    f"full resync, writes at {sync['writes_per_s']:,.0f}/s ({sync['stream_rate'] / MIB:.1f} MiB/s), "
                    f"{sync['sync_seconds']:.1f} s, CoW {mib(sync['rdb_last_cow_size'] or 0)}"
                )
            else:
                what = f"AOF rewrite while filling at max rate, CoW {mib(d['filled']['aof_last_cow_size'])}"
            results.check(
                section,
                f"  {what}: peak server RSS + child private (charged) / server / child / sum of RSS",
                f"{mib(peak['charged'])} / {mib(peak['server_rss'])} / {mib(peak['child_rss'])} / "
                f"{mib(peak['rss_sum'])}",
                f"limit {mib(limit)} (headroom {mib(limit - peak['charged'])})",
                "charged < limit",
                ok=peak["charged"] < limit,
            )
        replica_peak = max((v["charged"] for v in d["replica_peaks"].values()), default=0)
        worst = max(*(v["charged"] for k, v in d["peaks"].items() if "|" in k), replica_peak)
        aof = [v for k, v in d["peaks"].items() if k.startswith("sync") and k.endswith("valkey-aof-rewrite")]
        if aof:
            peak = max(aof, key=lambda v: v["charged"])
            results.check(
                section,
                "  AOF rewrite started by the writes during/after a resync: charged / server / child / sum",
                f"{mib(peak['charged'])} / {mib(peak['server_rss'])} / {mib(peak['child_rss'])} / "
                f"{mib(peak['rss_sum'])}",
                f"limit {mib(limit)} (headroom {mib(limit - peak['charged'])})",
                "charged < limit",
                ok=peak["charged"] < limit,
            )
        results.check(
            section,
            "  replica (same limit): peak RSS + child private while syncing and after",
            mib(replica_peak),
            f"limit {mib(limit)}",
            "< limit",
            ok=replica_peak < limit,
        )
        results.check(
            section,
            "  worst charged peak (primary or replica, any phase): MiB = × configured / × server maxmemory",
            f"{mib(worst)} = {worst / d['maxmemory']:.2f} × / {worst / d['server_maxmemory']:.2f} ×",
            f"limit {mib(limit)} (headroom {mib(limit - worst)})",
            "worst < limit",
            ok=worst < limit,
        )
    results.note(
        f"Memory: maxmemory {s.maxmemory} configured (the server's is that plus the backlog), "
        f"values of {s.value_size} B over {s.keyspace:,} keys "
        f"(redis-benchmark fill of {s.fill_requests:,} SETs, -P 32); RSS sampled every {s.interval * 1000:.0f} ms. "
        "'charged' = server VmRSS + fork child's Private_Clean+Private_Dirty (shared pages once, as the memory "
        "cgroup counts them); 'sum of RSS' counts pages shared by server and child twice."
    )
