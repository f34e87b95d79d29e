"""A replica that is ahead of a newly promoted primary, on real servers (docs/design.md, "Fencing").

Replication is asynchronous: when a primary dies, its replicas may hold different amounts of its
last writes. The Sentinels promote the replica with the highest offset among those they may promote
(replica-priority, then offset: Valkey's sentinelSelectReplica), so a replica is left *ahead* of the
new primary only when it could not be chosen: priority 0 (a fenced member, region 2's head) or
unreachable from the Sentinels' majority when they voted. What happens to it then is Valkey's, and
is what this test pins down, with region 1's sessions instance as rendered (TLS off):

- the promoted replica keeps the old primary's history up to where it had received it (its
  ``master_replid2``), so a replica at or behind that point continues with a partial resync;
- a replica ahead of it asks to continue past that point, is refused (the new primary counts it in
  ``sync_partial_err``, exported as ``redis_replica_partial_resync_denied``, and logs "Partial
  resynchronization not accepted"), and is copied anew: the writes only it held, which the old
  primary had acknowledged, are gone from it. Nothing could keep them: PSYNC cannot continue a
  history the new primary does not have.
"""

from __future__ import annotations

from pathlib import Path

from replies import info
from test_backlog_real import ADMIN, REPLICATION, start
from valkey_process import every_build, wait_for

from components.render.valkey_conf import Upstream


def offset(server_info: dict[str, object]) -> int:
    return int(str(server_info["master_repl_offset"]))


@every_build
def test_a_replica_ahead_of_the_promoted_one_is_copied_anew_and_loses_what_only_it_held(
    tmp_path: Path, build: str
) -> None:
    primary = start(tmp_path / "primary", build)
    upstream = Upstream("127.0.0.1", primary.port, "replication", REPLICATION)
    ahead = start(tmp_path / "ahead", build, upstream)
    behind = start(tmp_path / "behind", build, upstream)
    servers = [primary, ahead, behind]
    try:
        p, a, b = (s.client("admin", ADMIN) for s in servers)
        for i in range(100):
            p.set(f"both:{i}", i)
        wait_for(lambda: len({offset(info(c, "replication")) for c in (p, a, b)}) == 1, what="both replicas caught up")
        # The behind replica is promoted (what the Sentinels send it) while the old primary still
        # runs; the ahead one then receives more, and the old primary dies.
        assert b.execute_command("REPLICAOF", "NO", "ONE") == "OK"
        history_end = int(info(b, "replication")["second_repl_offset"])
        for i in range(10):
            p.set(f"ahead-only:{i}", i)
        wait_for(lambda: offset(info(a, "replication")) == offset(info(p, "replication")))
        assert a.exists(*[f"ahead-only:{i}" for i in range(10)]) == 10
        primary.stop()  # its shutdown still sends the replicas a few bytes
        asks_for = offset(info(a, "replication")) + 1  # PSYNC asks for the byte after what it has
        # What the Sentinels send every other replica after the promotion.
        assert a.execute_command("REPLICAOF", "127.0.0.1", str(behind.port)) == "OK"
        wait_for(lambda: info(a, "replication").get("master_link_status") == "up", 20, "the ahead replica linked")
        stats = info(b, "stats")
        assert (int(stats["sync_full"]), int(stats["sync_partial_ok"]), int(stats["sync_partial_err"])) == (1, 0, 1)
        assert asks_for > history_end
        refusal = f"Requested offset for second ID was {asks_for}, but I can reply up to {history_end}"
        assert f"Partial resynchronization not accepted: {refusal}" in behind.log.read_text()
        assert a.exists(*[f"ahead-only:{i}" for i in range(10)]) == 0
        assert a.exists(*[f"both:{i}" for i in range(100)]) == 100
    finally:
        for s in servers:
            s.stop()
