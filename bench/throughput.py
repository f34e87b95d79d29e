"""1. Throughput: redis-benchmark SET/GET at pipeline 1 and 16, rendered primary vs stock valkey-server.

All servers run as pods of the runner (same binary, same security contexts, own network namespace);
redis-benchmark runs in each pod's network namespace against 127.0.0.1, so the client path is the
same. Nothing is pinned: the AOF's fsync thread and rewrite child use the other core as they would.

The machine is a VM whose CPU speed drifts by up to 2x within seconds, so runs are short (~0.3 s) and
interleaved: per repetition and test, the servers run back to back (order rotating), and the ratio
reported is the median of those per-round ratios; medians of req/s and their spread are shown.

Two more baselines: a second, identical stock pod (the noise floor of an A/A comparison) and stock with
``appendonly yes`` (CONFIG SET right after start, otherwise defaults), which separates what AOF
persistence costs from what the rest of the rendered config costs: the fair comparison for SETs.

The rendered primary is the stack file's ``sessions`` instance (maxmemory 2 GiB, AOF everysec,
``auto-aof-rewrite-min-size`` = min(maxmemory, storage ÷ 3) where stock keeps Valkey's 64mb),
authenticated as the application is (default user, ``-a``: redis-benchmark 7.0 does not read
REDISCLI_AUTH; the password is the mock's, on a local benchmark, visible in its argv).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

import valkey
from podrunner import Pod, PodRunner

from bench.common import (
    AOF_MIN_FORMULA,
    Results,
    Sizing,
    admin,
    client_password,
    in_netns,
    log,
    median,
    mib,
    render_pair,
    run,
    spread,
    stack_instances,
    stock_client,
    stock_objects,
    wait_for,
)

INSTANCE = "sessions"


@dataclass(frozen=True)
class Settings:
    repetitions: int = 20
    requests: tuple[tuple[int, int], ...] = ((1, 20_000), (16, 150_000))
    """(pipeline, requests per run): ~0.3 s per run on the reference machine: short pairs, many of them."""
    clients: int = 50
    size: int = 64
    keyspace: int = 100_000


def benchmark_argv(
    host: str, port: int, password: str | None, *, pipeline: int, requests: int, test: str, s: Settings
) -> list[str]:
    """One redis-benchmark run of ``test`` against ``host`` (an address or a name), CSV output."""
    argv = ["redis-benchmark", "-h", host, "-p", str(port)]
    if password is not None:
        argv += ["-a", password]
    argv += ["-n", str(requests), "-c", str(s.clients), "-d", str(s.size), "-r", str(s.keyspace)]
    return [*argv, "-P", str(pipeline), "-t", test, "--csv"]


def rps_of(output: str) -> float:
    """Requests per second from redis-benchmark's ``--csv`` output (one test)."""
    return float(next(csv.DictReader(io.StringIO(output)))["rps"])


def benchmark(pod: Pod, password: str | None, *, pipeline: int, requests: int, test: str, s: Settings) -> float:
    argv = benchmark_argv("127.0.0.1", pod.port, password, pipeline=pipeline, requests=requests, test=test, s=s)
    return rps_of(run(in_netns(pod, argv)))


def wait_idle(controls: list[valkey.Valkey]) -> None:
    """No server has a child (AOF rewrite, RDB save) left over from an earlier run: with two cores, it
    would slow whichever run comes next. Children started during a run count against that run."""

    def idle() -> bool:
        states = [c.info("persistence") for c in controls]
        return not any(p["aof_rewrite_in_progress"] or p["rdb_bgsave_in_progress"] for p in states)

    wait_for(idle, timeout=120, what="no AOF rewrite or RDB save in progress", interval=0.1)


def rounds(
    servers: dict[str, tuple[Pod, str | None]],
    controls: list[valkey.Valkey],
    s: Settings,
    *,
    repetitions: int,
    tests: dict[str, list[str]],
    prefix: str = "",
) -> tuple[dict[tuple[str, int, str], list[float]], dict[tuple[str, int, str], list[float]]]:
    """``repetitions`` rounds of every (pipeline, test) over the servers ``tests[test]`` names, back to
    back, the order rotating. Returns req/s per (server, pipeline, test) and the per-round ratios
    rendered/<base> (and stock-b/stock as "A/A" when both ran)."""
    rps: dict[tuple[str, int, str], list[float]] = {}
    pairs: dict[tuple[str, int, str], list[float]] = {}
    for rep in range(repetitions):
        for pipeline, requests in s.requests:
            for test, names in tests.items():
                order = names[rep % len(names) :] + names[: rep % len(names)]
                got = {}
                for name in order:
                    pod, pw = servers[name]
                    wait_idle(controls)
                    got[name] = benchmark(pod, pw, pipeline=pipeline, requests=requests, test=test.lower(), s=s)
                    rps.setdefault((name, pipeline, test), []).append(got[name])
                for base in names:
                    if base != "rendered":
                        pairs.setdefault((base, pipeline, test), []).append(got["rendered"] / got[base])
                if "stock-b" in got:
                    pairs.setdefault(("A/A", pipeline, test), []).append(got["stock-b"] / got["stock"])
        log(f"throughput: {prefix}repetition {rep + 1}/{repetitions} done")
    return rps, pairs


def measure(results: Results, s: Settings) -> None:
    r1, _ = render_pair()
    sizing = Sizing.rendered(r1, INSTANCE, stack_instances()[INSTANCE])
    password = client_password(r1, INSTANCE)
    with PodRunner() as runner:
        rendered = runner.start_pod(r1, INSTANCE, 0, region="region1")
        stock = runner.start_pod(stock_objects(r1), "stock", 0, region="region1", publish=False)
        stock_b = runner.start_pod(stock_objects(r1), "stock", 1, region="region1", publish=False)
        stock_aof = runner.start_pod(stock_objects(r1), "stock", 2, region="region1", publish=False)
        with stock_client(stock_aof) as c:
            c.config_set("appendonly", "yes")
        servers: dict[str, tuple[Pod, str | None]] = {
            "stock": (stock, None),
            "stock-b": (stock_b, None),
            "stock+aof": (stock_aof, None),
            "rendered": (rendered, password),
        }
        control = admin(r1, INSTANCE, rendered.address, rendered.port)
        controls = [stock_client(p) for p in (stock, stock_b, stock_aof)] + [control]
        for pod, pw in servers.values():  # warm-up: connections, allocator, first AOF writes
            benchmark(pod, pw, pipeline=16, requests=100_000, test="set", s=s)

        main = {"SET": ["stock", "rendered", "stock-b", "stock+aof"], "GET": ["stock", "rendered", "stock-b"]}
        rps, pairs = rounds(servers, controls, s, repetitions=s.repetitions, tests=main)
        rewrites = control.info("persistence")["aof_rewrites"]
        stock_rewrites = controls[2].info("persistence")["aof_rewrites"]
        for c in controls:
            c.close()

    results.raw["throughput"] = {
        "rps": {f"{n} P{p} {t}": v for (n, p, t), v in rps.items()},
        "ratios": {
            f"{'stock-b/stock' if n == 'A/A' else 'rendered/' + n} P{p} {t}": v for (n, p, t), v in pairs.items()
        },
        "aof_rewrites": {"rendered": rewrites, "stock+aof": stock_rewrites},
        "auto_aof_rewrite_min_size": sizing.aof_rewrite_min,
    }
    section = "1 throughput"
    for pipeline, _ in s.requests:
        for test in ("SET", "GET"):
            got = rps[("rendered", pipeline, test)]
            base = rps[("stock", pipeline, test)]
            ratio = median(pairs[("stock", pipeline, test)])
            results.check(
                section,
                f"{test} -P {pipeline}: rendered req/s vs stock",
                f"{median(got):,.0f} [{spread(got)}]; ratio {ratio:.2f}",
                f"{median(base):,.0f} [{spread(base)}]",
                "ratio ≥ 0.95",
                ok=ratio >= 0.95,
            )
            aa = pairs[("A/A", pipeline, test)]
            results.add(
                section,
                f"{test} -P {pipeline}: noise floor, stock vs an identical stock pod",
                f"ratio {median(aa):.2f} (per-repetition {min(aa):.2f}–{max(aa):.2f})",
            )
            if test == "SET":
                aof = rps[("stock+aof", pipeline, test)]
                ratio = median(pairs[("stock+aof", pipeline, test)])
                results.check(
                    section,
                    f"{test} -P {pipeline}: rendered vs stock+appendonly (the same persistence)",
                    f"ratio {ratio:.2f}",
                    f"{median(aof):,.0f} [{spread(aof)}]",
                    "ratio ≥ 0.95",
                    ok=ratio >= 0.95,
                )
    results.add(
        section,
        f"AOF rewrites during the section (rendered auto-aof-rewrite-min-size {mib(sizing.aof_rewrite_min)} = "
        f"{AOF_MIN_FORMULA})",
        f"rendered {rewrites}",
        f"stock+appendonly {stock_rewrites} (Valkey's 64mb)",
    )
    results.note(
        f"Throughput: `redis-benchmark -c {s.clients} -d {s.size} -r {s.keyspace} -P 1|16 -t set|get --csv` "
        f"in each pod's network namespace against 127.0.0.1; runs of "
        f"{', '.join(f'{n:,} requests at -P {p}' for p, n in s.requests)}, {s.repetitions} repetitions, "
        f"back to back and order rotating, none started while another server still had a fork child; ratio = "
        f"median of per-repetition ratios. Rendered `{INSTANCE}` (AOF everysec, maxmemory 2 GiB configured, "
        f"{mib(sizing.server_maxmemory)} with the backlog, AUTH) vs `valkey-server --protected-mode no` "
        f"(defaults: RDB `save 3600 1 300 100 60 10000`, no AOF) and the same with `appendonly yes`."
    )
