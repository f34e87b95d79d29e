"""The switchover tool with a group on the old side (ops/switchover.py), on real servers.

What the pod drills cannot show cheaply: how the tool finds the old primary's members (by the
names it lists them under, or as given), and that it refuses, changing nothing, when the member
list or the new node is not what it expects. Region 1's sessions instance as rendered (TLS off);
the old group is a primary and one member, the new node a replica that announces a name under
.invalid, as a following group's head does. Group drill 6 (tests/test_group_drills.py) runs the
tool between two groups of pods.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import valkey
from replies import config_value, info
from test_backlog_real import ADMIN, REPLICATION, start
from valkey_process import Server, every_build, wait_for

import ops.switchover
from components.render.valkey_conf import Upstream
from ops.switchover import Node, SwitchoverError, switchover

HEAD_NAME = "sessions-0.region2.invalid"
OLD_NAME = "sessions-0.sessions-headless.databases.svc.cluster.local"


@dataclass
class Pair:
    primary: Server
    member: Server
    new: Server

    def node(self, server: Server, host: str = "127.0.0.1") -> Node:
        return Node(host, server.port, ADMIN)


@pytest.fixture
def pair(tmp_path: Path, build: str) -> Iterator[Pair]:
    primary = start(tmp_path / "primary", build)
    upstream = Upstream("127.0.0.1", primary.port, "replication", REPLICATION)
    member = start(tmp_path / "member", build, upstream)
    new = start(tmp_path / "new", build, upstream)
    try:
        # The member announces a name the tool can reach (a pod's DNS name, in the cluster); the
        # new node one that resolves nowhere, as a following group's head does.
        member.client("admin", ADMIN).config_set("replica-announce-ip", "localhost")
        new.client("admin", ADMIN).config_set("replica-announce-ip", HEAD_NAME)
        p = primary.client("admin", ADMIN)
        # They send the name when they connect: make them reconnect.
        p.execute_command("CLIENT", "KILL", "TYPE", "replica")
        names = {"localhost", HEAD_NAME}
        wait_for(lambda: {info(p, "replication").get(f"slave{i}", {}).get("ip") for i in (0, 1)} == names,
                 20, "both replicas listed under their names")  # fmt: skip
        wait_for(lambda: all(info(s.client("admin", ADMIN), "replication")["master_link_status"] == "up"
                             for s in (member, new)), 20, "both linked")  # fmt: skip
        yield Pair(primary, member, new)
    finally:
        for server in (primary, member, new):
            server.stop()


def priority(server: Server) -> str:
    return config_value(server.client("admin", ADMIN), "replica-priority")


@every_build
def test_the_members_are_found_by_their_names_and_held_at_priority_0(pair: Pair) -> None:
    pair.primary.client("admin", ADMIN).set("before", "1")
    # A group member announces its pod's name, the same name as the other cluster's pod.
    pair.primary.client("admin", ADMIN).config_set("replica-announce-ip", OLD_NAME)
    lines: list[str] = []
    result = switchover(
        pair.node(pair.primary),
        pair.node(pair.new),
        ("127.0.0.1", pair.new.port),
        REPLICATION,
        old_region="region1",
        log=lines.append,
    )
    assert result.write_pause_s < 2.0
    assert any(f"localhost:{pair.member.port}" in line and "replica-priority 0" in line for line in lines), lines
    assert priority(pair.member) == "0" and priority(pair.primary) == "0"
    assert info(pair.new.client("admin", ADMIN), "replication")["role"] == "master"
    # The old primary follows the new one, and its member still follows it (a chain).
    old = pair.primary.client("admin", ADMIN)
    wait_for(lambda: info(old, "replication").get("master_link_status") == "up", 20, "the old primary linked")
    pair.new.client("admin", ADMIN).set("after", "1")
    member = pair.member.client("admin", ADMIN)
    wait_for(lambda: member.get("after") == "1", 20, "the member receives the new primary's writes")
    assert member.get("before") == "1"
    # The new primary lists the old one under a name that resolves nowhere, as a follower's.
    listed = info(pair.new.client("admin", ADMIN), "replication")
    assert listed["slave0"]["ip"] == "sessions-0.region1.invalid", listed


@every_build
def test_a_group_member_without_its_region_changes_nothing(pair: Pair) -> None:
    pair.primary.client("admin", ADMIN).config_set("replica-announce-ip", OLD_NAME)
    with pytest.raises(SwitchoverError, match="give --old-region"):
        switchover(pair.node(pair.primary), pair.node(pair.new), ("127.0.0.1", pair.new.port), REPLICATION,
                   log=lambda _: None)  # fmt: skip
    assert info(pair.primary.client("admin", ADMIN), "replication")["role"] == "master"
    assert priority(pair.member) == priority(pair.primary) != "0"


@every_build
def test_a_member_left_out_changes_nothing(pair: Pair) -> None:
    with pytest.raises(SwitchoverError, match=r"1 other replica\(s\) \(localhost:\d+\); 0 --old-member given"):
        switchover(pair.node(pair.primary), pair.node(pair.new), ("127.0.0.1", pair.new.port), REPLICATION,
                   old_members=[], log=lambda _: None)  # fmt: skip
    assert info(pair.primary.client("admin", ADMIN), "replication")["role"] == "master"
    assert priority(pair.member) == priority(pair.primary) != "0"


@every_build
def test_a_new_node_that_is_not_directly_connected_is_refused(pair: Pair) -> None:
    """--new naming a member of the new group (it replicates the head, with the same history)
    rather than the head: promoting it would leave the head replicating the old primary, which
    would replicate the head."""
    chained = pair.member.client("admin", ADMIN)
    chained.config_set("replica-announce-ip", "sessions-1.region2.invalid")
    with pytest.raises(SwitchoverError, match="must be the node that replicates the old primary directly"):
        switchover(pair.node(pair.primary), pair.node(pair.member), ("127.0.0.1", pair.member.port), REPLICATION,
                   log=lambda _: None)  # fmt: skip
    assert info(pair.primary.client("admin", ADMIN), "replication")["role"] == "master"


@every_build
def test_a_failure_after_the_hold_puts_everything_back(pair: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    """The old primary's REPLICAOF runs but its reply is lost: the tool fails after it held the
    group at priority 0 and renamed the old primary, and gives back the role (it believes in no
    demotion it did not see answered), the priorities, the name and the writes."""
    real = ops.switchover._demote

    def demote_then_lose_the_reply(*args: Any) -> None:
        real(*args)
        raise valkey.exceptions.TimeoutError("the reply was lost")

    monkeypatch.setattr(ops.switchover, "_demote", demote_then_lose_the_reply)
    before = priority(pair.member)
    primary = pair.primary.client("admin", ADMIN)
    primary.config_set("replica-announce-ip", OLD_NAME)
    lines: list[str] = []
    with pytest.raises(SwitchoverError, match=r"the reply was lost; .* is the primary again and unpaused: nothing"):
        switchover(pair.node(pair.primary), pair.node(pair.new), ("127.0.0.1", pair.new.port), REPLICATION,
                   old_region="region1", log=lines.append)  # fmt: skip
    assert any("replica-priority 0" in line for line in lines), lines
    assert info(primary, "replication")["role"] == "master"
    assert priority(pair.member) == priority(pair.primary) == before != "0"
    assert config_value(primary, "replica-announce-ip") == OLD_NAME
    assert primary.set("after", "1")  # unpaused


@every_build
def test_an_old_member_that_is_not_one_is_refused(pair: Pair) -> None:
    """A --old-member that reaches the new node (a port-forward to the wrong cluster: it has the
    same history) instead of the old group's member, which would then not be held."""
    with pytest.raises(SwitchoverError, match="--old-member must name each member of the old group once"):
        switchover(pair.node(pair.primary), pair.node(pair.new), ("127.0.0.1", pair.new.port), REPLICATION,
                   old_members=[pair.node(pair.new)], log=lambda _: None)  # fmt: skip
    assert info(pair.primary.client("admin", ADMIN), "replication")["role"] == "master"
    assert priority(pair.member) == priority(pair.primary) != "0"
