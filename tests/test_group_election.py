"""Whom a member of a following group (region 2) replicates from: ``follow_target`` in group.sh.

The function runs as the pods run it (sourced by start.sh and keeper.sh, from the shipped script
file, with the group's environment from ``render.pod_scripts``); only ``ask`` is replaced, by one
that answers each member's INFO replication from a table, so every situation a group can be in is
one line here, run by the host's tools (dash, mawk) and by busybox's (ash, its awk: the image's
kind). The drills (tests/test_group_drills.py, drill 3) show the same decisions with real
servers: a head lost for good, and a head whose Valkey restarts.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from shell_tools import KINDS, tool_path

from components.render import pod_scripts

GROUP_SH = Path(pod_scripts.__file__).parent / "scripts" / "group.sh"
DOMAIN = "sessions-headless.databases.svc.cluster.local"
PODS = ("sessions-0", "sessions-1", "sessions-2")
UPSTREAM = "sessions.region1.example.com 6379"


def fqdn(pod: str) -> str:
    return f"{pod}.{DOMAIN}"


def head(offset: int, link: str = "up", announced: int = 0) -> str:
    """INFO replication of a member replicating from the other region."""
    return replica("sessions.region1.example.com", offset, link, announced=announced)


def follows(pod: str, offset: int, link: str = "up", announced: int = 0) -> str:
    """A follower (announced 0: start.sh's replica-announced no) or, announced 1, a member still
    running a leading group's template."""
    return replica(fqdn(pod), offset, link, announced=announced)


def replica(host: str, offset: int, link: str, keys: int = 5000, announced: int = 0) -> str:
    return (
        f"# Replication\r\nrole:slave\r\nmaster_host:{host}\r\nmaster_port:6379\r\n"
        f"master_link_status:{link}\r\nmaster_repl_offset:{offset}\r\nslave_priority:0\r\n"
        f"slave_read_only:1\r\nreplica_announced:{announced}\r\n" + keyspace(keys)
    )


def keyspace(keys: int) -> str:
    """INFO keyspace: a member holding ``keys`` keys, over two databases (none: an empty member)."""
    if not keys:
        return "\r\n# Keyspace\r\n"
    return f"\r\n# Keyspace\r\ndb0:keys={keys - 1},expires=0,avg_ttl=0\r\ndb3:keys=1,expires=1,avg_ttl=9\r\n"


def primary(offset: int) -> str:
    return f"# Replication\r\nrole:master\r\nconnected_slaves:0\r\nmaster_repl_offset:{offset}\r\n"


TOOLS = ("sh", "awk", "cat", "tr", "head", "sort", "uniq", "timeout", "sed")


@pytest.fixture(params=KINDS)
def path(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """PATH for the script: the host's tools, or busybox applets only."""
    return tool_path(request.param, tmp_path_factory, TOOLS)


def follow_target(path: str, tmp_path: Path, self: str, answers: dict[str, str]) -> str:
    """What ``self`` should replicate from, each member answering INFO replication with
    ``answers[pod]`` (a member missing from it does not answer: down, or not started)."""
    (tmp_path / "upstream").write_text(UPSTREAM + "\n")
    # ask HOST PORT USER PASSWORD_FILE COMMAND...: the table's answer for HOST, if any.
    stub = 'ask() { [ "$5 $6 $7" = "INFO replication keyspace" ] && cat "$ANSWERS/$1" 2>/dev/null; }'
    return run_group_sh(path, tmp_path, self, answers, f"{stub}; follow_target", follows=True)


def run_group_sh(path: str, tmp_path: Path, self: str, answers: dict[str, str], script: str, *, follows: bool) -> str:
    """``script`` run after sourcing group.sh as ``self`` of a leading or following (``follows``)
    group, with ``path``'s tools; each member's answer is ``answers[pod]``, in a file under
    ``ANSWERS`` for the script's ``ask`` stub. Returns its output, stripped."""
    for pod, text in answers.items():
        (tmp_path / fqdn(pod)).write_text(text)
    (tmp_path / "password").write_text("unused\n")
    group = pod_scripts.GroupEnv(
        pods=list(PODS),
        domain=DOMAIN,
        master_name="sessions",
        sentinel_port=26379,
        down_after_seconds=5,
        failover_timeout_seconds=30,
        follows=follows,
        announce_suffix="region2.invalid" if follows else "",
    )
    env = pod_scripts.keeper_env(6379, False, group) | {
        "POD_NAME": self,
        "UPSTREAM_FILE": str(tmp_path / "upstream"),
        "PROBE_PASSWORD_FILE": str(tmp_path / "password"),
        "SENTINEL_PEER_PASSWORD_FILE": str(tmp_path / "password"),
        "SENTINEL_NODE_PASSWORD_FILE": str(tmp_path / "password"),
        "PATH": path,
        "ANSWERS": str(tmp_path),
    }
    shell = str(Path(path) / "sh") if path != "/usr/bin:/bin" else "sh"
    done = subprocess.run(
        [shell, "-c", f'. "$1"; {script}', "sh", str(GROUP_SH)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout.strip()


def test_members_follow_the_head_and_the_head_follows_the_other_region(path: str, tmp_path: Path) -> None:
    steady = {
        "sessions-0": head(900),
        "sessions-1": follows("sessions-0", 900),
        "sessions-2": follows("sessions-0", 880),
    }
    assert follow_target(path, tmp_path, "sessions-0", steady) == UPSTREAM
    assert follow_target(path, tmp_path, "sessions-1", steady) == f"{fqdn('sessions-0')} 6379"
    assert follow_target(path, tmp_path, "sessions-2", steady) == f"{fqdn('sessions-0')} 6379"


def test_a_head_keeps_its_place_while_its_link_is_up_even_behind_a_member(path: str, tmp_path: Path) -> None:
    # sessions-1 took over earlier; sessions-0 is back and, read a moment later, shows more.
    after_takeover = {
        "sessions-0": follows("sessions-1", 1200),
        "sessions-1": head(1000),
        "sessions-2": follows("sessions-1", 1000),
    }
    for pod in PODS:
        expected = UPSTREAM if pod == "sessions-1" else f"{fqdn('sessions-1')} 6379"
        assert follow_target(path, tmp_path, pod, after_takeover) == expected


def test_the_lowest_of_two_heads_stays_and_the_other_follows_it(path: str, tmp_path: Path) -> None:
    two = {"sessions-0": head(900), "sessions-1": head(900), "sessions-2": follows("sessions-1", 900)}
    assert follow_target(path, tmp_path, "sessions-0", two) == UPSTREAM
    assert follow_target(path, tmp_path, "sessions-1", two) == f"{fqdn('sessions-0')} 6379"
    assert follow_target(path, tmp_path, "sessions-2", two) == f"{fqdn('sessions-0')} 6379"


def test_a_lost_head_is_replaced_by_the_member_with_the_most_data(path: str, tmp_path: Path) -> None:
    lost = {"sessions-1": follows("sessions-0", 700, "down"), "sessions-2": follows("sessions-0", 900, "down")}
    assert follow_target(path, tmp_path, "sessions-2", lost) == UPSTREAM
    assert follow_target(path, tmp_path, "sessions-1", lost) == f"{fqdn('sessions-2')} 6379"


def test_among_equals_the_lowest_ordinal_takes_over(path: str, tmp_path: Path) -> None:
    lost = {"sessions-1": follows("sessions-0", 900, "down"), "sessions-2": follows("sessions-0", 900, "down")}
    assert follow_target(path, tmp_path, "sessions-1", lost) == UPSTREAM
    assert follow_target(path, tmp_path, "sessions-2", lost) == f"{fqdn('sessions-1')} 6379"


def test_a_restarted_head_follows_a_member_instead_of_copying_across_regions(path: str, tmp_path: Path) -> None:
    # Its own Valkey has not started yet (start.sh): the members still wait on it.
    waiting = {"sessions-1": follows("sessions-0", 900, "down"), "sessions-2": follows("sessions-0", 900, "down")}
    assert follow_target(path, tmp_path, "sessions-0", waiting) == f"{fqdn('sessions-1')} 6379"
    # Started, it holds nothing it can resume from; the members agree on the same new head.
    started = {"sessions-0": follows("sessions-1", 0, "down"), **waiting}
    assert follow_target(path, tmp_path, "sessions-0", started) == f"{fqdn('sessions-1')} 6379"
    assert follow_target(path, tmp_path, "sessions-1", started) == UPSTREAM
    assert follow_target(path, tmp_path, "sessions-2", started) == f"{fqdn('sessions-1')} 6379"


def test_when_the_other_region_is_out_of_reach_the_head_stays_where_it_is(path: str, tmp_path: Path) -> None:
    # sessions-1 is the head, its link to region 1 down; nobody has more data than anybody else.
    cut_off = {
        "sessions-0": follows("sessions-1", 900),
        "sessions-1": head(900, "down"),
        "sessions-2": follows("sessions-1", 900),
    }
    for pod in PODS:
        expected = UPSTREAM if pod == "sessions-1" else f"{fqdn('sessions-1')} 6379"
        assert follow_target(path, tmp_path, pod, cut_off) == expected


def test_after_restarts_a_member_holding_keys_wins_over_an_empty_one(path: str, tmp_path: Path) -> None:
    # Every member restarted (offsets 0, no link yet); sessions-0 came back on an empty volume. It
    # must not become the head that region 2's promotion would pick, nor be copied by the others.
    restarted = {
        "sessions-0": replica("sessions.region1.example.com", 0, "down", keys=0),
        "sessions-1": follows("sessions-0", 0, "down"),
        "sessions-2": follows("sessions-0", 0, "down"),
    }
    assert follow_target(path, tmp_path, "sessions-1", restarted) == UPSTREAM
    assert follow_target(path, tmp_path, "sessions-0", restarted) == f"{fqdn('sessions-1')} 6379"
    assert follow_target(path, tmp_path, "sessions-2", restarted) == f"{fqdn('sessions-1')} 6379"
    # A fenced member (a replica of fenced.invalid, render/scripts/fence.sh) is no former head:
    # between two empty members it does not win the tie as a former head would.
    fenced = {
        "sessions-0": replica(fqdn("sessions-1"), 0, "down", keys=0),
        "sessions-1": replica("fenced.invalid", 0, "down", keys=0),
    }
    (tmp_path / "fenced").mkdir()
    assert follow_target(path, tmp_path / "fenced", "sessions-0", fenced) == UPSTREAM
    assert follow_target(path, tmp_path / "fenced", "sessions-1", fenced) == f"{fqdn('sessions-0')} 6379"


def test_in_a_rollout_after_a_switchover_only_a_follower_is_elected(path: str, tmp_path: Path) -> None:
    # The old group's rollout to a following group: its old primary, sessions-1, replicates the
    # other region (the switchover tool made it); sessions-0 still runs the leading template
    # (replica_announced:1) and replicates sessions-1; sessions-2 restarted first, as a follower.
    first = {
        "sessions-0": follows("sessions-1", 900, announced=1),
        "sessions-1": head(900, announced=1),
    }
    # A member that streams from the other region is the head, whatever its template.
    assert follow_target(path, tmp_path, "sessions-2", first) == f"{fqdn('sessions-1')} 6379"
    # sessions-1 restarts as a follower: no head now, and sessions-0, which replicates it and has
    # no keeper to point it upstream, is never elected (that was a loop, never Ready).
    second = {
        "sessions-0": follows("sessions-1", 950, "down", announced=1),
        "sessions-2": follows("sessions-1", 900, "down"),
    }
    for step in ("second", "alone"):
        (tmp_path / step).mkdir()
    assert follow_target(path, tmp_path / "second", "sessions-1", second) == f"{fqdn('sessions-2')} 6379"
    assert follow_target(path, tmp_path / "second", "sessions-2", second) == UPSTREAM
    # With no follower answering at all, the pod follows the other region itself.
    alone = {"sessions-0": follows("sessions-1", 950, "down", announced=1)}
    assert follow_target(path, tmp_path / "alone", "sessions-1", alone) == UPSTREAM


def test_a_promoted_member_is_followed_by_everyone(path: str, tmp_path: Path) -> None:
    promoted = {"sessions-0": head(900), "sessions-1": follows("sessions-0", 900), "sessions-2": primary(900)}
    assert follow_target(path, tmp_path, "sessions-0", promoted) == f"{fqdn('sessions-2')} 6379"
    assert follow_target(path, tmp_path, "sessions-1", promoted) == f"{fqdn('sessions-2')} 6379"


@pytest.mark.parametrize("self", PODS)
def test_with_nobody_answering_a_member_follows_the_other_region(path: str, tmp_path: Path, self: str) -> None:
    assert follow_target(path, tmp_path, self, {}) == UPSTREAM


def test_the_answers_parsing_takes_ipv6_hosts_trailing_dots_and_refusals(path: str, tmp_path: Path) -> None:
    # An upstream given as an IPv6 address (INFO's value holds colons): still outside the group.
    ipv6 = {"sessions-0": replica("fd00::1", 900, "up"), "sessions-1": follows("sessions-0", 900)}
    (tmp_path / "ipv6").mkdir()
    assert follow_target(path, tmp_path / "ipv6", "sessions-1", ipv6) == f"{fqdn('sessions-0')} 6379"
    # A member's name with a trailing dot is still a member: no head, the most data takes over.
    dotted = {
        "sessions-1": replica(fqdn("sessions-0") + ".", 700, "up"),
        "sessions-2": replica(fqdn("sessions-0") + ".", 900, "up"),
    }
    (tmp_path / "dotted").mkdir()
    assert follow_target(path, tmp_path / "dotted", "sessions-2", dotted) == UPSTREAM
    # A member that refuses (a rotated password) counts as not answering.
    refused = {"sessions-0": "NOPERM User sentinel has no permissions\r\n", "sessions-1": follows("sessions-0", 5)}
    (tmp_path / "refused").mkdir()
    assert follow_target(path, tmp_path / "refused", "sessions-2", refused) == f"{fqdn('sessions-1')} 6379"


# --- A leading group's member at its start: find_primary ------------------------------------


def role_slave(host: str) -> str:
    """ROLE of a replica of ``host`` (valkey-cli's lines)."""
    return f"slave\n{host}\n6379\nconnected\n900\n"


def find_primary(path: str, tmp_path: Path, self: str, roles: dict[str, str]) -> str:
    """``find_primary`` of ``self`` in a leading group whose Sentinels do not answer (a rollout
    from a following group's template: none runs yet), each member answering ROLE with
    ``roles[pod]``. Returns "<primary> <source>"."""
    stub = 'ask() { [ "$5" = ROLE ] && cat "$ANSWERS/$1" 2>/dev/null; }'
    script = f'{stub}; find_primary 2>/dev/null; echo "$PRIMARY $PRIMARY_SOURCE"'
    return run_group_sh(path, tmp_path, self, roles, script, follows=False)


def test_a_restarted_primary_that_its_peers_still_replicate_is_the_primary_again(path: str, tmp_path: Path) -> None:
    """A following group's head, promoted by a person (a promotion, a switchover) and not pod 0,
    is the first pod its rollout to a leading template restarts, with no Sentinel running yet:
    its members still replicate it, so it is the primary, not pod 0 (itself a replica)."""
    roles = {"sessions-0": role_slave(fqdn("sessions-2")), "sessions-1": role_slave(fqdn("sessions-2") + ".")}
    assert find_primary(path, tmp_path, "sessions-2", roles) == f"{fqdn('sessions-2')} replicas"


def test_a_peer_that_is_the_primary_comes_before_what_replicas_name(path: str, tmp_path: Path) -> None:
    roles = {"sessions-0": role_slave(fqdn("sessions-2")), "sessions-1": "master\n900\n"}
    assert find_primary(path, tmp_path, "sessions-2", roles) == f"{fqdn('sessions-1')} peers"


def test_replicas_of_nothing_in_the_group_leave_the_bootstrap_choice(path: str, tmp_path: Path) -> None:
    # Fenced members and a following group's head name no member: the first pod, as before.
    roles = {"sessions-1": role_slave("fenced.invalid"), "sessions-2": role_slave("sessions.region2.example.com")}
    assert find_primary(path, tmp_path, "sessions-0", roles) == f"{fqdn('sessions-0')} bootstrap"
    (tmp_path / "none").mkdir()
    assert find_primary(path, tmp_path / "none", "sessions-1", {}) == f"{fqdn('sessions-0')} bootstrap"


def test_a_member_that_is_itself_a_replica_is_never_taken_for_the_primary(path: str, tmp_path: Path) -> None:
    # The member the others still name came back fenced: it cannot be the primary.
    fenced = {
        "sessions-0": role_slave(fqdn("sessions-2")),
        "sessions-1": role_slave(fqdn("sessions-2")),
        "sessions-2": role_slave("fenced.invalid"),
    }
    (tmp_path / "fenced").mkdir()
    assert find_primary(path, tmp_path / "fenced", "sessions-1", fenced) == f"{fqdn('sessions-0')} bootstrap"
    # A chain (sessions-1 copies sessions-2, which copies this stopped pod): this pod, not sessions-2.
    chain = {"sessions-1": role_slave(fqdn("sessions-2")), "sessions-2": role_slave(fqdn("sessions-0"))}
    (tmp_path / "chain").mkdir()
    assert find_primary(path, tmp_path / "chain", "sessions-0", chain) == f"{fqdn('sessions-0')} replicas"


def replicates_outside(path: str, tmp_path: Path, host: str, roles: dict[str, str]) -> str:
    """``replicates_outside`` of ``host``'s pod, each member answering ROLE with ``roles[pod]``:
    what it prints, or "no" when it fails."""
    stub = 'ask() { [ "$5" = ROLE ] && cat "$ANSWERS/$1" 2>/dev/null; }'
    script = f'{stub}; replicates_outside "{fqdn(host)}" || echo no'
    return run_group_sh(path, tmp_path, "sessions-1", roles, script, follows=False)


def test_a_primary_a_switchover_demoted_holds_a_restarting_member(path: str, tmp_path: Path) -> None:
    """start.sh holds a leading member at replica-priority 0 when the primary the group names
    replicates from outside it: the switchover tool demoted it, and the stack's pulumi up has not
    made the group a following one yet."""
    demoted = {"sessions-0": role_slave("sessions.region2.example.com.")}
    assert replicates_outside(path, tmp_path, "sessions-0", demoted) == "sessions.region2.example.com"
    for name, role in [
        ("a primary", "master\n900\n"),
        ("a member's replica", role_slave(fqdn("sessions-2"))),
        ("no answer", None),
    ]:
        (tmp_path / name).mkdir()
        roles = {"sessions-0": role} if role else {}
        assert replicates_outside(path, tmp_path / name, "sessions-0", roles) == "no", name
