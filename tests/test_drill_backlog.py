"""Drill: a DR link cut of exactly ``outageTolerance`` heals with a partial resync, and would not
without the reconnect allowance in the backlog (``writeRate x (outageTolerance + 5 s)``).

The stack files tolerate 5-minute outages at 2 MiB/s; the drill scales that down to what it can
wait for - 10 s at 256 KiB/s - and otherwise runs region 1's and region 2's sessions pods as
rendered (TLS off, as in tests/test_drills.py), on every supported Valkey build. The writer keeps
the replication stream at exactly ``writeRate`` bytes per second. The link is cut for exactly
``outageTolerance`` and restored right after one of the replica's refused retries: the worst moment,
since it retries once a second, so the next try and the handshake come up to a second later, all the
while the primary writes on (a restore that happens to land just before a retry would hide the
reconnect time, and the need for the allowance with it). Then the same cut again with the
primary's backlog set, live, to ``writeRate x outageTolerance`` - what the backlog would be without
the allowance: the heal must then be a full resync.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import harness
import needs
import pytest
from drills_support import StreamWriter, admin, app, caught_up, link_up
from podrunner import PodRunner
from replies import info
from valkey_process import BUILDS, wait_for

pytestmark = needs.root

WRITE_RATE = 256 * 1024  # bytes/s of replication stream
OUTAGE = 10  # seconds: outageTolerance
EXTERNAL1 = "sessions.region1.example.com"


def config(build: str) -> dict[str, Any]:
    """Both stacks' files, TLS off (as for every pod-runner test), with ``build``'s image and a
    small backlog: 256 KiB/s for OUTAGE seconds."""
    return {
        **harness.NO_TLS,
        **harness.SINGLE_PODS,
        "image": f"valkey/valkey:{build}-alpine",
        "instances.sessions.replication.writeRate": "256KiB",
        "instances.sessions.replication.outageTolerance": f"{OUTAGE}s",
    }


@pytest.fixture
def runner() -> Iterator[PodRunner]:
    with PodRunner() as r:
        yield r


def attempts(replica: Any) -> int:
    """How often the replica has tried to connect to its primary (its log says so each time)."""
    return int(replica.logs("valkey").count("Connecting to PRIMARY"))


def cut_and_heal(proxy: Any, pa: Any, ra: Any, replica: Any) -> dict[str, int | float]:
    """Cut the link for OUTAGE seconds under writes, restore it right after a refused retry - the
    worst moment, the next retry is a second away - and return what the heal took."""
    wait_for(lambda: caught_up(pa, ra), 10, "replica caught up before the cut")
    before = info(pa, "stats")
    replica_offset = info(ra, "replication")["slave_repl_offset"]
    proxy.cut()
    cut_at = time.monotonic()
    time.sleep(OUTAGE)
    tried = attempts(replica)
    wait_for(lambda: attempts(replica) > tried, 3, "a refused retry", interval=0.005)
    cut_s = time.monotonic() - cut_at
    proxy.restore()
    restored = time.monotonic()
    wait_for(lambda: link_up(ra), 30, "link up after the cut")
    reconnect = time.monotonic() - restored
    stream_behind = info(pa, "replication")["master_repl_offset"] - replica_offset
    wait_for(lambda: caught_up(pa, ra), 30, "replica caught up after the cut")
    after = info(pa, "stats")
    return {
        "partial": after["sync_partial_ok"] - before["sync_partial_ok"],
        "full": after["sync_full"] - before["sync_full"],
        "cut_s": cut_s,
        "reconnect_s": reconnect,
        "stream_behind_at_link_up": stream_behind,
    }


@pytest.mark.parametrize("build", sorted(BUILDS), ids=[f"valkey-{v}" for v in sorted(BUILDS)])
def test_drill9_a_cut_of_exactly_outage_tolerance_needs_the_reconnect_allowance(runner: PodRunner, build: str) -> None:
    r1, r2 = harness.render_both(config(build), config(build))
    primary = runner.start_pod(r1, "sessions", 0, region="region1")
    proxy = runner.proxy(primary, latency=0.0)
    runner.add_host(EXTERNAL1, proxy.host, region="region2")
    replica = runner.start_pod(r2, "sessions", 0, region="region2")
    with admin(r1, "sessions", primary.address) as pa, admin(r2, "sessions", replica.address) as ra:
        wait_for(lambda: link_up(ra), 15, "region 2's link to region 1 up")
        assert pa.info("server")["valkey_version"] == build
        rendered_backlog = int(pa.config_get("repl-backlog-size")["repl-backlog-size"])
        assert rendered_backlog == WRITE_RATE * (OUTAGE + 5)
        writer = StreamWriter(lambda: app(r1, "sessions", primary.address), WRITE_RATE)
        writer.start()
        try:
            time.sleep(2)  # the stream runs at its rate before the cut
            rendered = cut_and_heal(proxy, pa, ra, replica)
            # The counterfactual: the backlog without the allowance, set live on the same primary.
            pa.config_set("repl-backlog-size", WRITE_RATE * OUTAGE)
            # A restore can still land just before a retry (the log line and the try are not one
            # instant): the demonstration needs the reconnect to have taken its time.
            for _ in range(3):
                without = cut_and_heal(proxy, pa, ra, replica)
                if without["reconnect_s"] >= 0.5:
                    break
        finally:
            writer.stop()
        assert writer.error is None
    print(f"DRILL: 9-backlog-boundary valkey={build} backlog={rendered_backlog} rendered={rendered} without={without}")
    assert rendered["partial"] == 1 and rendered["full"] == 0, rendered
    assert rendered["stream_behind_at_link_up"] < rendered_backlog
    # Without the allowance the cut's own writes fill the backlog, and the reconnect's overflow it.
    assert without["stream_behind_at_link_up"] > WRITE_RATE * OUTAGE, without
    assert without["reconnect_s"] >= 0.5 and without["full"] == 1, without
