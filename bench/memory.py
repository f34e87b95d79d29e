"""4. Memory: what a fork costs at the declared write rate, against the memory model's limit.

The model (components/sizing.py, README "Sizing") sizes each pod from the instance's declared
``replication.writeRate``: the server's maxmemory (dataset + backlog), the allocator's overhead,
what a fork makes the kernel copy while it lives at that rate, replica and client buffers. This
section measures, on real Valkey of both builds, the peak memory a pod is charged during the two
forks a pod makes: an AOF rewrite, and a full sync to a replica (a fresh pod, empty claim), while a
writer writes at 1x, 2x and 5x the declared rate. The limit must hold at 1x and 2x.

Scaled down 8x so a fill takes seconds: maxmemory 256Mi, the writeRate *unscaled*, and the
outageTolerance chosen so the backlog keeps its ratio to maxmemory. Every term of the model then
scales by 8 (the fork lives 8x shorter, so the same rate dirties 8x less), except the model's small
floors (``PROCESS_BASE``, ``BUFFER_SLACK``, ``CLIENTS_MIN``), which make the scaled limit a little
more generous; the table shows the model's terms. Two instances: the stack files' ``sessions``
(2Gi, 2MiB/s x 5m: backlog 30 % of maxmemory) and the program's defaults (2GiB, 1MiB/s x 60s).

The fork is slowed to the model's assumed ``FORK_RATE`` (``rdb-key-save-delay``, calibrated per
build with a BGREWRITEAOF): here a fork serialises far faster than the 64 MiB/s the model assumes
for a transfer to region 2 through TLS, and a faster fork copies less.

A sampler thread reads, every 20 ms, ``VmRSS`` of the primary's valkey-server (the container's PID 1)
and of its fork child (``/proc/PID/task/PID/children``), and the child's private pages
(``/proc/CHILD/smaps_rollup`` Private_Clean + Private_Dirty). Pages still shared between server and
child are counted once by the memory cgroup, so **server RSS + child private** is what the container
limit is charged (page cache aside: reclaimable).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import valkey
from podrunner import Pod, PodRunner

from bench.common import (
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
from components.config.models import Instance
from components.sizing import FORK_RATE, memory_model, round_up, server_maxmemory_bytes

INSTANCE = "sessions"
KEY_FORMAT = "key:%012d"  # redis-benchmark's __rand_int__ keys: the writers overwrite what the fill wrote
IMAGES = {"8.1.8": "valkey/valkey:8.1.8-alpine", "9.1.2": "valkey/valkey:9.1.2-alpine"}
OLD_FACTOR = 1 / 0.45
"""The limit before the model: the server's maxmemory / 0.45 for every instance."""


@dataclass(frozen=True)
class Scenario:
    label: str
    write_rate: str
    """The unscaled writeRate: the load, and what the model sizes the fork's copy from."""
    outage_tolerance: str
    """Chosen so the backlog, writeRate x (outageTolerance + 5 s), is the full-size one / 8."""


@dataclass(frozen=True)
class Settings:
    maxmemory: str = "256Mi"
    scenarios: tuple[Scenario, ...] = (
        Scenario("stack files' sessions (2Gi, 2MiB/s × 5m)", "2MiB", "33s"),
        Scenario("program defaults (2GiB, 1MiB/s × 60s)", "1MiB", "3s"),
    )
    builds: tuple[str, ...] = ("8.1.8", "9.1.2")
    multiples: tuple[int, ...] = (1, 2, 5)
    value_size: int = 1000
    keyspace: int = 400_000
    fill_requests: int = 600_000
    """~310k distinct keys of ~1 KiB: past the dataset budget (maxmemory), so it evicts."""
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


def forking(c: valkey.Valkey) -> bool:
    p = c.info("persistence")
    return bool(p["aof_rewrite_in_progress"] or p["rdb_bgsave_in_progress"] or p["aof_rewrite_scheduled"])


def wait_no_child(c: valkey.Valkey) -> None:
    wait_for(lambda: not forking(c), timeout=300, what="no fork child", interval=0.1)


def timed_rewrite(p: valkey.Valkey) -> float:
    """BGREWRITEAOF; seconds until the child is gone (polled every 20 ms)."""
    wait_no_child(p)
    started = time.monotonic()
    p.execute_command("BGREWRITEAOF")
    wait_for(lambda: not forking(p), timeout=300, what="AOF rewrite done", interval=0.02)
    return time.monotonic() - started


def calibrate(p: valkey.Valkey, target: float) -> tuple[int, float, float]:
    """``rdb-key-save-delay`` making a fork of this dataset last about ``target`` seconds (within
    10 %, or longer: a longer fork copies more, so it errs on the model's safe side): the delay, and
    the rewrite's seconds without and with it. The delay is -N: a 1 us sleep (which lasts far longer:
    the timer slack) for one key in N; N is scaled by what the last try missed by, four tries."""
    natural = timed_rewrite(p)
    if natural >= target:
        return 0, natural, natural
    n, slowed = 16, natural
    for _ in range(4):
        p.config_set("rdb-key-save-delay", -n)
        slowed = timed_rewrite(p)
        if target <= slowed <= 1.1 * target:
            break
        n = max(1, round(n * (slowed - natural) / (1.05 * target - natural)))
    if slowed < target:  # too short: sleep for every key that does not already
        n = max(1, n - 1)
        p.config_set("rdb-key-save-delay", -n)
        slowed = timed_rewrite(p)
    return -n, natural, slowed


def full_sync(
    runner: PodRunner,
    r2: Any,
    p: valkey.Valkey,
    *,
    old_replica: Pod | None,
    writer: WriterSpec,
    sampler: RssSampler,
    sync_timeout: float = 90.0,
) -> tuple[Pod, dict[str, Any]]:
    """Delete the replica (and its claim), start a fresh one while ``writer`` writes; return it once
    it has caught up, or after ``sync_timeout`` (a sync its output buffer limit cuts each time never
    does), with the primary's INFO afterwards."""
    if old_replica is not None:
        old_replica.delete(grace=5)
    stats = p.info("stats")
    full_before = int(stats["sync_full"])
    cuts_before = int(stats.get("client_output_buffer_limit_disconnections", 0))
    with Writer(writer) as w:
        time.sleep(1.0)
        started = time.monotonic()
        replica = runner.start_pod(r2, INSTANCE, 0, region="region2", wait_ready=None)
        sampler.replica_pid = replica.container_pid("valkey")
        completed = True
        with admin(r2, INSTANCE, replica.address, replica.port) as r:
            wait_for(lambda: _answers(r), timeout=60, what="fresh replica answers")
            try:
                caught_up(p, r, timeout=sync_timeout, what="fresh replica")
            except TimeoutError:  # cut by its output buffer limit again and again: a sync loop
                completed = False
        took = time.monotonic() - started
        time.sleep(0.5)
        result = w.stop()
    info = {**p.info("persistence"), **p.info("memory"), **p.info("stats")}
    return replica, {
        "seconds": took,
        "completed": completed,
        "cuts": int(info.get("client_output_buffer_limit_disconnections", 0)) - cuts_before,
        "full_syncs": int(info["sync_full"]) - full_before,
        "writes_per_s": result.rate,
        "write_errors": result.errors,
        "cow": int(info["rdb_last_cow_size"]),
    }


def rewrite_under_writes(p: valkey.Valkey, writer: WriterSpec) -> dict[str, Any]:
    with Writer(writer) as w:
        time.sleep(1.0)
        seconds = timed_rewrite(p)
        result = w.stop()
    return {
        "seconds": seconds,
        "writes_per_s": result.rate,
        "write_errors": result.errors,
        "cow": int(p.info("persistence")["aof_last_cow_size"]),
    }


def _answers(c: valkey.Valkey) -> bool:
    try:
        return bool(c.ping())
    except valkey.exceptions.ValkeyError:
        return False


def model_of(config: dict[str, Any]) -> dict[str, Any]:
    inst = Instance.model_validate(config)
    model = memory_model(inst)
    server = server_maxmemory_bytes(inst)
    return {
        **{k: v for k, v in vars(model).items() if k != "explicit"},
        "limit": model.limit,
        "old_limit": round_up(server * OLD_FACTOR, 64 * MIB),
    }


def run_scenario(runner: PodRunner, s: Settings, sc: Scenario, build: str, sampler: RssSampler) -> dict[str, Any]:
    config = scenario_instance(s, sc)
    label = f"{sc.label}, Valkey {build}"
    r1, r2 = render_pair(config, image=IMAGES[build])
    sizing = Sizing.rendered(r1, INSTANCE, config[INSTANCE])
    model = model_of(config[INSTANCE])
    assert model["limit"] == sizing.limit
    password = client_password(r1, INSTANCE)
    sampler.phase = f"{label}|setup"
    primary = runner.start_pod(r1, INSTANCE, 0, region="region1")
    sampler.primary_pid = primary.container_pid("valkey")
    sampler.replica_pid = 0
    p = admin(r1, INSTANCE, primary.address, primary.port)
    # A first replica creates the backlog (kept without replicas: repl-backlog-ttl 0).
    replica = runner.start_pod(r2, INSTANCE, 0, region="region2")
    with admin(r2, INSTANCE, replica.address, replica.port) as r:
        caught_up(p, r)
    replica.delete(grace=5)

    log(f"memory: {label}: filling to maxmemory {sizing.server_maxmemory / MIB:.0f} MiB")
    sampler.phase = f"{label}|fill"
    fill = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(primary.port), "-a", password, "-t", "set"]
    fill += ["-n", str(s.fill_requests), "-r", str(s.keyspace), "-d", str(s.value_size), "-P", "32", "-c", "20"]
    run(in_netns(primary, fill), timeout=600)
    wait_no_child(p)
    sampler.phase = f"{label}|rest"
    time.sleep(1.0)
    filled = {**p.info("memory"), **p.info("stats"), **p.info("replication"), **p.info("persistence")}
    delay, natural, slowed = calibrate(p, model["fork_seconds"])
    log(f"memory: {label}: fork {natural:.1f} s, slowed to {slowed:.1f} s (rdb-key-save-delay {delay})")

    phases: dict[str, dict[str, Any]] = {}
    replica_pod: Pod | None = None
    rate = float(Instance.model_validate(config[INSTANCE]).replication.write_rate)
    for n in s.multiples:
        spec = WriterSpec.for_stream_rate(primary.address, primary.port, password, n * rate, **_kw(s))
        wait_no_child(p)
        log(f"memory: {label}: AOF rewrite while writing at {n}x ({spec.rate:,.0f} SETs/s)")
        sampler.phase = f"{label}|rewrite-{n}x"
        phases[f"rewrite-{n}x"] = rewrite_under_writes(p, spec)
        wait_no_child(p)
        log(f"memory: {label}: full resync while writing at {n}x")
        sampler.phase = f"{label}|sync-{n}x"
        replica_pod, phases[f"sync-{n}x"] = full_sync(
            runner, r2, p, old_replica=replica_pod, writer=spec, sampler=sampler
        )
        sampler.phase = f"{label}|after-{n}x"
        for phase in (f"rewrite-{n}x", f"sync-{n}x"):
            phases[phase]["stream_rate"] = spec.rate * spec.command_bytes()
    p.close()
    assert replica_pod is not None
    replica_pod.delete(grace=5)
    primary.delete(grace=5)
    sampler.primary_pid = sampler.replica_pid = 0
    return {
        "model": model,
        "calibration": {"delay": delay, "natural_seconds": natural, "slowed_seconds": slowed},
        "filled": {
            k: filled[k]
            for k in (
                "used_memory",
                "used_memory_rss",
                "used_memory_dataset",
                "evicted_keys",
                "repl_backlog_histlen",
                "mem_fragmentation_ratio",
            )
        },
        "phases": phases,
    }


def _kw(s: Settings) -> dict[str, Any]:
    return {"value_size": s.value_size, "keys": s.keyspace, "key_format": KEY_FORMAT}


def measure(results: Results, s: Settings) -> None:
    sampler = RssSampler(s.interval).start()
    out: dict[str, Any] = {}
    try:
        with PodRunner() as runner:
            for build in s.builds:
                for sc in s.scenarios:
                    out[f"{sc.label}, Valkey {build}"] = run_scenario(runner, s, sc, build, sampler)
    finally:
        sampler.stop()
    for label, data in out.items():
        prefix = label + "|"
        data["peaks"] = {k.removeprefix(prefix): vars(v) for k, v in sampler.peaks.items() if k.startswith(prefix)}
        data["replica_peaks"] = {
            k.removeprefix(prefix): vars(v) for k, v in sampler.replica_peaks.items() if k.startswith(prefix)
        }
    results.raw["memory"] = out
    report(results, s, out)


def report(results: Results, s: Settings, out: dict[str, Any]) -> None:
    section = "4 memory"
    for label, d in out.items():
        model, cal = d["model"], d["calibration"]
        limit = model["limit"]
        server = model["server_maxmemory"]
        results.add(
            section,
            f"{label} ÷ 8: limit {mib(limit)} = {limit / server:.2f} × server maxmemory {mib(server)} "
            f"(before the model: {mib(model['old_limit'])})",
            f"terms: fragmentation {mib(model['fragmentation'])}, fork copy {mib(model['fork_copy'])} "
            f"(a fork of {model['fork_seconds']:.1f} s), replica buffer {mib(model['replica_buffer'])}, "
            f"clients {mib(model['clients'])}",
            f"RSS at rest {mib(d['peaks']['rest']['server_rss'])}; fork {cal['natural_seconds']:.1f} s here, "
            f"slowed to {cal['slowed_seconds']:.1f} s (rdb-key-save-delay {cal['delay']})",
        )
        for n in s.multiples:
            for kind, what in (("rewrite", "AOF rewrite"), ("sync", "full resync")):
                phase = d["phases"][f"{kind}-{n}x"]
                sampled = d["peaks"].get(f"{kind}-{n}x")
                peak = sampled["charged"] if sampled else 0
                must = n <= 2 or not sampled  # a phase without samples measured nothing: a miss
                done = ""
                if kind == "sync":
                    done = (
                        f", {phase['full_syncs']} full sync(s)"
                        if phase["completed"]
                        else f", never completed: cut {phase['cuts']} times by the replica buffer limit"
                    )
                results.check(
                    section,
                    f"  {what} at {n}× writeRate ({phase['stream_rate'] / MIB:.1f} MiB/s), fork/sync "
                    f"{phase['seconds']:.1f} s{done}, CoW {mib(phase['cow'])}: peak charged",
                    f"{mib(peak)} = {peak / server:.2f} ×",
                    f"limit {mib(limit)} (room {mib(limit - peak)})",
                    "< limit" if must else "(where it stops holding)",
                    ok=bool(sampled) and (peak < limit or not must),
                )
        for n in s.multiples:
            mine = (f"sync-{n}x", f"after-{n}x")
            replica_peak = max(
                (v["charged"] for k, v in d["replica_peaks"].items() if k.split("|")[0] in mine), default=0
            )
            results.check(
                section,
                f"  the fresh replica of the {n}× resync (same limit): peak charged while it syncs and after",
                f"{mib(replica_peak)} = {replica_peak / server:.2f} ×",
                f"limit {mib(limit)} (room {mib(limit - replica_peak)})",
                "< limit" if n <= 2 else "(where it stops holding)",
                ok=replica_peak < limit or n > 2,
            )
    results.note(
        f"Memory: maxmemory {s.maxmemory} configured (the server's is that plus the backlog), "
        f"values of {s.value_size} B over {s.keyspace:,} keys (redis-benchmark fill of {s.fill_requests:,} SETs, "
        f"-P 32); forks slowed to the model's {FORK_RATE // MIB} MiB/s; RSS sampled every "
        f"{s.interval * 1000:.0f} ms. 'charged' = server VmRSS + fork child's Private_Clean+Private_Dirty "
        "(shared pages once, as the memory cgroup counts them)."
    )
