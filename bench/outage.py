"""3. Outage tolerance: the longest link cut, at the configured write rate, that heals with a partial resync.

An instance ``outage`` is rendered in both regions with ``replication.writeRate`` and
``replication.outageTolerance`` scaled down (256 KiB/s, 10 s) so cuts take seconds; the program sizes
the backlog as writeRate × (outageTolerance + 5 s), 3.75 MiB, the 5 s being for the replica's reconnect.
The replica follows ``outage.region1.example.com``, pointed at a FaultProxy (20 ms each way). A writer
produces exactly ``writeRate`` of replication stream (SETs whose RESP length is known; checked against
the primary's offset). Each cut is ``proxy.cut()`` (connections reset, new ones refused) for
0.5x/1x/1.3x/1.5x the configured outage, then ``restore()``; the outcome is read from the primary's
``sync_partial_ok`` / ``sync_full`` counters.

During each cut the primary's ``repl_backlog_first_byte_offset`` is watched: once it passes the
replica's offset + 1, a PSYNC can no longer be served, so "backlog covered" is measured directly (the
span of the backlog in seconds at this rate). The replica reconnects on its once-a-second cron, so the
link is down for up to a second longer than the cut.

A what-if renders the backlog without the reconnect allowance (writeRate × outageTolerance: the formula
of the first run) by rendering outageTolerance 5 s shorter, and repeats the 1x cut.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import valkey
from podrunner import PodRunner

from bench.common import (
    BACKLOG_FORMULA,
    Results,
    Sizing,
    admin,
    caught_up,
    client_password,
    external_host,
    log,
    render_pair,
    replication,
    wait_for,
)
from bench.proxyproc import ProxyProcess
from bench.writer import Writer, WriterSpec
from components.config.models import Instance
from components.sizing import RECONNECT_ALLOWANCE_SECONDS

INSTANCE = "outage"


@dataclass(frozen=True)
class Settings:
    write_rate: str = "256KiB"
    outage_tolerance: str = "10s"
    multipliers: tuple[float, ...] = (0.5, 1.0, 1.3, 1.5)
    without_allowance_multipliers: tuple[float, ...] = (1.0,)
    """What-if: outageTolerance rendered RECONNECT_ALLOWANCE_SECONDS shorter, so the backlog is
    writeRate × outageTolerance (no reconnect allowance, the first run's formula); cuts of these
    multiples of the configured outageTolerance, () skips it."""
    rtt: float = 0.040
    value_size: int = 1000
    keys: int = 2000


def instance(s: Settings, outage_tolerance: str | None = None) -> dict[str, Any]:
    return {
        INSTANCE: {
            "maxmemory": "64Mi",
            "dr": True,
            "replication": {"writeRate": s.write_rate, "outageTolerance": outage_tolerance or s.outage_tolerance},
        }
    }


def stats(c: valkey.Valkey) -> dict[str, int]:
    info = c.info("stats")
    return {k: int(info[k]) for k in ("sync_full", "sync_partial_ok", "sync_partial_err")}


def cut(primary: valkey.Valkey, replica: valkey.Valkey, proxy: ProxyProcess, seconds: float) -> dict[str, Any]:
    caught_up(primary, replica, what="before the cut")
    time.sleep(0.5)
    before = stats(primary)
    proxy.cut("reset")
    t_cut = time.monotonic()
    wait_for(lambda: replication(replica)["master_link_status"] == "down", what="link down")
    replica_offset = int(replication(replica)["master_repl_offset"])  # frozen while cut off
    lost_after = None
    restored_at = None
    deadline = time.monotonic() + seconds + 60
    while True:
        now = time.monotonic()
        if restored_at is None and now - t_cut >= seconds:
            missed = int(replication(primary)["master_repl_offset"]) - replica_offset
            proxy.restore()
            restored_at = now
        if lost_after is None:  # until the replica is back, or the backlog has moved past it
            first = int(replication(primary)["repl_backlog_first_byte_offset"])
            if first > replica_offset + 1:
                lost_after = time.monotonic() - t_cut
        if restored_at is not None and replication(replica)["master_link_status"] == "up":
            break
        if now > deadline:
            raise TimeoutError("the replica did not reconnect after the cut")
        time.sleep(0.02)
    down = time.monotonic() - t_cut
    caught_up(primary, replica, what="after the cut")
    after = stats(primary)
    delta = {k: after[k] - before[k] for k in after}
    outcome = "partial" if delta["sync_partial_ok"] and not delta["sync_full"] else "full"
    return {
        "cut_s": seconds,
        "link_down_s": down,
        "outcome": outcome,
        "delta": delta,
        "missed_bytes_at_restore": missed,
        "backlog_lost_after_s": lost_after,
    }


def run_ladder(
    runner: PodRunner, s: Settings, multipliers: tuple[float, ...], outage_tolerance: str | None = None
) -> dict[str, Any]:
    """Cuts of ``multipliers`` x the configured outageTolerance, with the backlog rendered from
    ``outage_tolerance`` if given (a what-if), else from the configured one."""
    tolerance_s = parse_duration(s.outage_tolerance)
    config = instance(s, outage_tolerance)
    r1, r2 = render_pair(config)
    backlog = Sizing.rendered(r1, INSTANCE, config[INSTANCE]).backlog
    primary_pod = runner.start_pod(r1, INSTANCE, 0, region="region1")
    with ProxyProcess(runner, primary_pod, latency=s.rtt / 2) as proxy:
        runner.add_host(external_host(INSTANCE), proxy.host, region="region2")
        replica_pod = runner.start_pod(r2, INSTANCE, 0, region="region2")
        p = admin(r1, INSTANCE, primary_pod.address, primary_pod.port)
        r = admin(r2, INSTANCE, replica_pod.address, replica_pod.port)
        assert int(p.config_get("repl-backlog-size")["repl-backlog-size"]) == backlog
        caught_up(p, r)
        rate = float(Instance.model_validate(instance(s)[INSTANCE]).replication.write_rate)
        spec = WriterSpec.for_stream_rate(
            primary_pod.address,
            primary_pod.port,
            client_password(r1, INSTANCE),
            rate,
            value_size=s.value_size,
            keys=s.keys,
            key_format="o:%06d",
            tick=0.01,
        )
        cuts = []
        with Writer(spec) as writer:
            time.sleep(1)
            start_offset, t0 = int(replication(p)["master_repl_offset"]), time.monotonic()
            for m in multipliers:
                log(f"outage: backlog {backlog:,} B, cutting the link for {m}x{tolerance_s:.0f} s")
                cuts.append({"multiplier": m, **cut(p, r, proxy, m * tolerance_s)})
            stream_rate = (int(replication(p)["master_repl_offset"]) - start_offset) / (time.monotonic() - t0)
            written = writer.stop()
        for c in (p, r):
            c.close()
        runner.remove_host(external_host(INSTANCE), region="region2")
    for pod in (replica_pod, primary_pod):
        pod.delete(grace=5)
    return {
        "backlog": backlog,
        "configured_rate": rate,
        "stream_rate": stream_rate,
        "writer_rate": written.byte_rate,
        "cuts": cuts,
    }


def parse_duration(text: str) -> float:
    return Instance.model_validate({"ttl": text}).ttl.total_seconds()  # type: ignore[union-attr]


def fmt_cut(c: dict[str, Any]) -> str:
    lost = c["backlog_lost_after_s"]
    return (
        f"{c['outcome']} (link down {c['link_down_s']:.1f} s, {c['missed_bytes_at_restore']:,} B written meanwhile"
        + (f"; backlog passed the replica after {lost:.2f} s" if lost is not None else "")
        + ")"
    )


def measure(results: Results, s: Settings) -> None:
    tolerance_s = parse_duration(s.outage_tolerance)
    with PodRunner() as runner:
        ladder = run_ladder(runner, s, s.multipliers)
        shorter = f"{tolerance_s - RECONNECT_ALLOWANCE_SECONDS:g}s"
        what_if = (
            run_ladder(runner, s, s.without_allowance_multipliers, outage_tolerance=shorter)
            if s.without_allowance_multipliers and tolerance_s > RECONNECT_ALLOWANCE_SECONDS
            else None
        )
    results.raw["outage"] = {"configured": ladder, "what_if_without_allowance": what_if}
    section = "3 outage tolerance"
    rate = ladder["configured_rate"]
    results.check(
        section,
        f"stream rate during the cuts (writeRate {s.write_rate}/s)",
        f"{ladder['stream_rate']:,.0f} B/s",
        f"{rate:,.0f} B/s configured",
        "± 2 %",
        ok=abs(ladder["stream_rate"] / rate - 1) <= 0.02,
    )
    results.add(
        section,
        "repl-backlog-size rendered",
        f"{ladder['backlog']:,} B",
        f"{BACKLOG_FORMULA} = {rate:,.0f} B/s × {tolerance_s + RECONNECT_ALLOWANCE_SECONDS:.0f} s",
    )
    for c in ladder["cuts"]:
        m = c["multiplier"]
        label = f"cut {c['cut_s']:.1f} s ({m:g}× outageTolerance)"
        if m <= 1.0:
            results.check(section, label, fmt_cut(c), "", "partial resync", ok=c["outcome"] == "partial")
        else:
            results.add(section, label, fmt_cut(c), "", "(beyond the configured outage)")
    lost = [c["backlog_lost_after_s"] for c in ladder["cuts"] if c["backlog_lost_after_s"] is not None]
    healed = [c["cut_s"] for c in ladder["cuts"] if c["outcome"] == "partial"]
    results.add(
        section,
        "longest cut healed partially / backlog span at this rate",
        f"{max(healed, default=0):.1f} s / "
        + (f"{min(lost):.2f} s" if lost else "not reached (no cut outlasted the backlog)"),
        f"backlog ÷ rate = {ladder['backlog'] / ladder['stream_rate']:.2f} s",
        f"≥ {tolerance_s:.0f} s",
    )
    for c in what_if["cuts"] if what_if else []:
        results.add(
            section,
            f"what-if: backlog without the reconnect allowance, writeRate × outageTolerance "
            f"({what_if['backlog']:,} B, the first run's formula), cut {c['cut_s']:.0f} s",
            fmt_cut(c),
            "",
            "(for comparison)",
        )
    results.note(
        f"Outage: instance `{INSTANCE}` rendered with writeRate {s.write_rate}, outageTolerance {s.outage_tolerance} "
        f"in both regions; a writer produces that replication stream ({s.value_size} B SETs over {s.keys} keys); "
        f"the replica reaches the primary through a FaultProxy at {s.rtt * 1000:.0f} ms RTT and each cut is "
        "`cut('reset')` … `restore()`. A full resync shows as sync_full +1 and sync_partial_err +1 on the primary."
    )
