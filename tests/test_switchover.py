"""The planned switchover (ops/switchover.py, docs/runbooks.md#runbook-planned-switchover) on the
rendered pods with real Valkey 8.1.8 and 9.1.2: region 1 to region 2 under 5,000 writes/s, both
stacks re-rendered with the new roles, then back. No acknowledged write may be lost, and each
stack's next render must agree with what runs.

The applications follow the primary as a platform would tell them to (a connection string that
changes when the switchover is done): the writer writes to one region's pod and, once told, to the
other's, reconnecting on every error as a retrying client does. Rendering differs from the stack
files by ``harness.NO_TLS``, ``harness.SINGLE_PODS`` and the image.
"""

from __future__ import annotations

import time
from typing import Any

import harness
import needs
import pytest
from drills_support import Report, admin, app, link_up, missing_keys, node, replication_password, role
from group_support import EXTERNAL1, EXTERNAL2, IMAGES, REGION1_STACK, REGION2_STACK, ReconnectingWriter
from podrunner import PodRunner
from podrunner.pod import Pod
from replies import info
from valkey_process import wait_for

from ops.switchover import Result, switchover

pytestmark = needs.root

WRITE_RATE = 5000.0
LATENCY = 0.040


def run_switchover(
    old: tuple[harness.Rendered, Pod], new: tuple[harness.Rendered, Pod], external: str, lines: list[str]
) -> Result:
    """The tool as an operator runs it: the old primary's and the new head's admin logins, the new
    primary's replication password (its region's stack output) and external endpoint."""
    return switchover(
        node(*old), node(*new), (external, 6379), replication_password(new[0]), log=lines.append, pause_timeout_s=10
    )


@pytest.mark.parametrize("version", sorted(IMAGES))
def test_planned_switchover_and_back_loses_no_acknowledged_write(
    runner: PodRunner, version: str, report: Report
) -> None:
    config: dict[str, Any] = {**harness.NO_TLS, **harness.SINGLE_PODS, "image": IMAGES[version]}
    r1 = harness.render("region1", config)
    r2 = harness.render("region2", config, references={REGION1_STACK: r1})
    primary = runner.start_pod(r1, "sessions", 0, region="region1")
    # Region 2 reaches region 1 through a cross-region link of 40 ms each way: what the switchover
    # waits for (the last writes on their way) is what a real link holds.
    link = runner.proxy(primary, latency=LATENCY)
    runner.add_host(EXTERNAL1, link.host, region="region2")
    replica = runner.start_pod(r2, "sessions", 0, region="region2")
    with admin(r2, "sessions", replica.address) as ra:
        wait_for(lambda: link_up(ra), 15, "region 2's link to region 1 up")
    # Where applications write: region 1's pod, until the platform points them at region 2's.
    target: dict[str, Any] = {"rendered": r1, "pod": primary}
    writer = ReconnectingWriter(
        lambda: app(target["rendered"], "sessions", target["pod"].address), f"switch-{version}", rate=WRITE_RATE
    )
    writer.start()
    lines: list[str] = []
    try:
        wait_for(lambda: len(writer.acked) > 5000, 20, "writes flowing")
        there = run_switchover((r1, primary), (r2, replica), EXTERNAL2, lines)
        target.update(rendered=r2, pod=replica)
        # Both stacks say so (the runbook's pulumi config), and the next pulumi up of each renders
        # the roles that now run: region 2 a primary, region 1 a replica of it.
        promoted = harness.render("region2", {**config, "role": "primary", "primaryStack": None})
        demoted = harness.render(
            "region1",
            {**config, "role": "replica", "primaryStack": REGION2_STACK},
            references={REGION2_STACK: promoted},
        )
        assert "replicaof" not in promoted.valkey_conf("sessions")
        assert f"replicaof {EXTERNAL2} 6379" in demoted.valkey_conf("sessions")
        replica.restart(objects=promoted)
        target.update(rendered=promoted)
        primary.restart(objects=demoted)
        with admin(demoted, "sessions", primary.address) as a1:
            wait_for(lambda: link_up(a1), 30, "region 1 replicates region 2")
        wait_for(lambda: len(writer.acked) > 0 and writer.acked[-1][1] > time.monotonic() - 0.5, 10, "writes flow")
        mid = len(writer.keys())

        back = run_switchover((promoted, replica), (demoted, primary), EXTERNAL1, lines)
        target.update(rendered=r1, pod=primary)
        replica.restart(objects=r2)
        primary.restart(objects=r1)
        target.update(rendered=r1)
        with admin(r2, "sessions", replica.address) as a2:
            wait_for(lambda: link_up(a2), 30, "region 2 replicates region 1 again")
        wait_for(lambda: writer.acked[-1][1] > time.monotonic() - 0.5, 10, "writes flow again")
        time.sleep(1)
    finally:
        writer.stop()
    acked = writer.keys()
    with admin(r1, "sessions", primary.address) as a1, admin(r2, "sessions", replica.address) as a2:
        assert (role(a1), role(a2)) == ("master", "slave")
        wait_for(lambda: info(a2, "replication")["slave_repl_offset"] >= info(a1, "replication")["master_repl_offset"],
                 20, "region 2 caught up")  # fmt: skip
    with app(r1, "sessions", primary.address) as c:
        lost = missing_keys(c, acked)
    with app(r2, "sessions", replica.address) as c:
        lost_in_region2 = missing_keys(c, acked)
    report.add(
        f"switchover-{version}",
        keys_acked=len(acked),
        keys_acked_before_switching_back=mid,
        keys_lost=len(lost),
        keys_missing_region2=len(lost_in_region2),
        write_pause_there_s=there.write_pause_s,
        write_pause_back_s=back.write_pause_s,
        catch_up_there_s=there.caught_up_at - there.paused_at,
        longest_write_outage_s=writer.longest_outage(),
        client_errors=sorted({e.split(":")[0] for e in writer.errors}),
    )
    assert lost == [] and lost_in_region2 == [], lines
    assert there.write_pause_s < 2.0 and back.write_pause_s < 2.0, lines
